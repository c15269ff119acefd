"""The version log: each version's row (its delta, digest and provenance), and the replay that rebuilds any version
from the nearest snapshot (or the state a store holds) and the deltas after it.

A version with a delta is its parent plus that delta; an import or a rollback has no delta, and its state is the
snapshot written in its own transaction. Every rebuilt version is checked against the digest recorded when it was
committed. A stored row that no longer decodes or applies (edited by hand, bit rot) is reported as
:class:`~ace.store.errors.StoreIntegrityError`; anything else raised while replaying is a bug, and propagates.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from ace.playbook.bulk import collector_paused
from ace.playbook.delta import REPLAY_POLICY, Applied, Delta, MergeOp, apply
from ace.playbook.errors import DeltaError
from ace.playbook.model import Playbook, Source
from ace.store import schema as t
from ace.store.errors import CorruptRow, StoreError, StoreIntegrityError

CATCH_UP = 256  # versions behind up to which a held state is caught up by its deltas rather than a snapshot
WAYPOINT = 32  # a rebuild keeps the states it meets at multiples of this for the next one (ace.store.cache)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One entry of a playbook's history."""

    namespace: str
    name: str
    version: int
    parent: int | None
    kind: str
    digest: str
    n_bullets: int
    created_at: datetime
    author: str | None
    message: str | None
    delta: Delta | None

    @property
    def source(self) -> Source | None:
        return self.delta.source if self.delta else None

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data (what ``GET .../history`` and ``ace playbook history --json`` print)."""
        return {
            "version": self.version,
            "kind": self.kind,
            "digest": self.digest,
            "bullets": self.n_bullets,
            "created_at": self.created_at.isoformat(),
            "author": self.author,
            "message": self.message,
            "delta": json.loads(self.delta.to_json()) if self.delta else None,
        }


class NoSnapshot(StoreError):
    """Internal: a version the log cannot rebuild: it has no delta and no snapshot, or its row is missing."""


def infos(conn: Connection, row: Any, first: int, last: int) -> builtins.list[VersionInfo]:
    """The log's entries ``first .. last`` of playbook ``row``, in order."""
    rows = conn.execute(
        select(t.versions)
        .where(
            t.versions.c.playbook_id == row.id,
            t.versions.c.version >= first,
            t.versions.c.version <= last,
        )
        .order_by(t.versions.c.version)
    ).all()
    expected = builtins.range(first, min(last, int(row.head)) + 1)
    if len(rows) != len(expected):  # a row deleted or renumbered by hand: say so, never skip it silently
        missing = sorted(set(expected) - {int(r.version) for r in rows})
        raise CorruptRow(f"version {missing[0] if missing else last} of {row.namespace}/{row.name} is missing from "
                         "the log")  # fmt: skip
    return [
        VersionInfo(
            row.namespace,
            row.name,
            r.version,
            r.parent,
            r.kind,
            r.digest,
            r.n_bullets,
            aware(r.created_at),
            r.author,
            r.message,
            _delta(r.delta) if r.delta else None,
        )
        for r in rows
    ]


def _delta(text: str) -> Delta:
    return CorruptRow.decoding(lambda: Delta.model_validate_json(text))


def recorded_digest(conn: Connection, pid: int, version: int) -> Any:
    """The digest recorded for ``version`` (None if its row is missing)."""
    return conn.execute(
        select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == version)
    ).scalar_one_or_none()


def read_snapshot(conn: Connection, pid: int, version: int) -> Playbook:
    """The snapshot of ``version`` (it must exist); raises :class:`CorruptRow` if it does not decode."""
    state = conn.execute(
        select(t.snapshots.c.state).where(t.snapshots.c.playbook_id == pid, t.snapshots.c.version == version)
    ).scalar_one()
    with collector_paused():
        return CorruptRow.decoding(lambda: Playbook.from_dict(json.loads(state)))


