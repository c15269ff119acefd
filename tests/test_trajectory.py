"""Trajectories: written by the loop with every LLM call, replayed without a model with every version hash
verified; tampering is reported, not accepted; stored histories export to the same format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.collapse import Detectors
from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig, LoopContext, run
from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.trajectory import TrajectoryWriter, export, read, replay
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task
from tests.fake_openai_server import FakeOpenAIServer
from tests.test_runners import roles

ROOT = Path(__file__).resolve().parent.parent
START_PB = parse_ace((ROOT / "playbooks" / "finance.txt").read_text())


def _ops() -> Any:
    for i in range(10):
        yield [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": f"Learned rule number {i}."}]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[PlaybookStore, Path, int]:
    store = PlaybookStore(f"sqlite:///{tmp_path / 't.db'}")
    store.create("fin", START_PB)
    path = tmp_path / "run.trajectory.jsonl"
    tasks = [Task(id=f"t{i}", input=f"Current assets {i}, liabilities 1. Ratio?", target=str(i)) for i in range(3)]
    with FakeOpenAIServer() as server:
        server.responder = _gen_then_roles(roles(_ops()))
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)
        ctx = LoopContext(
            tasks=tasks, llm=llm, store=store, playbook="fin", evaluator=EVALUATORS["formula"], run_id="tr",
            config=LoopConfig(max_rounds=1), trajectory=TrajectoryWriter(path, store, "fin"),
        )  # fmt: skip
        run(ctx, tmp_path / "ck.db")
        calls = len(server.requests)
    return store, path, calls


def _gen_then_roles(rest: Any) -> Any:
    def respond(body: dict[str, Any]) -> str:
        system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        if "You are an expert problem solver" in system:
            return json.dumps({"reasoning": "r", "bullet_ids": ["calc-00002"], "final_answer": "1"})
        return rest(body)

    return respond


def test_a_recorded_run_replays_with_every_version_verified(recorded: tuple[PlaybookStore, Path, int]) -> None:
    store, path, calls = recorded
    header, steps = read(path)
    assert header["version"] == 1 and len(steps) == 3
    assert [c["role"] for c in steps[0]["calls"]] == ["generator", "reflector", "curator"]
    assert all(len(c["hash"]) == 64 for s in steps for c in s["calls"])
    report = replay(path, detectors=Detectors())
    assert report.ok and report.versions == [1, 2, 3, 4] and report.calls == calls
    assert report.playbook is not None and report.playbook.digest() == store.head("fin").digest
    assert report.alerts == []  # three small ADDs: healthy
    result = CliRunner().invoke(app, ["replay", str(path)])
    assert result.exit_code == 0 and "every version hash matches" in result.output


def _tamper(path: Path, line: int, edit: Any) -> Path:
    lines = path.read_text().splitlines()
    obj = json.loads(lines[line])
    edit(obj)
    lines[line] = json.dumps(obj)
    out = path.with_name(f"tampered-{line}.jsonl")
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize(
    ("line", "edit", "problem"),
    [
        # line 0 is the header, line 1 the run's description, then one line per step
        (3, lambda o: o["delta"]["operations"][-1].update(content="Something else."), "does not match the recorded"),
        (2, lambda o: o.update(digest="0" * 64), "does not match the recorded digest"),
        (4, lambda o: o.update(version=9), "expected version 4"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content="changed"), "starting state"),
        (3, lambda o: o["delta"]["operations"].append({"type": "REMOVE", "id": "nope-1"}), "does not apply"),
    ],
)
def test_a_tampered_trajectory_is_reported_not_accepted(
    recorded: tuple[PlaybookStore, Path, int], line: int, edit: Any, problem: str
) -> None:
    _, path, _ = recorded
    bad = _tamper(path, line, edit)
    report = replay(bad)
    assert not report.ok and problem in report.problem
    result = CliRunner().invoke(app, ["replay", str(bad)])
    assert result.exit_code == 1 and "rejected" in result.output


def test_a_step_written_twice_after_a_crash_counts_once(recorded: tuple[PlaybookStore, Path, int]) -> None:
    _, path, _ = recorded
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:4], lines[3], *lines[4:]]) + '\n{"type": "step", "ind')  # + a cut line
    assert [s["index"] for s in read(path)[1]] == [0, 1, 2] and replay(path).ok


def test_a_stored_history_exports_and_replays(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    store = PlaybookStore(db)
    store.create("p", START_PB)
    for i in range(3):
        store.commit("p", Delta.parse({"operations": [{"type": "ADD", "section": "s", "content": f"rule {i}"}]}))
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["playbook", "trajectory", "p", "-o", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    report = replay(out)
    assert report.ok and report.versions == [1, 2, 3, 4]
    store.rollback("p", 2)
    with pytest.raises(ValueError, match="rollback"):
        export(store, "p", out)
    assert export(store, "p", out, since=5) == 0 and replay(out).versions == [5]


# -- re-execution (ace replay --provider) --------------------------------------------------------------------------
def test_a_run_re_executed_on_its_recorded_responses_reproduces_every_version(
    recorded: tuple[PlaybookStore, Path, int], tmp_path: Path
) -> None:
    store, path, calls = recorded
    header, steps = read(path)
    assert header["run"]["evaluator"] == {"name": "numeric", "abs_tol": 0.01, "rel_tol": 0.0}
    assert [s["task"]["target"] for s in steps] == ["0", "1", "2"]
    llm = LLM(RecordedProvider(path))
    report = rerun(path, llm, store, workdir=tmp_path / "again")
    assert report.playbook == "fin-rerun-1" and report.reproduced == 3 == len(report.steps)
    assert [s.live_correct for s in report.steps] == [s["correct"] for s in steps] == [False, True, False]
    assert store.head("fin-rerun-1").digest == store.head("fin").digest
    assert llm.ledger.calls == calls  # every request found its recorded response
    assert replay(report.trajectory).ok  # the re-executed run is itself a verifiable trajectory


def test_a_recorded_response_changed_is_caught_by_re_execution(
    recorded: tuple[PlaybookStore, Path, int], tmp_path: Path
) -> None:
    """Replay alone cannot see a changed response (the deltas still match their digests); re-execution can."""
    store, path, _ = recorded

    def edit(step: dict[str, Any]) -> None:
        curator = next(c for c in step["calls"] if c["role"] == "curator")
        ops = [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": "A different lesson."}]
        curator["text"] = json.dumps({"reasoning": "curated", "operations": ops})

    bad = _tamper(path, 3, edit)
    assert replay(bad).ok
    report = rerun(bad, LLM(RecordedProvider(bad)), store, workdir=tmp_path / "again")
    assert [s.same_digest for s in report.steps] == [True, False, False]


def test_a_run_re_executed_live_is_compared_step_by_step(
    recorded: tuple[PlaybookStore, Path, int], tmp_path: Path
) -> None:
    store, path, _ = recorded
    with FakeOpenAIServer() as server:  # a stand-in for another model: answers 2 everywhere, curates nothing

        def respond(body: dict[str, Any]) -> str:
            system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
            if "You are an expert problem solver" in system:
                return json.dumps({"reasoning": "r", "bullet_ids": [], "final_answer": "2"})
            return roles(iter([]))(body)

        server.responder = respond
        llm = LLM(OpenAIProvider("other", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)
        report = rerun(path, llm, store, name="fin-other", workdir=tmp_path / "other")
    assert [s.live_correct for s in report.steps] == [False, False, True]
    assert report.recorded_accuracy == report.live_accuracy == pytest.approx(1 / 3)
    assert report.reproduced == 0 and store.head("fin-other").version == 1  # nothing curated: no new version
    assert replay(report.trajectory).ok


def test_ace_replay_with_a_provider_re_executes_and_says_what_cannot(
    recorded: tuple[PlaybookStore, Path, int], tmp_path: Path
) -> None:
    store, path, _ = recorded
    db = store.url
    result = CliRunner().invoke(app, ["replay", str(path), "--provider", "recorded", "--db", db, "--as", "again"])
    assert result.exit_code == 0, result.output
    assert "3 of 3 versions reproduced" in result.output and "again" in result.output
    exported = tmp_path / "exported.jsonl"
    export(store, "fin", exported)
    result = CliRunner().invoke(app, ["replay", str(exported), "--provider", "recorded", "--db", db])
    assert result.exit_code == 1 and "does not describe its run" in result.output
