"""The episode queue of the service (ace.service.queue), on a real SQLite file and a real PostgreSQL database:
idempotent submission, one claimant per episode, leases that expire, attempts that run out."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ace.service.queue import EpisodeConflict, EpisodeError, EpisodeNotFound, EpisodeQueue, episode_key
from ace.store import PlaybookStore


def log(i: int | None, answer: str = "42", *, success: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": f"What is item {i}?"},
            {"role": "assistant", "content": answer},
        ],
        "outcome": {"success": success},
    }
    if i is not None:
        item["id"] = f"ep-{i}"
    return item


@pytest.fixture
def queue(db_url: str) -> Any:
    store = PlaybookStore(db_url)
    yield EpisodeQueue(store, lease_s=60, backoff_s=0)  # a failed try may be claimed again at once
    store.close()


def test_sending_an_episode_twice_queues_it_once_and_another_body_under_its_id_is_refused(queue: EpisodeQueue) -> None:
    first, new = queue.submit("agent", log(1), namespace="team-a")
    assert new and first.status == "queued" and first.episode_id == "ep-1" and first.attempts == 0
    again, new_again = queue.submit("agent", log(1), namespace="team-a")
    assert not new_again and again.row == first.row
    with pytest.raises(EpisodeConflict, match="different body"):
        queue.submit("agent", log(1, "43"), namespace="team-a")
    # the same id in another playbook or namespace is another episode
    assert queue.submit("other", log(1), namespace="team-a")[1] and queue.submit("agent", log(1), namespace="b")[1]
    # no id: the body's hash is the id, so the same body is still one episode
    anon, _ = queue.submit("agent", log(None), namespace="team-a")
    assert anon.episode_id.startswith("sha256:") and not queue.submit("agent", log(None), namespace="team-a")[1]
    assert queue.counts(namespace="team-a") == {"queued": 3, "running": 0, "done": 0, "failed": 0}


@pytest.mark.parametrize(
    "bad, why",
    [
        ({"messages": []}, "no 'messages'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "never spoke"),
        ({"id": "x" * 201, "messages": [{"role": "assistant", "content": "a"}]}, "at most 200"),
        ({"id": "a\u2028b", "messages": [{"role": "assistant", "content": "a"}]}, "printable"),
        ({"id": ["list"], "messages": [{"role": "assistant", "content": "a"}]}, "non-empty string"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_a_bad_episode_is_refused_with_the_reason_and_nothing_is_queued(
    queue: EpisodeQueue, bad: Any, why: str
) -> None:
    with pytest.raises(EpisodeError, match=why):
        queue.submit("agent", bad, namespace="team-a")
    assert queue.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0}


def test_names_are_checked_like_the_store_s(queue: EpisodeQueue) -> None:
    with pytest.raises(Exception, match="playbook"):
        queue.submit("../etc/passwd", log(1), namespace="team-a")


def test_each_episode_is_claimed_by_one_worker_in_order(queue: EpisodeQueue) -> None:
    for i in range(6):
        queue.submit("agent", log(i), namespace="team-a")
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (e := queue.claim(name)) is not None:
            with lock:
                claimed.append(e.episode_id)
            assert queue.finish(e, name, version=1, committed=False)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"ep-{i}" for i in range(6))  # each once, none twice
    assert queue.counts() == {"queued": 0, "running": 0, "done": 6, "failed": 0}
    done = queue.get("agent", "ep-3", namespace="team-a")
    assert done.status == "done" and done.attempts == 1 and done.version == 1 and done.committed is False


def test_an_expired_lease_lets_another_worker_take_the_episode_and_the_first_cannot_close_it(db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, lease_s=0.3, max_attempts=2)
    queue.submit("agent", log(1), namespace="team-a")
    first = queue.claim("dead-worker")
    assert first is not None and queue.claim("other") is None  # leased: nobody else gets it
    time.sleep(0.5)
    second = queue.claim("live-worker")
    assert second is not None and second.row == first.row and second.attempts == 2 and second.worker == "live-worker"
    assert not queue.finish(first, "dead-worker", version=9, committed=True)  # the lease was lost
    assert not queue.renew(first, "dead-worker")
    assert queue.renew(second, "live-worker")
    assert queue.finish(second, "live-worker", version=2, committed=True)
    assert queue.get("agent", "ep-1", namespace="team-a").version == 2
    store.close()


def test_an_episode_whose_workers_keep_dying_is_failed_after_its_attempts(db_url: str) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, lease_s=0.2, max_attempts=2)
    queue.submit("agent", log(1), namespace="team-a")
    assert queue.claim("a") is not None
    time.sleep(0.3)
    assert queue.claim("b") is not None
    time.sleep(0.3)
    assert queue.claim("c") is None  # no third try: failed with the reason
    e = queue.get("agent", "ep-1", namespace="team-a")
    assert e.status == "failed" and "gave up after 2 attempts" in (e.error or "") and "b" in (e.error or "")
    store.close()


def test_a_failed_try_is_retried_only_when_asked_and_while_attempts_last(queue: EpisodeQueue) -> None:
    queue.submit("agent", log(1), namespace="team-a")
    e = queue.claim("w")
    assert e is not None and queue.fail(e, "w", "model timed out", retry=True)
    back = queue.get("agent", "ep-1", namespace="team-a")
    assert back.status == "queued" and back.error == "model timed out"
    e = queue.claim("w")
    assert e is not None and queue.fail(e, "w", "not an episode", retry=False)
    assert queue.get("agent", "ep-1", namespace="team-a").status == "failed"
    with pytest.raises(EpisodeNotFound):
        queue.get("agent", "ep-2", namespace="team-a")


def test_the_episode_key_is_the_id_or_a_hash_of_the_canonical_body() -> None:
    a = {"messages": [{"role": "assistant", "content": "x"}], "outcome": True}
    b = {"outcome": True, "messages": [{"content": "x", "role": "assistant"}]}  # same, keys in another order
    assert episode_key(a)[0] == episode_key(b)[0] and episode_key({**a, "id": 7})[0] == "7"