def own_snapshot(conn: Connection, pid: int, version: int) -> Playbook:
    """The state of a version that has no delta (an import or a rollback): the snapshot written in its own
    transaction. Raises :class:`NoSnapshot` if it is missing (deleted by hand: nothing else can rebuild it)."""
    state = conn.execute(
        select(t.snapshots.c.state).where(t.snapshots.c.playbook_id == pid, t.snapshots.c.version == version)
    ).scalar_one_or_none()
    if state is None:
        raise NoSnapshot(
            f"version {version} has neither a delta nor a snapshot (an import or a rollback stores its state as "
            "a snapshot; that row is missing)"
        )
    with collector_paused():
        return CorruptRow.decoding(lambda: Playbook.from_dict(json.loads(state)))


def deltas(conn: Connection, pid: int, after: int, upto: int) -> builtins.list[tuple[int, str | None]]:
    """``(version, stored delta)`` of versions ``after + 1 .. upto``, in order; the delta is None for an import
    or a rollback (its state is its snapshot)."""
    if upto <= after:
        return []
    rows = conn.execute(
        select(t.versions.c.version, t.versions.c.delta)
        .where(t.versions.c.playbook_id == pid, t.versions.c.version > after, t.versions.c.version <= upto)
        .order_by(t.versions.c.version)
    ).all()
    expected = builtins.list(range(after + 1, upto + 1))
    if [int(r.version) for r in rows] != expected:
        missing = sorted(set(expected) - {int(r.version) for r in rows})
        raise NoSnapshot(f"version {missing[0] if missing else upto} is missing from the log")
    return [(int(r.version), r.delta) for r in rows]


def replay(state: Playbook, text: str) -> Applied:
    """A stored delta applied to ``state`` as it was when committed (:data:`~ace.playbook.delta.REPLAY_POLICY`).
    A delta that does not parse or no longer applies raises :class:`CorruptRow`."""
    delta = CorruptRow.decoding(lambda: Delta.model_validate_json(text))
    try:
        return apply(state, delta, policy=REPLAY_POLICY)
    except DeltaError as e:
        raise CorruptRow(e) from e


def rebuild(
    conn: Connection,
    pid: int,
    version: int,
    cached: tuple[int, Playbook] | None,
    keep: Callable[[int, Playbook], None] | None = None,
) -> Playbook:
    """Version ``version`` from the log: the ``cached`` state (version, playbook) or the nearest snapshot, plus the
    deltas after it; checked against the digest recorded for it (raises :class:`StoreIntegrityError`). A cached
    state older than the version is used only if it is the one recorded for its own version (a store's memory of a
    playbook deleted and made again under the same id is not). ``keep(v, state)`` receives the states met every
    :data:`WAYPOINT` versions on the way, each checked against its recorded digest (see :mod:`ace.store.cache`)."""
    if cached is not None and cached[0] == version:
        return cached[1]
    snap_v = conn.execute(
        select(func.max(t.snapshots.c.version)).where(
            t.snapshots.c.playbook_id == pid, t.snapshots.c.version <= version
        )
    ).scalar_one()
    if snap_v is None:
        raise StoreIntegrityError(f"playbook #{pid} has no snapshot at or below version {version}")
    state: Playbook | None
    met: list[tuple[int, Playbook]] = []
    try:
        # from the cached state when it is at or below the version and not far behind (another writer moved
        # the head, or an old version read before): a few deltas are cheaper than a snapshot, even one written
        # since the cached version
        if (
            cached is not None
            and cached[0] <= version
            and (snap_v <= cached[0] or version - cached[0] <= CATCH_UP)
            and cached[1].digest() == recorded_digest(conn, pid, cached[0])
        ):
            base_v, state = cached
        else:
            base_v, state = snap_v, read_snapshot(conn, pid, snap_v)
        steps = deltas(conn, pid, base_v, version)
        # an import or a rollback has no delta: its state is its own snapshot, and what came before it is moot
        restart = [k for k, (_v, text) in enumerate(steps) if text is None]
        if restart:
            state, steps = own_snapshot(conn, pid, steps[restart[-1]][0]), steps[restart[-1] + 1 :]
        for v, text in steps:  # all of them, after the restart
            if text is not None:
                state = replay(state, text).playbook
                if keep is not None and v % WAYPOINT == 0 and v != version:
                    met.append((v, state))
        corrupt = None
    except NoSnapshot as e:
        state, corrupt = None, str(e)
    except CorruptRow as e:  # a row that no longer parses or applies (edited, bit rot)
        state, corrupt = None, f"its stored log no longer rebuilds ({e.kind}: {str(e)[:120]})"
    # integrity on open: the rebuilt state must have the digest recorded when the version was committed
    recorded = recorded_digest(conn, pid, version)
    if state is not None and state.digest() != recorded:
        corrupt = f"it rebuilds to digest {state.digest()[:12]}, but {str(recorded)[:12]} was recorded"
    if corrupt or state is None:
        name = conn.execute(select(t.playbooks.c.name).where(t.playbooks.c.id == pid)).scalar_one_or_none()
        raise StoreIntegrityError(
            f"playbook {name!r} version {version} is corrupt: {corrupt}. Nothing is served or written on it; run "
            f"`ace playbook verify {name}` to find the first bad version and `ace playbook rollback` to a good one"
        )
    if keep is not None and met:
        digests = dict(
            conn.execute(
                select(t.versions.c.version, t.versions.c.digest).where(
                    t.versions.c.playbook_id == pid, t.versions.c.version.in_([v for v, _ in met])
                )
            ).all()
        )
        for v, s in met:
            if s.digest() == digests.get(v):  # the digest is carried through each replay: no rehashing
                keep(v, s)
    return state


