"""The ACE loop with scripted role replies (a loopback test double of a remote OpenAI-compatible API): no model
needed. Failed steps leave the playbook untouched, retries, guard vetoes, grow-and-refine; the node functions called
directly; one delta applied twice per step (curate, commit); the typed state through the checkpointer; a commit
rebased onto a head another writer moved."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest

from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.loop import (
    Candidate,
    LoopConfig,
    LoopContext,
    LoopState,
    RunSetup,
    StepRecord,
    commit_node,
    curate_node,
    evaluate_node,
    generate_node,
    guard_node,
    record_node,
    refine_node,
    reflect_node,
    run,
)
from ace.loop.roles import GeneratorOutput, Reflection
from ace.playbook import AddOp, Playbook, render
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Feedback, Task
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
START = (ROOT / "playbooks" / "finance.txt").read_text()


def _store(tmp: Path, name: str) -> PlaybookStore:
    store = PlaybookStore(f"sqlite:///{tmp / name}")
    store.create("fin", parse_ace(START))
    return store


def _head_ops(store: PlaybookStore) -> list[str]:
    """The operation types of the delta that made the head of "fin"."""
    delta = store.head("fin").delta
    assert delta is not None
    return [op.type for op in delta.operations]


def _ctx(store: PlaybookStore, llm: LLM, tasks: list[Task], run_id: str = "run-1", max_rounds: int = 2) -> LoopContext:
    config = LoopConfig(max_rounds=max_rounds, playbook_budget=300)
    return LoopContext(RunSetup(llm, store, "fin", EVALUATORS["formula"], config=config), tasks, run_id)


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
    assert record.error is not None and record.error.startswith(error) and not record.committed
    assert (store.head("fin").version, store.head("fin").digest) == (before.version, before.digest)


def test_a_scripted_step_commits_tags_and_the_curators_delta(tmp_path: Path) -> None:
    store = _store(tmp_path, "ok.db")
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        result = run(_ctx(store, _fake_llm(server), ONE_TASK), tmp_path / "ck.db")
    (record,) = result.results
    assert (record.correct, record.rounds, record.committed, record.error) == (True, 1, True, None)
    head = store.head("fin")
    assert head.delta is not None
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
    assert (record.correct, record.final_correct, record.rounds) == (False, True, 2)
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
    assert record.error == "guard: vetoed by the test guard" and not record.committed
    assert seen == [(8, 9)]  # the guard saw the candidate version
    assert store.head("fin").version == 1


def test_the_refiner_merges_a_duplicate_the_curator_added(tmp_path: Path) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.loop.refine import EmbeddingIndex, Refiner

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
        ctx.config = dataclasses.replace(ctx.config, supersede=False)  # else the loop TAGs the duplicate itself
        (record,) = run(ctx, tmp_path / "ck.db").results
    assert record.committed, record.error
    assert _head_ops(store) == ["TAG", "ADD", "MERGE"]
    pb = store.load("fin")
    assert "calc-00009" not in pb and pb["calc-00002"].merged_from == ("calc-00009",)
    assert pb["calc-00002"].helpful == 1  # the tag on the survivor is kept through the merge


# -- the nodes as plain functions ------------------------------------------------------------------------------------
def _advance(state: LoopState, update: LoopState) -> LoopState:
    return cast(LoopState, {**state, **update})


def test_the_nodes_run_as_plain_functions_without_the_graph(tmp_path: Path) -> None:
    store = _store(tmp_path, "nodes.db")
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        ctx = _ctx(store, _fake_llm(server), ONE_TASK)
        state: LoopState = {"index": 0, "round": 0}
        state = _advance(state, generate_node(state, ctx))
        assert isinstance(state["answer"], GeneratorOutput) and state["base_version"] == 1 and state["round"] == 1
        state = _advance(state, evaluate_node(state, ctx))
        assert isinstance(state["feedback"], Feedback) and state["feedback"].correct and state["first_correct"]
        state = _advance(state, reflect_node(state, ctx))
        assert isinstance(state["reflection"], Reflection)
        state = _advance(state, curate_node(state, ctx))
        candidate = state["candidate"]
        assert isinstance(candidate, Candidate) and candidate.base_version == 1
        assert [op.type for op in candidate.delta.operations] == ["TAG", "ADD"]
        assert len(candidate.playbook) == 9 and store.head("fin").version == 1  # nothing written yet
        assert refine_node(state, ctx) == {} and guard_node(state, ctx) == {}  # neither is configured
        state = _advance(state, commit_node(state, ctx))
        assert state["committed"] and store.head("fin").version == 2
        update = record_node(state, ctx)
    (record,) = update["results"]
    assert isinstance(record, StepRecord) and record.version == 2 and record.committed and record.correct
    assert record.delta == candidate.delta and update["index"] == 1 and update["candidate"] is None


def _counting(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Record every ``apply`` (who called it, the op types it applied) and every parse of a delta from JSON."""
    import ace.loop.state
    import ace.playbook.delta
    import ace.store.log
    import ace.store.store
    from ace.playbook import Delta

    applies: list[tuple[str, list[str]]] = []
    parses: list[str] = []
    real_apply = ace.playbook.delta.apply

    def counted(where: str) -> Any:
        def apply(pb: Playbook, delta: Delta, **kw: Any) -> Any:
            applies.append((where, [op.type for op in delta.operations]))
            return real_apply(pb, delta, **kw)

        return apply

    monkeypatch.setattr(ace.loop.state, "apply", counted("loop"))
    monkeypatch.setattr(ace.store.store, "apply", counted("store"))
    monkeypatch.setattr(ace.store.log, "apply", counted("store"))  # a replay of the log
    monkeypatch.setattr(ace.playbook.delta, "apply", counted("merge"))
    real_parse, real_json = Delta.parse.__func__, Delta.model_validate_json.__func__  # type: ignore[attr-defined]

    def parse(cls: type[Delta], *a: Any, **kw: Any) -> Delta:
        parses.append("parse")
        return real_parse(cls, *a, **kw)  # type: ignore[no-any-return]

    def from_json(cls: type[Delta], *a: Any, **kw: Any) -> Delta:
        parses.append("model_validate_json")
        return real_json(cls, *a, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(Delta, "parse", classmethod(parse))
    monkeypatch.setattr(Delta, "model_validate_json", classmethod(from_json))
    return applies, parses


def test_one_step_with_refine_and_guard_applies_its_delta_twice_and_never_parses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.loop.refine import EmbeddingIndex, Refiner
    from ace.playbook import Delta

    store = _store(tmp_path, "count.db")
    harmful = [{"type": "TAG", "id": "mis-00006", "tag": "harmful"}] * 3
    store.commit("fin", Delta.parse({"operations": harmful}))  # v2: a bullet the refiner will prune
    judged: list[int] = []

    def guard(before: Playbook, after: Playbook) -> str | None:
        judged.append(len(after))
        return None

    applies, parses = _counting(monkeypatch)
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        ctx = _ctx(store, _fake_llm(server), ONE_TASK)
        ctx.refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), threshold=0.95)
        ctx.guard = guard
        (record,) = run(ctx, tmp_path / "ck.db").results
    parsed = list(parses)  # before this test reads the stored delta back
    assert record.committed and record.error is None
    assert _head_ops(store) == ["TAG", "ADD", "REMOVE"]
    # the step's delta (tags + the curator's ADD) is applied by curate and by the store's commit, nowhere else;
    # the refiner's prune is applied once, to the candidate, not by re-applying what was already applied
    assert applies == [("loop", ["TAG", "ADD"]), ("loop", ["REMOVE"]), ("store", ["TAG", "ADD", "REMOVE"])]
    assert parsed == []  # the curator's reply is parsed once, into typed operations, by the LLM layer
    assert judged == [8]  # the guard judged the candidate: 8 bullets + the ADD - the pruned one


