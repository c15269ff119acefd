"""Trajectories: written by the loop with every LLM call, replayed without a model with every version hash
verified; tampering is reported, not accepted; stored histories export to the same format."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.collapse import Detectors
from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig, LoopContext, RunSetup, run
from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.trajectory import TrajectoryWriter, chain_of, export, read, replay
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task
from tests.fake_openai_server import FakeOpenAIServer
from tests.test_runners import roles

ROOT = Path(__file__).resolve().parent.parent
START_PB = parse_ace((ROOT / "playbooks" / "finance.txt").read_text())


def _ops() -> Iterator[list[dict[str, Any]]]:
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
        setup = RunSetup(llm, store, "fin", EVALUATORS["formula"], config=LoopConfig(max_rounds=1))
        ctx = LoopContext(setup, tasks, "tr", trajectory=TrajectoryWriter(path, store, "fin"))
        run(ctx, tmp_path / "ck.db")
        calls = len(server.requests)
    return store, path, calls


def _gen_then_roles(rest: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
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


def _replay_problem(path: Path) -> str:
    """What replay rejects ``path`` for (it must reject it)."""
    problem = replay(path).problem
    assert problem is not None, f"{path} replayed without a problem"
    return problem


def _tamper(path: Path, line: int, edit: Any, *, legacy: bool = False) -> Path:
    """A copy of ``path`` with ``edit`` applied to line ``line`` (0-based); ``legacy``: as an ace-trajectory/1 file
    (no chain, no end line), the format that could only check deltas against digests."""
    lines = path.read_text().splitlines()
    objs = [json.loads(x) for x in lines]
    if legacy:
        objs = [{k: v for k, v in o.items() if k not in ("prev", "chain")} for o in objs if o["type"] != "end"]
        objs[0]["format"] = "ace-trajectory/1"
    edit(objs[line])
    out = path.with_name(f"tampered-{line}{'-v1' if legacy else ''}.jsonl")
    out.write_text("\n".join(json.dumps(o) for o in objs) + "\n")
    return out


def _lines(path: Path, transform: Any) -> Path:
    out = path.with_name("reordered.jsonl")
    out.write_text("\n".join(transform(path.read_text().splitlines())) + "\n")
    return out


# line 0 is the header, line 1 the run's description, then one line per step, then the end line
EDITS = [
    ("a delta's content", 3, lambda o: o["delta"]["operations"][-1].update(content="Something else entirely.")),
    ("a recorded digest", 2, lambda o: o.update(digest="0" * 64)),
    ("a version number", 4, lambda o: o.update(version=9)),
    ("the starting state", 0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content="changed here now")),
    ("an operation added", 3, lambda o: o["delta"]["operations"].append({"type": "REMOVE", "id": "nope-1"})),
    ("an outcome", 2, lambda o: o.update(correct=True)),
    ("a response's text", 3, lambda o: o["calls"][0].update(text="something else")),
    ("the run's settings", 1, lambda o: o["config"].update(max_rounds=3)),
]


@pytest.mark.parametrize(("what", "line", "edit"), EDITS, ids=[e[0] for e in EDITS])
def test_any_edited_field_is_rejected_with_its_line(
    recorded: tuple[PlaybookStore, Path, int], what: str, line: int, edit: Any
) -> None:
    _, path, _ = recorded
    bad = _tamper(path, line, edit)
    report = replay(bad)
    assert not report.ok and report.problem is not None, what
    assert f"line {line + 1}: its content was edited" in report.problem, what
    result = CliRunner().invoke(app, ["replay", str(bad)])
    assert result.exit_code == 1 and "rejected" in result.output and f"line {line + 1}" in result.output


@pytest.mark.parametrize(
    ("what", "transform", "problem"),
    [
        ("cut short (the end line dropped)", lambda ls: ls[:-1], "ends at line 5 without its closing line"),
        ("cut short (the last step dropped too)", lambda ls: ls[:-2], "ends at line 4 without its closing line"),
        ("garbage appended", lambda ls: [*ls, '{"type": "step", "index": 9}'], "line 7: it does not follow line 6"),
        ("two lines swapped", lambda ls: [ls[0], ls[1], ls[3], ls[2], *ls[4:]], "line 3: it does not follow line 2"),
        ("a step line duplicated", lambda ls: [*ls[:4], ls[3], *ls[4:]], "line 5: it does not follow line 4"),
        ("a step line removed", lambda ls: [*ls[:3], *ls[4:]], "line 4: it does not follow line 3"),
        ("a line that is not JSON", lambda ls: [*ls[:3], "{not json", *ls[3:]], "line 4: not valid JSON"),
        ("empty", lambda ls: [], "empty trajectory"),
    ],
)
def test_truncation_reordering_insertion_and_duplication_are_rejected(
    recorded: tuple[PlaybookStore, Path, int], what: str, transform: Any, problem: str
) -> None:
    _, path, _ = recorded
    report = replay(_lines(path, transform))
    assert not report.ok and report.problem is not None and problem in report.problem, (what, report.problem)


@pytest.mark.parametrize(
    ("line", "edit", "problem"),
    [
        (3, lambda o: o["delta"]["operations"][-1].update(content="Something else."), "does not match the recorded"),
        (2, lambda o: o.update(digest="0" * 64), "does not match the recorded digest"),
        (4, lambda o: o.update(version=9), "expected version 4"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content="changed"), "starting state"),
        (3, lambda o: o["delta"]["operations"].append({"type": "REMOVE", "id": "nope-1"}), "does not apply"),
        (2, lambda o: o.update(index="one"), "line 3: the step's 'index' must be a int"),
        (2, lambda o: o.update(calls=5), "line 3: the step's 'calls' must be a list"),
        (0, lambda o: o.pop("version"), "line 1: the header's 'version' is missing"),
        # a starting state that is not a playbook: read from the decoded header, checked as an import is
        (0, lambda o: o.update(state=[1, 2]), "line 1: the header's 'state' is missing or not a dict"),
        (0, lambda o: o["state"].update(format="nope"), "does not load (json playbook: unknown format 'nope'"),
        (0, lambda o: o["state"].update(sections=3), "does not load (json playbook: malformed playbook JSON"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(helpful=True), "'helpful' must be int"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(helpful=-1), "must not be negative"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(sources="x"), "'sources' must be list"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(sources=[{"step": "2"}]), "'step' must be int"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content="a\u0000b"), "control character"),
        (0, lambda o: o["state"]["sections"][0]["bullets"][0].update(content=" padded "), "surrounding whitespace"),
    ],
)
def test_a_legacy_file_still_checks_deltas_against_digests_and_says_what_it_cannot(
    recorded: tuple[PlaybookStore, Path, int], line: int, edit: Any, problem: str
) -> None:
    _, path, _ = recorded
    assert replay(_tamper(path, 0, lambda o: None, legacy=True)).notes  # an untampered v1 file: ok, with a note
    report = replay(_tamper(path, line, edit, legacy=True))
    assert not report.ok and report.problem is not None and problem in report.problem


def test_a_run_resumed_after_a_crash_continues_the_chain_and_counts_a_repeated_step_once(
    recorded: tuple[PlaybookStore, Path, int],
) -> None:
    store, path, _ = recorded
    lines = path.read_text().splitlines()
    # the process died while writing: no end line, and the last line cut in the middle
    path.write_text("\n".join(lines[:-1]) + '\n{"type": "step", "ind')
    assert "line 6: not valid JSON" in _replay_problem(path)
    writer = TrajectoryWriter(path, store, "fin")  # the resumed run: the cut line is dropped, the chain goes on
    repeated = {k: v for k, v in json.loads(lines[4]).items() if k not in ("prev", "chain")}
    writer.line({**repeated, "calls": []})  # record_node ran again for the last step before its checkpoint
    writer.finish()
    assert [s["index"] for s in read(path)[1]] == [0, 1, 2] and replay(path).ok
    changed = {**repeated, "calls": [], "digest": "f" * 64}
    writer.line(changed)
    writer.finish()
    assert "step 2 was recorded on line 5 with another outcome" in _replay_problem(path)


def test_a_key_signs_the_chain_so_a_rechained_edit_is_still_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACE_TRAJECTORY_KEY", "s3cret")
    store = PlaybookStore(f"sqlite:///{tmp_path / 'k.db'}")
    store.create("fin", START_PB)
    path = tmp_path / "keyed.jsonl"
    export(store, "fin", path)
    assert replay(path).ok and json.loads(path.read_text().splitlines()[0])["keyed"]
    monkeypatch.delenv("ACE_TRAJECTORY_KEY")
    assert "signed with a key; set ACE_TRAJECTORY_KEY" in _replay_problem(path)
    # an attacker without the key re-chains an edited file with plain hashes: rejected with the key
    objs = [json.loads(x) for x in path.read_text().splitlines()]
    objs[0]["state"]["sections"][0]["bullets"][0]["content"] = "An edited rule here."
    prev = "0" * 64
    for o in objs:
        o["prev"] = prev
        o["chain"] = prev = chain_of(o, None)
    path.write_text("\n".join(json.dumps(o) for o in objs) + "\n")
    monkeypatch.setenv("ACE_TRAJECTORY_KEY", "s3cret")
    assert "line 1: its content was edited or signed with another key" in _replay_problem(path)


def test_any_content_survives_the_line_format(tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'u.db'}")
    store.create("fin", START_PB)
    hostile = "Split\u2028lines\u2029and a\u00a0no-break space, a \u200d joiner: keep them all."
    store.commit("fin", Delta.parse({"operations": [{"type": "UPDATE", "id": "calc-00002", "content": hostile}]}))
    path = tmp_path / "u.jsonl"
    export(store, "fin", path)
    assert "\u2028" not in path.read_text()  # written escaped
    report = replay(path)
    assert report.ok and report.playbook is not None
    assert report.playbook["calc-00002"].content == hostile.replace("\u2028", "\n").replace("\u2029", "\n")


def test_a_stored_history_exports_and_replays(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    store = PlaybookStore(db)
    store.create("p", START_PB)
    for i in range(3):
        add = {"type": "ADD", "section": "Rules", "content": f"Learned rule number {i}."}
        store.commit("p", Delta.parse({"operations": [add]}))
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


def test_a_recorded_response_changed_is_caught_by_re_execution_even_in_a_legacy_file(
    recorded: tuple[PlaybookStore, Path, int], tmp_path: Path
) -> None:
    """Replay of a v1 file cannot see a changed response (the deltas still match their digests); re-execution
    can. (In a v2 file the chain rejects the edit before anything runs.)"""
    store, path, _ = recorded

    def edit(step: dict[str, Any]) -> None:
        curator = next(c for c in step["calls"] if c["role"] == "curator")
        ops = [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": "A different lesson here."}]
        curator["text"] = json.dumps({"reasoning": "curated", "operations": ops})

    bad = _tamper(path, 3, edit, legacy=True)
    assert replay(bad).ok
    report = rerun(bad, LLM(RecordedProvider(bad)), store, workdir=tmp_path / "again")
    assert [s.same_digest for s in report.steps] == [True, False, False]
    assert "its content was edited" in _replay_problem(_tamper(path, 3, edit))


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
