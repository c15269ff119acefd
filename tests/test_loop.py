"""The ACE loop end to end with the real local model: commits, provenance, tags on cited bullets only, exact
cassette replay without a model, failed steps that leave the playbook untouched, and resume after a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ace.llm import LLM, Sampling
from ace.llm.cassette import Cassette
from ace.llm.local import LocalProvider
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig, LoopContext, run
from ace.playbook import Playbook
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task, load_finance
from tests.fake_openai_server import FakeOpenAIServer

pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")

ROOT = Path(__file__).resolve().parent.parent
START = (ROOT / "playbooks" / "finance.txt").read_text()


def _store(tmp: Path, name: str) -> PlaybookStore:
    store = PlaybookStore(f"sqlite:///{tmp / name}")
    store.create("fin", parse_ace(START))
    return store


def _ctx(store: PlaybookStore, llm: LLM, tasks: list[Task], run_id: str = "run-1", **config: object) -> LoopContext:
    return LoopContext(
        tasks=tasks,
        llm=llm,
        store=store,
        playbook="fin",
        evaluator=EVALUATORS["formula"],
        run_id=run_id,
        config=LoopConfig(**{"max_rounds": 2, "playbook_budget": 300, **config}),
    )


@pytest.fixture(scope="module")
def tasks(shared_data: Path) -> list[Task]:
    return load_finance(shared_data / "finance" / "formula_train_subset_500.jsonl", limit=3)


def test_loop_commits_with_provenance_and_replays_exactly_without_a_model(tmp_path: Path, tasks: list[Task]) -> None:
    tape = tmp_path / "run.jsonl"
    store = _store(tmp_path, "live.db")
    live = run(
        _ctx(store, LLM(Cassette(tape, LocalProvider(), mode="record"), sampling=Sampling(max_tokens=256)), tasks),
        tmp_path / "live-ck.db",
    )
    assert [r["task_id"] for r in live.results] == [t.id for t in tasks]
    history = store.history("fin")
    committed = [r for r in live.results if r["committed"]]
    assert len(history) == 1 + len(committed)
    for record, version in zip(committed, history[1:], strict=True):
        delta = version.delta
        assert delta.source.task_id == record["task_id"] and delta.source.step == record["index"] + 1
        assert delta.source.run_id == "run-1" and version.author == "ace run run-1"
    # counters only ever change through TAG ops, and TAG ops only name bullets the generator cited
    for version in history[1:]:
        before, after = store.load("fin", version.version - 1), store.load("fin", version.version)
        tagged = {op.id for op in version.delta.operations if op.type == "TAG"}
        for b in after:
            old = before.get(b.id)
            if old is not None and (old.helpful, old.harmful, old.neutral) != (b.helpful, b.harmful, b.neutral):
                assert b.id in tagged

    replay_store = _store(tmp_path, "replay.db")
    replay = run(
        _ctx(replay_store, LLM(Cassette(tape, mode="replay"), sampling=Sampling(max_tokens=256)), tasks),
        tmp_path / "replay-ck.db",
    )
    assert [r["error"] for r in replay.results] == [r["error"] for r in live.results]
    assert [h.digest for h in replay_store.history("fin")] == [h.digest for h in history]


GEN = json.dumps({"reasoning": "assets over liabilities", "bullet_ids": ["calc-00002"], "final_answer": "2.0"})
REFL = json.dumps(
    {
        "reasoning": "r",
        "error_identification": "none",
        "root_cause_analysis": "none",
        "correct_approach": "divide",
        "key_insight": "ratio = a / b",
        "bullet_tags": [{"id": "calc-00002", "tag": "helpful"}],
    }
)
CUR = json.dumps(
    {
        "reasoning": "new formula",
        "operations": [
            {
                "type": "ADD",
                "section": "FORMULAS AND CALCULATIONS",
                "content": "Current ratio = current assets / current liabilities.",
            }
        ],
    }
)


def _fake_llm(server: FakeOpenAIServer) -> LLM:
    """The roles' replies scripted on a loopback test double of a remote OpenAI-compatible API."""
    return LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)


ONE_TASK = [Task(id="cr-1", input="Current assets 1,000, current liabilities 500. Current ratio?", target="2.0")]


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ([("ok", "not json")] * 3, "generator: GeneratorOutput: no valid reply after 3 attempt(s)"),
        ([("ok", GEN)] + [("ok", '{"reasoning": "r"}')] * 3, "reflector: Reflection: no valid reply"),
        # an unknown id is rejected by the curator's schema (the playbook's ids), on every repair attempt
        (
            [("ok", GEN), ("ok", REFL)]
            + [("ok", json.dumps({"reasoning": "r", "operations": [{"type": "REMOVE", "id": "calc-99999"}]}))] * 3,
            "curator: CuratorOutput: no valid reply",
        ),
    ],
)
def test_invalid_role_output_fails_the_step_and_leaves_the_playbook_untouched(
    tmp_path: Path, script: list[tuple[str, str]], error: str
) -> None:
    store = _store(tmp_path, "fail.db")
    before = store.head("fin")
    with FakeOpenAIServer() as server:
        server.script = script
        result = run(_ctx(store, _fake_llm(server), ONE_TASK, max_rounds=1), tmp_path / "ck.db")
    (record,) = result.results
    assert record["error"].startswith(error) and not record["committed"]
    assert (store.head("fin").version, store.head("fin").digest) == (before.version, before.digest)


