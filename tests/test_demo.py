"""`ace demo`, the README's main job, as a real process on the embedded default (local model, SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ace.store import PlaybookStore

pytestmark = [pytest.mark.model, pytest.mark.slow]

pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")


def _demo(db: str, data: Path, *extra: str, run_id: str = "t1", tasks: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(data), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "ace.cli", "demo", "--tasks", str(tasks), "--run-id", run_id, "--db", db, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _rerun(trajectory: Path, db: str) -> subprocess.CompletedProcess[str]:
    """``ace replay --provider recorded``: the run re-executed through the loop on its recorded responses."""
    return subprocess.run(
        [sys.executable, "-m", "ace.cli", "replay", str(trajectory), "--provider", "recorded", "--db", db],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_demo_runs_end_to_end_and_prints_the_summary(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    r = _demo(db, tmp_path / "data", "--family", "finance")
    assert r.returncode == 0, r.stderr[-2000:]
    for line in ("accuracy (first answers)", "versions committed", "tokens", "stored in", "replayable calls"):
        assert line in r.stdout
    store = PlaybookStore(db)
    (info,) = store.list("demo")
    assert info.name == "finance-t1" and store.verify("finance-t1", namespace="demo") == info.head
    runs = tmp_path / "data" / "ace" / "runs"  # the run's files, named after its id by the run factory
    assert (runs / "t1.calls.jsonl").is_file() and (runs / "t1.checkpoints.db").is_file()
    trajectory = tmp_path / "data" / "ace" / "runs" / "t1.trajectory.jsonl"
    replayed = subprocess.run(
        [sys.executable, "-m", "ace.cli", "replay", str(trajectory)], capture_output=True, text=True, timeout=120
    )
    assert replayed.returncode == 0 and "every version hash matches" in replayed.stdout, replayed.stderr
    # re-executed through the loop on the model's recorded responses: the same versions come out
    rerun = _rerun(trajectory, db)
    assert rerun.returncode == 0 and "1 of 1 versions reproduced" in rerun.stdout, rerun.stdout + rerun.stderr
    # running the same run id again resumes the finished run: nothing new is committed
    again = _demo(db, tmp_path / "data", "--family", "finance")
    assert again.returncode == 0, again.stderr[-2000:]
    assert store.head("finance-t1", namespace="demo").version == info.head


def test_demo_switches_the_memory_tiers_on_with_one_flag(tmp_path: Path) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.memory import EpisodicStore, KnowledgeGraph

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    r = _demo(db, tmp_path / "data", "--family", "finance", "--memory", run_id="m1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "memory tiers on" in r.stdout and "versions committed" in r.stdout
    episodes = EpisodicStore(tmp_path / "data" / "ace" / "chroma", MiniLMEmbedder(), namespace="demo")
    (episode,) = [episodes.get("m1:0")]
    assert episode is not None and episode.playbook == "finance-m1" and episodes.count() == 1
    # what the tiers hold, from the command line
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "COLUMNS": "200"}

    def ace(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ace.cli", *args], capture_output=True, text=True, env=env)

    listed = ace("memory", "episodes", "-n", "demo")
    assert listed.returncode == 0 and "m1:0" in listed.stdout and "1 episode(s)" in listed.stdout, listed.stderr
    found = ace("memory", "episodes", "current ratio of assets", "-n", "demo", "-k", "1")
    assert found.returncode == 0 and "m1:0" in found.stdout and "similarity" in found.stdout
    assert "0 episode(s)" in ace("memory", "episodes", "-n", "elsewhere").stdout  # namespaces do not mix
    graph = KnowledgeGraph(PlaybookStore(db), namespace="demo")
    shown = ace("memory", "facts", "-n", "demo", "--db", db, "--all")
    assert shown.returncode == 0 and f"{len(graph.facts(current_only=False))} fact(s)" in shown.stdout


def test_the_default_demo_learns_conventions_and_says_what_changed(tmp_path: Path) -> None:
    """The default family: 8 questions over 2 rules; the summary shows the halves, the verdicts and the run's diff,
    the playbook holds copied facts, and ``ace report`` draws the run."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    r = _demo(db, tmp_path / "data", run_id="c1", tasks=8)
    assert r.returncode == 0, r.stderr[-2000:]
    for text in ("first half → second half", "quality gate", "collapse detectors", "what this run changed"):
        assert text in r.stdout, r.stdout[-3000:]
    assert "Learning shows" in r.stdout or "Nothing improved" in r.stdout
    assert "llama_" not in r.stderr  # llama.cpp's own lines stay off the terminal
    store = PlaybookStore(db)
    facts = [b.content for b in store.load("conventions-c1", namespace="demo")]
    assert facts and all(" \u2192 " in f for f in facts)
    trajectory = tmp_path / "data" / "ace" / "runs" / "c1.trajectory.jsonl"
    rep = subprocess.run(
        [sys.executable, "-m", "ace.cli", "report", str(trajectory)], capture_output=True, text=True, timeout=120
    )
    assert rep.returncode == 0, rep.stderr
    out = tmp_path / "data" / "ace" / "runs" / "c1.report"
    assert len(list(out.glob("*.png"))) >= 3 and (out / "report.md").is_file() and (out / "report.html").is_file()
    # re-executed on its recorded responses, with the guard it ran with: every version comes out the same
    rerun = _rerun(trajectory, db)
    assert rerun.returncode == 0 and "8 of 8 versions reproduced" in rerun.stdout, rerun.stdout + rerun.stderr
    assert "ran without" not in rerun.stdout
