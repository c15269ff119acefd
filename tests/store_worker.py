"""Child processes for the concurrency and crash tests: ``python -m tests.store_worker MODE URL ...``.

``tag``   connects, writes ``<go>.<worker>.ready``, waits for the start file ``<go>``, then commits N one-TAG
          deltas with a short random pause between them (an agent's work between two lessons: a commit takes ~2 ms,
          so without it the first writer could finish before the others get the lock); half the workers rebase
          (``expected_version=None``), half are optimistic and retry on StaleVersionError from the version they
          reload. Prints the count it committed per bullet.
``hang``  starts a commit and, just before the database COMMIT, writes a flag file and sleeps: the test then
          kills the process with SIGKILL, mid-transaction.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import event

from ace.playbook import Delta
from ace.store import PlaybookStore, StaleVersionError


def tag_worker(url: str, worker: int, commits: int, ids: list[str], go: str) -> None:
    store = PlaybookStore(url)
    store.head("pb")  # connect before the start line, so that all workers begin together
    Path(f"{go}.{worker}.ready").touch()
    while not Path(go).exists():
        time.sleep(0.005)
    rng = random.Random(worker)
    done: Counter[str] = Counter()
    retries = 0
    optimistic = worker % 2 == 1
    for n in range(commits):
        bullet = rng.choice(ids)
        delta = Delta.parse(
            {
                "operations": [{"type": "TAG", "id": bullet, "tag": "helpful"}],
                "source": {"task_id": f"w{worker}-{n}", "run_id": f"worker-{worker}"},
            }
        )
        while True:
            try:
                expected = store.head("pb").version if optimistic else None
                store.commit("pb", delta, expected_version=expected, author=f"worker-{worker}")
                break
            except StaleVersionError:
                retries += 1
        done[bullet] += 1
        time.sleep(rng.uniform(0.002, 0.01))
    print(json.dumps({"tags": done, "retries": retries}))


def hang_worker(url: str, flag: str, operations: str) -> None:
    store = PlaybookStore(url)

    @event.listens_for(store.engine, "commit")
    def _pause(_conn: object) -> None:
        Path(flag).write_text("in commit")
        time.sleep(600)

    store.commit("pb", Delta.parse(operations))


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "tag":
        tag_worker(url, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(","), sys.argv[6])
    elif mode == "hang":
        hang_worker(url, sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
