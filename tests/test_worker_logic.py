"""The episode queue's and the workers' logic, on real SQLite and PostgreSQL stores, with the public scripted
provider (``ace.llm.testing``: a test double that answers every role with a valid reply) instead of a model: an
episode is learned from once, even when its worker dies after committing or is killed mid-episode; a passing
failure requeues it, a lasting one fails it; a worker thread survives a queue that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ace.config import LoopConfig
from ace.errors import ConfigError
from ace.llm import LLM, ProviderError
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.runs.from_logs import learn, to_task
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore
from ace.store import schema as t

FACTS_CURATION = LoopConfig(curation="facts")  # the scripted reflector copies the first value it is offered
FACTS = [
    ("Which day are invoices sent at the co-op?", "Thursday"),
    ("Which colour are the member cards?", "green"),
    ("How many days of notice does a member give before leaving?", "thirty"),
]


def episode(i: int) -> dict[str, Any]:
    question, answer = FACTS[i % len(FACTS)]
    return {
        "id": f"agent-{i}",
        "task": question,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "I am not sure."}],
        "outcome": {"success": False, "message": f"wrong: the answer is {answer}"},
        "target": answer,
    }


def scripted() -> LLM:
    return LLM(ScriptedProvider(valid_reply))


def keyed_versions(store: PlaybookStore) -> list[str]:
    with store.transaction() as conn:
        return [k for (k,) in conn.execute(select(t.versions.c.key).where(t.versions.c.key.is_not(None))).all()]


def test_a_worker_runs_each_episode_as_its_own_loop_run(tmp_path: Path, db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, lease_s=30)
    for i in range(2):
        queue.submit("agent", episode(i), namespace="team-a")
    worker = Worker(store, queue, llm=scripted, workdir=tmp_path / "runs", config=FACTS_CURATION)
    assert worker.run(max_episodes=2) == 2
    done = [queue.get("agent", f"agent-{i}", namespace="team-a") for i in range(2)]
    assert all(e.status == "done" and e.attempts == 1 and e.committed for e in done), [e.to_dict() for e in done]
    head = store.head_version("agent", namespace="team-a")
    assert head == max(e.version or 0 for e in done) == 3 and store.verify("agent", namespace="team-a") == head
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "episode-1.trajectory.jsonl",
        "episode-2.trajectory.jsonl",
    ]  # a trajectory per episode, no checkpoint file left behind
    assert worker.run_once() is None  # nothing left
    store.close()


def test_an_episode_taken_over_after_its_worker_committed_is_not_applied_twice(tmp_path: Path, db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, lease_s=1.0)
    queue.submit("agent", episode(0), namespace="team-a")
    dying = queue.claim("dying-worker")
    assert dying is not None
    # the dying worker does all the work a worker does, commits, and dies before marking the episode done
    learn([to_task(dying.log, dying.episode_id)], scripted(), store, "agent", run_id=f"episode-{dying.row}",
          workdir=tmp_path / "a", namespace="team-a", config=FACTS_CURATION)  # fmt: skip
    committed = store.head_version("agent", namespace="team-a")
    assert committed == 2
    time.sleep(1.2)  # the lease runs out
    survivor = Worker(store, queue, llm=scripted, workdir=tmp_path / "b", config=FACTS_CURATION, name="survivor")
    e = survivor.run_once()
    assert e is not None and e.status == "done" and e.attempts == 2 and e.version == committed
    assert store.head_version("agent", namespace="team-a") == committed  # the same key: no second version
    assert keyed_versions(store) == [f"episode-{dying.row}:0"]
    store.close()


def test_a_killed_worker_process_loses_no_episode_and_applies_none_twice(tmp_path: Path, db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store)
    n = 4
    for i in range(n):
        queue.submit("agent", episode(i), namespace="team-a")
    script = tmp_path / "slow.json"  # every reply takes 0.4 s, as a model's would: the worker is killed mid-episode
    script.write_text(json.dumps({"replies": "valid", "delay_s": 0.4}))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "ace.cli", "worker", "--db", db_url, "--lease", "2", "--curation", "facts",
           "--provider", f"scripted:{script}"]  # fmt: skip
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while queue.counts()["running"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert queue.counts()["running"] == 1, "the worker never took an episode"
        time.sleep(0.2)  # mid-episode: inside its first reply
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    killed = [e for e in queue.list(namespace="team-a") if e.status == "running"]
    assert len(killed) == 1
    survivor = subprocess.run([*cmd, "--drain"], env=env, capture_output=True, text=True, timeout=300)
    assert survivor.returncode == 0, survivor.stdout + survivor.stderr
    episodes = queue.list(namespace="team-a")
    assert sorted(e.status for e in episodes) == ["done"] * n, [e.to_dict() for e in episodes]
    assert all(e.attempts == (2 if e.row == killed[0].row else 1) for e in episodes)
    keys = keyed_versions(store)
    assert len(keys) == len(set(keys)) == sum(bool(e.committed) for e in episodes) >= 1  # one version per learning
    head = store.head_version("agent", namespace="team-a")
    assert store.verify("agent", namespace="team-a") == head
    store.close()


def test_a_passing_failure_requeues_the_episode_and_a_lasting_one_fails_it(tmp_path: Path, sqlite_url: str) -> None:
    store = PlaybookStore(sqlite_url)
    queue = EpisodeQueue(store, backoff_s=0)  # the requeued episode may be claimed again at once
    queue.submit("agent", episode(0), namespace="team-a")

    def timed_out() -> LLM:
        raise ProviderError("the provider timed out")

    e = Worker(store, queue, llm=timed_out, workdir=tmp_path, name="w").run_once()
    assert e is not None and e.status == "queued" and e.attempts == 1 and "timed out" in (e.error or "")

    def misconfigured() -> LLM:
        raise ConfigError("unknown provider spec 'gemini:x'")

    e = Worker(store, queue, llm=misconfigured, workdir=tmp_path, name="w").run_once()
    assert e is not None and e.status == "failed" and e.attempts == 2 and "gemini" in (e.error or "")
    assert store.list("team-a") == []  # nothing was written to the store
    store.close()


def test_a_worker_thread_survives_a_queue_that_fails(tmp_path: Path, sqlite_url: str) -> None:
    store = PlaybookStore(sqlite_url)
    queue = EpisodeQueue(store)
    calls = {"n": 0}
    real_claim = queue.claim

    def flaky(worker: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("the database went away")
        return real_claim(worker)

    queue.claim = flaky  # type: ignore[method-assign]
    stop = threading.Event()
    worker = Worker(store, queue, llm=scripted, workdir=tmp_path, poll_s=0.01)
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    while calls["n"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    assert calls["n"] >= 2 and not thread.is_alive()  # it kept polling after the failure, then stopped when asked
    store.close()


@pytest.mark.parametrize("bad", ['{"replies": "valid", "delay_s": -1}', '{"replies": 3}', "[1,"])
def test_a_bad_script_file_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    from ace.llm import LLMError, get_provider

    script = tmp_path / "bad.json"
    script.write_text(bad)
    with pytest.raises(LLMError, match="script"):
        get_provider(f"scripted:{script}")


def test_a_worker_on_scripted_valid_replies_commits_and_a_bad_provider_is_refused_at_start(
    tmp_path: Path, sqlite_url: str
) -> None:
    store = PlaybookStore(sqlite_url)
    queue = EpisodeQueue(store)
    queue.submit("agent", episode(0), namespace="team-a")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    base = [sys.executable, "-m", "ace.cli", "worker", "--db", sqlite_url, "--drain"]
    for bad in ("bogus", f"scripted:{tmp_path / 'missing.json'}", f"local:{tmp_path / 'missing.gguf'}"):
        refused = subprocess.run([*base, "--provider", bad], env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and f"--provider {bad}" in refused.stderr, refused.stderr
    assert queue.list(namespace="team-a")[0].status == "queued"  # nothing was taken, nothing failed
    done = subprocess.run([*base, "--provider", "scripted:valid"], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (e,) = queue.list(namespace="team-a")
    assert e.status == "done" and e.committed and e.version == 2, e.to_dict()  # the paper's curator, scripted
    store.close()