def replay_between(conn: Connection, pid: int, early: Playbook, lo: int, hi: int) -> tuple[Playbook, set[str]] | None:
    """Version ``hi`` as ``early`` (version ``lo``) plus the deltas between, with the ids they touched; None when
    that does not make it (an import or a rollback between, a row that does not decode or apply, a result that
    does not match the digest recorded for ``hi``): then it is read as any version is."""
    late = early
    replayed: set[str] = set()
    try:
        for _v, text in deltas(conn, pid, lo, hi):
            if text is None:  # a rollback or an import between: no delta to replay
                return None
            applied = replay(late, text)
            late = applied.playbook
            replayed.update(applied.patch.before if applied.patch is not None else ())
    except (CorruptRow, NoSnapshot):
        return None
    recorded = conn.execute(
        select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == hi)
    ).scalar_one()
    if late.digest() != recorded:
        return None
    return late, replayed


def verified(
    conn: Connection,
    pid: int,
    name: str,
    v: int,
    recorded: dict[int, str],
    stored: dict[int, str | None],
    snaps: set[int],
    state: Playbook | None,
    *,
    first: bool = False,
) -> Playbook:
    """Version ``v`` rebuilt from ``state`` (version ``v - 1``) by its ``stored`` delta, checked against its
    ``recorded`` digest; the ``first`` version checked is read from its snapshot. Raises
    :class:`StoreIntegrityError` for a version that does not match, :class:`CorruptRow` for a row that does not
    decode or apply."""
    if v not in recorded:
        raise StoreIntegrityError(f"playbook {name!r}: version {v} is missing from the log")
    text = stored[v]
    if first and v in snaps:
        state = read_snapshot(conn, pid, v)
    elif text is not None and state is not None:
        state = replay(state, text).playbook
        if v in snaps and read_snapshot(conn, pid, v).digest() != recorded[v]:
            raise StoreIntegrityError(f"playbook {name!r}: snapshot of version {v} does not match")
    elif v in snaps:
        state = read_snapshot(conn, pid, v)
    else:
        raise StoreIntegrityError(f"playbook {name!r}: version {v} has neither a delta nor a snapshot")
    if state.digest() != recorded[v]:
        raise StoreIntegrityError(
            f"playbook {name!r}: version {v} rebuilds to digest {state.digest()[:12]}, "
            f"but {recorded[v][:12]} was recorded"
        )
    return state


def op_source(delta: Delta, bullet_id: str) -> Source | None:
    """The provenance of the operation that touched ``bullet_id`` (its own, in a merged batch, else the delta's)."""
    for op in delta.operations:
        if bullet_id in (op.ids if isinstance(op, MergeOp) else [op.id]) and op.source is not None:
            return op.source
    return delta.source


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
