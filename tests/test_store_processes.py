"""Several OS processes writing at once, and a process killed mid-commit (SQLite and PostgreSQL).

Two writers at once: every commit lands as its own version, none is lost (final counters equal the sum of all
TAGs), and every version rebuilds to its recorded digest. A crash mid-write: the previous version stays the
head, intact and readable, and the next writer is not blocked.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore

ROOT = Path(__file__).resolve().parent.parent
START = "## RULES\n" + "".join(f"[r-{i:05d}] rule {i}\n" for i in range(1, 9))
IDS = [f"r-{i:05d}" for i in range(1, 9)]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("workers", [4])
def test_concurrent_writer_processes_lose_no_update(db_url: str, tmp_path: Path, workers: int) -> None:
    commits = 25
    with PlaybookStore(db_url, snapshot_every=10) as store:
        store.create("pb", parse_ace(START))
    go = tmp_path / "go"
    procs = [_spawn("tag", db_url, str(w), str(commits), ",".join(IDS), str(go)) for w in range(workers)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{w}.ready").exists() for w in range(workers)):
        for p in procs:
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
        assert time.monotonic() < deadline, "workers never became ready"
        time.sleep(0.02)
    go.touch()
    totals: Counter[str] = Counter()
    retries = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        result = json.loads(out)
        totals.update(result["tags"])
        retries += result["retries"]

    with PlaybookStore(db_url, cache=False) as store:
        pb = store.load("pb")
        assert {b.id: b.helpful for b in pb} == {i: totals[i] for i in IDS}
        assert sum(totals.values()) == workers * commits
        history = store.history("pb")
        assert [h.version for h in history] == list(range(1, workers * commits + 2))
        assert all(h.parent == h.version - 1 for h in history[1:])
        assert store.verify("pb") == workers * commits + 1
        authors = [h.author for h in history[1:]]
        assert Counter(authors) == {f"worker-{w}": commits for w in range(workers)}
        switches = sum(a != b for a, b in itertools.pairwise(authors))
        assert switches >= workers, f"writers did not overlap (history: {authors})"


@pytest.mark.parametrize("at_snapshot", [False, True], ids=["delta-commit", "snapshot-commit"])
def test_process_killed_mid_commit_leaves_previous_version_intact(
    db_url: str, tmp_path: Path, at_snapshot: bool
) -> None:
    with PlaybookStore(db_url, snapshot_every=2 if at_snapshot else 50) as store:
        store.create("pb", parse_ace(START))
        before = store.head("pb")
        text_before = store.load("pb")
    flag = tmp_path / "in-commit.flag"
    big = json.dumps(
        {"operations": [{"type": "ADD", "section": "RULES", "content": f"A new rule number {i}."} for i in range(200)]}
    )
    proc = _spawn("hang", db_url, str(flag), big)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "worker never reached its commit"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    with PlaybookStore(db_url, cache=False) as store:
        head = store.head("pb")
        assert (head.version, head.digest) == (before.version, before.digest)
        assert store.load("pb").digest() == text_before.digest()
        assert store.verify("pb") == 1
        # the dead writer's lock is gone: the next commit goes through
        nxt = store.commit("pb", Delta.parse({"operations": [{"type": "TAG", "id": "r-00001", "tag": "helpful"}]}))
        assert nxt.version == 2
        assert store.verify("pb") == 2
