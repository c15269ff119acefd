"""Snapshots of whole versions: when a periodic one is due, its text, and the background thread that writes it.

A version is rebuilt from the nearest snapshot at or below it and the deltas after it (:mod:`ace.store.log`).
Imports and rollbacks (no delta to replay) are snapshotted in their own transaction; every ``snapshot_every``-th
version, or more rarely for a large playbook (every n/10 versions: a snapshot costs O(n)), is snapshotted after
its commit by one background thread (:class:`Background`), so that no commit pays for serializing the playbook.
Before the process forks, every background thread finishes what it is doing.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from ace.playbook.model import Playbook
from ace.store import schema as t
from ace.store.engine import Connections

log = logging.getLogger("ace.store")


class Background:
    """One store's background thread (periodic snapshots, WAL checkpoints), started on first use; a process forked
    from the one that started it starts its own."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0  # a forked child does not inherit the thread: it starts its own
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()

    def later(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job`` on the background thread (a snapshot, a WAL checkpoint): after the commit."""
        _WITH_BACKGROUND.add(self)
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="ace-snapshot")
                self._pid, self._pending = os.getpid(), []
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(job, *args))

    def flush(self) -> None:
        """Wait until the jobs scheduled so far are done (or given up: a snapshot only speeds up loading)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and futures are not ours
                self._executor, self._pending = None, []
            pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        """Flush, then stop the thread (if this process started it)."""
        self.flush()
        if self._executor is not None and self._pid == os.getpid():
            self._executor.shutdown(wait=True)
            self._executor = None


# Background threads that have run. Before this process forks, each finishes what it is doing: a SQLite connection
# that is inside a transaction when the process forks leaves the child believing a lock is held that nobody in it
# will ever release (its commits then wait out the busy timeout and fail).
_WITH_BACKGROUND: weakref.WeakSet[Background] = weakref.WeakSet()


def _finish_background_work() -> None:
    for background in builtins.list(_WITH_BACKGROUND):
        try:
            background.flush()
        except Exception as e:  # a snapshot or checkpoint that failed is only a lost speed-up
            log.debug("background work before fork: %s", e)


os.register_at_fork(before=_finish_background_work)


def snapshot_due(conn: Connection, pid: int, version: int, n_bullets: int, every: int) -> bool:
    """Whether a periodic snapshot is due at ``version`` (a multiple of ``every``): every ``every`` versions, or
    every n/10 for a playbook of n bullets: a snapshot's O(n) is shared by as many commits, and rebuilding an old
    version replays at most n/10 deltas after one, which costs about what reading the snapshot does (one small
    delta parses and applies in ~6 bullets' time)."""
    span = max(every, n_bullets // 10)
    if span == every:
        return True
    last = conn.execute(
        select(func.max(t.snapshots.c.version)).where(
            t.snapshots.c.playbook_id == pid, t.snapshots.c.version <= version
        )
    ).scalar_one()
    return last is None or version - last >= span


def write_periodic(db: Connections, every: int, pid: int, version: int, pb: Playbook) -> None:
    """Write the periodic snapshot of ``pb`` as version ``version`` if it is due (the background job); a snapshot
    that cannot be written is skipped: nothing depends on it."""
    try:
        with db.read() as conn:
            if not snapshot_due(conn, pid, version, len(pb), every):
                return
        state = serialized(pb, yielding=True)
        with db.write() as conn:
            conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=state))
    except IntegrityError:  # written already (another process), or the playbook is gone
        pass
    except Exception as e:  # the database is away: this snapshot is skipped, nothing depends on it
        log.warning("snapshot of playbook #%s v%s not written: %s", pid, version, e)


def snapshot_of(pb: Playbook, texts: dict[str, str]) -> str:
    """The snapshot text of ``pb`` from its bullets' canonical texts (a bullet row may hold its section too)."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    parts = [
        f'{{"name":{dumps(s.name)},"slug":{dumps(s.slug)},"bullets":[{",".join(texts[i] for i in s.ids)}]}}'
        for s in pb.sections.values()
    ]
    return f'{{"format":"ace.playbook/v1","next_id":{pb.next_id},"sections":[{",".join(parts)}]}}'


def serialized(pb: Playbook, *, yielding: bool = False) -> str:
    """The snapshot text of ``pb``, from each bullet's canonical JSON. ``yielding``: giving up the interpreter every
    few hundred bullets, so that a background thread does not stall the commits beside it."""
    texts: dict[str, str] = {}
    for n, b in enumerate(pb.bullets_by_id.values(), start=1):
        texts[b.id] = b.canonical()
        if yielding and n % 256 == 0:
            time.sleep(0)
    return snapshot_of(pb, texts)
