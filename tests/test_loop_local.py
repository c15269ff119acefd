"""The ACE loop with the real local model: commits, provenance, tags on cited bullets only, exact cassette replay
without a model, and resume after a process is killed mid-run. (The scripted loop tests, which need no model, are in
test_loop.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ace.llm import LLM, Sampling
from ace.llm.cassette import Cassette
from ace.llm.local import LocalProvider
from ace.loop import run
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore
from ace.tasks import Task, load_finance
from tests.test_loop import START, _ctx, _store

pytestmark = pytest.mark.model

pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")

ROOT = Path(__file__).resolve().parent.parent


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
    assert [r.task_id for r in live.results] == [t.id for t in tasks]
    history = store.history("fin")
    committed = [r for r in live.results if r.committed]
    assert len(history) == 1 + len(committed)
    for record, version in zip(committed, history[1:], strict=True):
        delta = version.delta
        assert delta is not None and delta.source is not None
        assert delta.source.task_id == record.task_id and delta.source.step == record.index + 1
        assert delta.source.run_id == "run-1" and version.author == "ace run run-1"
    # counters only ever change through TAG ops, and TAG ops only name bullets the generator cited
    for version in history[1:]:
        before, after = store.load("fin", version.version - 1), store.load("fin", version.version)
        assert version.delta is not None
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
    assert [r.error for r in replay.results] == [r.error for r in live.results]
    assert [h.digest for h in replay_store.history("fin")] == [h.digest for h in history]


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
    assert int((tmp_path / "ck.db.died").read_text()) == version_at_crash  # the child died after committing step 1

    ctx = _ctx(
        store,
        LLM(Cassette(tape, LocalProvider(), mode="auto"), sampling=Sampling(max_tokens=256)),
        load_finance(data, limit=2),
        run_id="resume-run",
        max_rounds=1,
    )
    resumed = run(ctx, checkpoints)
    assert resumed.resumed
    first, second = resumed.results
    assert (first.index, second.index) == (0, 1)  # the first step is recorded once, then the second ran
    # the first step's commit was found by its key, not made again: one version per committed step
    assert len(store.history("fin")) - 1 == first.committed + second.committed
    assert first.version == version_at_crash
    assert store.head("fin").version == version_at_crash + second.committed
    assert store.verify("fin") == store.head("fin").version