def test_the_typed_state_goes_through_the_checkpointer_and_a_step_resumes_after_curate(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from ace.loop.graph import build_graph, checkpoint_serializer

    store = _store(tmp_path, "ck-state.db")
    checkpoints = tmp_path / "ck.db"
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
        ctx = _ctx(store, _fake_llm(server), ONE_TASK)
        conn = sqlite3.connect(checkpoints, check_same_thread=False)
        saver = SqliteSaver(conn, serde=checkpoint_serializer())
        graph = build_graph(ctx).compile(checkpointer=saver, interrupt_after=["curate"])
        config: Any = {"configurable": {"thread_id": ctx.run_id}}
        graph.invoke({"index": 0, "round": 0}, config, durability="sync")
        conn.close()

        # a new connection and saver: the state is read back from the SQLite file, with its types
        conn = sqlite3.connect(checkpoints, check_same_thread=False)
        saved = build_graph(ctx).compile(checkpointer=SqliteSaver(conn, serde=checkpoint_serializer()))
        values = saved.get_state(config).values
        conn.close()
        candidate = values["candidate"]
        assert isinstance(candidate, Candidate) and not candidate.applied  # the applied result is not stored
        source = candidate.delta.source
        assert isinstance(candidate.delta.operations[1], AddOp) and source is not None and source.task_id == "cr-1"
        assert isinstance(values["answer"], GeneratorOutput) and isinstance(values["reflection"], Reflection)
        assert isinstance(values["feedback"], Feedback) and store.head("fin").version == 1

        result = run(ctx, checkpoints)  # resumes after curate: rebuilds the candidate, commits, records
    (record,) = result.results
    assert result.resumed and record.committed and store.head("fin").version == 2
    assert len(server.requests) == 3  # nothing was asked again
    assert "Current ratio = current assets / current liabilities." in render(store.load("fin"))


def _curated(store: PlaybookStore, server: FakeOpenAIServer, guard: Any = None) -> tuple[LoopContext, LoopState]:
    """A context and the state of one step right after curate (base version 1)."""
    server.script = [("ok", GEN), ("ok", REFL), ("ok", CUR)]
    ctx = _ctx(store, _fake_llm(server), ONE_TASK)
    ctx.guard = guard
    state: LoopState = {"index": 0, "round": 0}
    for node in (generate_node, evaluate_node, reflect_node, curate_node):
        state = _advance(state, node(state, ctx))
    return ctx, state


def test_a_commit_is_rebased_onto_a_head_another_writer_moved(tmp_path: Path) -> None:
    from ace.playbook import Delta

    store = _store(tmp_path, "rebase.db")
    judged: list[int] = []

    def guard(before: Playbook, after: Playbook) -> str | None:
        judged.append(len(after))
        return None

    with FakeOpenAIServer() as server:
        ctx, state = _curated(store, server, guard)
        other = PlaybookStore(store.url)  # another writer adds a bullet first: the head is v2 now
        add = {"type": "ADD", "section": "COMMON MISTAKES", "content": "Do not mix fiscal and calendar years."}
        other.commit("fin", Delta.parse({"operations": [add]}))
        update = commit_node(state, ctx)
    assert update["committed"] and not update.get("error")
    assert store.head("fin").version == 3 and judged == [10]  # the guard judged the rebased version
    pb = store.load("fin")
    assert pb["mis-00009"].content.startswith("Do not mix") and pb["calc-00010"].content.startswith("Current ratio")


@pytest.mark.parametrize(
    ("other_op", "guard", "error"),
    [
        ({"type": "REMOVE", "id": "calc-00002"}, None, "commit: operation 0 (TAG): unknown bullet id 'calc-00002'"),
        (
            {"type": "TAG", "id": "sai-00001", "tag": "helpful"},
            lambda before, after: "no edits today",
            "commit: guard, after rebasing onto v2: no edits today",
        ),
    ],
)
def test_a_rebase_that_no_longer_applies_or_is_vetoed_fails_the_step_and_writes_nothing(
    tmp_path: Path, other_op: dict[str, str], guard: Any, error: str
) -> None:
    from ace.playbook import Delta

    store = _store(tmp_path, "rebase-fail.db")
    with FakeOpenAIServer() as server:
        ctx, state = _curated(store, server, guard)
        PlaybookStore(store.url).commit("fin", Delta.parse({"operations": [other_op]}))
        update = commit_node(state, ctx)
    assert update["error"] == error and not update["committed"]
    assert store.head("fin").version == 2 and store.verify("fin") == 2


def test_the_loop_tags_the_bullet_a_curator_adds_again_in_other_words(tmp_path: Path) -> None:
    """With supersession on (the default), the duplicate the refiner would merge later never lands: the curator's ADD
    says calc-00002 again (same value, shared subject words), so the step commits a helpful TAG of calc-00002."""
    store = _store(tmp_path, "dedup.db")
    lesson = "Percentage change = (new - old) / old * 100; keep the sign, a fall is negative!"
    dup = json.dumps({"reasoning": "r", "operations": [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS",
                                                        "content": lesson}]})  # fmt: skip
    before = len(store.load("fin"))
    with FakeOpenAIServer() as server:
        server.script = [("ok", GEN), ("ok", REFL), ("ok", dup)]
        (record,) = run(_ctx(store, _fake_llm(server), ONE_TASK), tmp_path / "ck.db").results
    assert record.committed, record.error
    assert _head_ops(store) == ["TAG", "TAG"] and len(store.load("fin")) == before
    assert "again: calc-00002" in (store.history("fin")[-1].delta.reasoning or "")  # type: ignore[union-attr]
