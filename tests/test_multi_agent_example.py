"""The multi-agent example (examples/multi_agent/run.py) at a small scale, as CI runs it: agent processes send
episodes over HTTP to `ace serve` on PostgreSQL, two `ace worker` processes learn with the local model, one is
killed mid-episode; the script checks exactly-once processing and that every version verifies (exit status 0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_four_agents_two_workers_one_killed_nothing_lost_nothing_twice(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(ROOT / "examples/multi_agent/run.py"), "--db", pg_url, "--episodes", "12"]
    cmd += ["--agents", "4", "--kill-after", "1", "--lease", "5", "--out", str(out)]  # while first answers are learned
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["statuses"] == {"queued": 0, "running": 0, "done": 12, "failed": 0}
    assert figures["killed"]["episode"] in figures["retaken"]
    assert figures["versions_from_episodes"] == figures["committed_episodes"] == figures["distinct_episode_keys"]
    assert figures["verified_versions"] == figures["head"]
