"""A worker learning from queued episodes with the real local model (SmolLM2), on real SQLite and PostgreSQL stores:
what it learns is the model's. The queue's and workers' logic (leases, takeover, a killed worker, passing and
lasting failures) is tested on the scripted provider in tests/test_worker_logic.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ace.config import LoopConfig
from ace.llm import LLM, Sampling
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore
from tests.test_worker_logic import episode

pytestmark = [pytest.mark.slow, pytest.mark.model]

COPY_FRIENDLY = LoopConfig(curation="facts")  # suits the small local model


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM("local", sampling=Sampling(max_tokens=512))


def test_a_worker_learns_each_episode_through_the_loop(tmp_path: Path, llm: LLM, db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, lease_s=30)
    for i in range(2):
        queue.submit("agent", episode(i), namespace="team-a")
    worker = Worker(store, queue, llm=lambda: llm, workdir=tmp_path / "runs", config=COPY_FRIENDLY)
    assert worker.run(max_episodes=2) == 2
    done = [queue.get("agent", f"agent-{i}", namespace="team-a") for i in range(2)]
    assert all(e.status == "done" and e.attempts == 1 for e in done)
    assert any(e.committed for e in done), [e.to_dict() for e in done]
    head = store.head("agent", namespace="team-a")
    assert (
        head.version == max(e.version or 0 for e in done) and store.verify("agent", namespace="team-a") == head.version
    )
    text = " ".join(b.content for b in store.load("agent", namespace="team-a"))
    assert "Thursday" in text or "green" in text
    # each episode ran as its own loop run: a trajectory that replays, no checkpoint file left behind
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "episode-1.trajectory.jsonl",
        "episode-2.trajectory.jsonl",
    ]
    assert worker.run_once() is None  # nothing left
    store.close()
