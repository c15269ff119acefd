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
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task
from ace.trajectory import TrajectoryWriter, export, read, replay
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
        (2, lambda o: o["delta"]["operations"][-1].update(content="Something else."), "does not match the recorded"),
        (1, lambda o: o.update(digest="0" * 64), "does not match the recorded digest"),
        (3, lambda o: o.update(version=9), "expected version 4"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content="changed"), "starting state"),
        (2, lambda o: o["delta"]["operations"].append({"type": "REMOVE", "id": "nope-1"}), "does not apply"),
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
    path.write_text("\n".join([*lines[:3], lines[2], *lines[3:]]) + '\n{"type": "step", "ind')  # + a cut line
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