def test_a_scripted_step_commits_tags_and_the_curators_delta(tmp_path: Path) -> None:
    store = _store(tmp_path, "ok.db")
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        result = run(_ctx(store, _fake_llm(server), ONE_TASK), tmp_path / "ck.db")
    (record,) = result.results
    assert (record["correct"], record["rounds"], record["committed"], record["error"]) == (True, 1, True, None)
    head = store.head("fin")
    assert [op.type for op in head.delta.operations] == ["TAG", "ADD"]
    pb = store.load("fin")
    assert pb["calc-00002"].helpful == 1 and pb["calc-00009"].sources[0].task_id == "cr-1"


def test_a_wrong_answer_is_reflected_on_and_retried(tmp_path: Path) -> None:
    store = _store(tmp_path, "retry.db")
    wrong = json.dumps({"reasoning": "r", "bullet_ids": [], "final_answer": "3"})
    with FakeOpenAIServer() as server:
        nothing_cited = json.dumps({**json.loads(REFL), "bullet_tags": [], "key_insight": "divide, do not add"})
        server.script = [("ok", wrong), ("ok", nothing_cited), ("ok", GEN), ("ok", REFL), ("ok", CUR)]
        result = run(_ctx(store, _fake_llm(server), ONE_TASK, max_rounds=3), tmp_path / "ck.db")
        second_prompt = server.requests[2]["body"]["messages"][-1]["content"]
    (record,) = result.results
    assert (record["correct"], record["final_correct"], record["rounds"]) == (False, True, 2)
    assert "A PREVIOUS ATTEMPT WAS WRONG" in second_prompt and "divide, do not add" in second_prompt
    assert len(server.requests) == 5 and store.head("fin").version == 2


def test_a_guard_veto_is_recorded_and_nothing_is_committed(tmp_path: Path) -> None:
    store = _store(tmp_path, "guard.db")
    seen: list[tuple[int, int]] = []

    def guard(before: Playbook, after: Playbook) -> str | None:
        seen.append((len(before), len(after)))
        return "vetoed by the test guard"

    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        ctx = _ctx(store, _fake_llm(server), ONE_TASK)
        ctx.guard = guard
        (record,) = run(ctx, tmp_path / "ck.db").results
    assert record["error"] == "guard: vetoed by the test guard" and not record["committed"]
    assert seen == [(8, 9)]  # the guard saw the candidate version
    assert store.head("fin").version == 1


def test_a_killed_run_resumes_at_the_next_task_without_applying_a_step_twice(tmp_path: Path, shared_data: Path) -> None:
    db = f"sqlite:///{tmp_path / 'resume.db'}"
    PlaybookStore(db).create("fin", parse_ace(START))
    checkpoints = tmp_path / "ck.db"
    tape = tmp_path / "tape.jsonl"
    data = shared_data / "finance" / "formula_train_subset_500.jsonl"
    child = subprocess.run(
        [sys.executable, "-m", "tests.loop_worker", db, str(checkpoints), str(tape), str(data), "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 9, child.stderr[-2000:]
    store = PlaybookStore(db)
    version_at_crash = store.head("fin").version

    ctx = _ctx(
        store,
        LLM(Cassette(tape, LocalProvider(), mode="auto"), sampling=Sampling(max_tokens=256)),
        load_finance(data, limit=2),
        run_id="resume-run",
        max_rounds=1,
    )
    resumed = run(ctx, checkpoints)
    assert resumed.resumed
    assert [r["index"] for r in resumed.results] == [0, 1]  # the first step is recorded once, then the second ran
    keys = [h for h in store.history("fin")[1:]]
    assert len(keys) == sum(r["committed"] for r in resumed.results)  # one version per committed step
    assert store.head("fin").version >= version_at_crash
    assert store.verify("fin") == store.head("fin").version


def test_the_refiner_merges_a_duplicate_the_curator_added(tmp_path: Path) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.refine import EmbeddingIndex, Refiner

    store = _store(tmp_path, "refine.db")
    dup = json.dumps(
        {
            "reasoning": "r",
            "operations": [
                {
                    "type": "ADD",
                    "section": "FORMULAS AND CALCULATIONS",
                    "content": "Percentage change = (new - old) / old * 100; keep the sign, a fall is negative!",
                }
            ],
        }
    )
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", dup)]
        ctx = _ctx(store, _fake_llm(server), ONE_TASK)
        ctx.refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), threshold=0.9)
        (record,) = run(ctx, tmp_path / "ck.db").results
    assert record["committed"], record["error"]
    ops = [op.type for op in store.head("fin").delta.operations]
    assert ops == ["TAG", "ADD", "MERGE"]
    pb = store.load("fin")
    assert "calc-00009" not in pb and pb["calc-00002"].merged_from == ("calc-00009",)
    assert pb["calc-00002"].helpful == 1  # the tag on the survivor is kept through the merge
