"""The episode queue: episodes sent to the service wait here until a worker learns from them.

One ``ace_episodes`` row per episode, in the store's database beside the store's tables. The table is under
Alembic with a history of its own (``queue_migrations/``, recorded in ``ace_queue_version``; see
:mod:`ace.store.components`): opening the queue brings it to the newest revision, a table from before the history
(any release's ``create_all``) included. An episode is identified within its playbook by its ``episode_id`` (the
log's ``id``, or the hash of its body): sending it again returns the row already there, so a client that retries
after a timeout does not queue it twice; the same id with a different body is refused (:class:`EpisodeConflict`).

A worker *claims* the oldest queued episode under a lease (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
that workers never wait on each other's rows; SQLite serializes writers anyway), renews the lease while it works,
and finishes it with the version it committed. A worker that dies leaves its lease to expire; the next claim
takes the episode again (``attempts`` counts the tries; after ``max_attempts`` it is failed with the reason).
A try that fails for a passing reason (the LLM provider is away, the database is busy) puts the episode back in
the queue with a not-before time (``retry_at``: exponential backoff with jitter, ``backoff_s`` doubling up to
``backoff_max_s``), showing the last error until the next try; after ``max_attempts`` tries it is ``failed``
with the reason. Only learning, or a decision not to learn (nothing to learn, the gate or guard refused), ends
``done``.
Learning commits with an idempotency key derived from the row (see :mod:`ace.service.worker`), so an episode
taken again after its worker committed finds that version instead of applying a second one: every episode's
lessons land exactly once.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from ace.errors import AceError, ConfigError
from ace.names import check_name
from ace.runs.from_logs import to_task
from ace.store import PlaybookStore
from ace.store.components import ComponentSchema, columns

Status = Literal["queued", "running", "done", "failed"]
MAX_EPISODE_ID = 200
DEFAULT_LEASE_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 5.0  # the wait after a passing failure: 5 s, 10 s, 20 s ... (plus up to a quarter of jitter)
DEFAULT_BACKOFF_MAX_S = 300.0

metadata = MetaData()

episodes = Table(
    "ace_episodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(128), nullable=False),
    Column("playbook", String(256), nullable=False),
    Column("episode_id", String(MAX_EPISODE_ID), nullable=False),
    Column("body", Text, nullable=False),  # the log, as sent (canonical JSON)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=True),  # the head after learning (the committed version, if any)
    Column("committed", Integer, nullable=True),  # 1 if the episode's lessons made a version, 0 if none
    Column("error", Text, nullable=True),
    # a queued episode whose last try failed for a passing reason is not claimed before this time (backoff)
    Column("retry_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("namespace", "playbook", "episode_id", name="uq_ace_episodes_key"),
    Index("ix_ace_episodes_status", "status", "id"),
)


def _recognise(conn: Connection) -> str | None:
    """The revision of an ``ace_episodes`` table made by ``create_all`` before the queue had a history."""
    have = columns(conn, episodes.name)
    if have is None:
        return None
    return "0002" if "retry_at" in have else "0001"


# The queue's schema: a new column is a new revision in queue_migrations/versions (and a Column above).
SCHEMA = ComponentSchema("episode queue", "ace_queue_version", Path(__file__).parent / "queue_migrations", _recognise)


class EpisodeError(AceError):
    """An episode that cannot be queued (not a readable log), with the reason."""


class EpisodeConflict(EpisodeError):
    """An episode id that is already queued with a different body."""


class QuotaExceeded(EpisodeError):
    """A namespace holds as many waiting episodes (or bytes of them) as its quota allows (HTTP 429)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """What one namespace may have waiting (queued or running) at once."""

    episodes: int = 1_000
    chars: int = 64 << 20  # the waiting episodes' JSON together, in characters (as the database measures them)


def _admit(conn: Any, namespace: str, playbook: str, episode_id: str, size: int, quota: Quota) -> None:
    """Raise :class:`QuotaExceeded` if a new episode of ``size`` characters would pass ``quota`` (an episode already
    queued under this key passes: sending it again queues nothing). Run in the inserting transaction: SQLite's
    writers are serialized already; on PostgreSQL a transaction lock per namespace serializes the count."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"ace_episodes:{namespace}"})
    t = episodes
    if conn.execute(
        select(t.c.id).where(t.c.namespace == namespace, t.c.playbook == playbook, t.c.episode_id == episode_id)
    ).first():
        return
    count, total = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.length(t.c.body)), 0)).where(
            t.c.namespace == namespace, t.c.status.in_(("queued", "running"))
        )
    ).one()
    if count >= quota.episodes:
        raise QuotaExceeded(
            f"namespace {namespace!r} has {count} episodes waiting, its quota is {quota.episodes}: retry when "
            "workers have taken some"
        )
    if total + size > quota.chars:
        raise QuotaExceeded(
            f"namespace {namespace!r} has {total:,} characters of episodes waiting; this one ({size:,}) would pass "
            f"its quota of {quota.chars:,}: retry when workers have taken some"
        )


class EpisodeNotFound(EpisodeError):
    """No episode with this id in this playbook."""


@dataclass(frozen=True)
class Episode:
    """One queued episode and what became of it."""

    row: int
    namespace: str
    playbook: str
    episode_id: str
    status: Status
    attempts: int
    version: int | None
    committed: bool | None
    error: str | None
    worker: str | None
    created_at: datetime
    updated_at: datetime
    body: str
    retry_at: datetime | None = None  # queued after a passing failure: not tried again before this time

    @property
    def log(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "playbook": self.playbook,
            "status": self.status,
            "attempts": self.attempts,
            "version": self.version,
            "committed": self.committed,
            # a finished episode's note ("nothing to learn", a guard's veto) vs a failure's reason
            "note": self.error if self.status == "done" else None,
            "error": None if self.status == "done" else self.error,
            # waiting after a passing failure (the provider away): when it will be tried again
            "retry_at": self.retry_at.isoformat() if self.status == "queued" and self.retry_at else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def episode_key(log: Mapping[str, Any]) -> tuple[str, str]:
    """The episode's id (its own ``id``, or ``sha256:`` of its canonical JSON) and that canonical JSON."""
    body = json.dumps(log, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    given = log.get("id")
    if given is None:
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:32], body
    if not isinstance(given, str | int) or isinstance(given, bool) or not str(given).strip():
        raise EpisodeError("the episode's 'id' must be a non-empty string")
    given = str(given)
    if len(given) > MAX_EPISODE_ID or any(not c.isprintable() for c in given):
        raise EpisodeError(f"the episode's 'id' must be at most {MAX_EPISODE_ID} printable characters")
    return given, body


class EpisodeQueue:
    """Episodes waiting for a worker, in ``store``'s database (see the module doc)."""

    def __init__(
        self,
        store: PlaybookStore,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if not 0 <= backoff_s <= backoff_max_s:
            raise ConfigError("the backoff must be 0 <= backoff_s <= backoff_max_s")
        self.store = store
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._pg = store.engine.dialect.name == "postgresql"
        SCHEMA.ensure(store.engine)

    # -- clients ------------------------------------------------------------------------------------------
    def submit(
        self, playbook: str, log: Mapping[str, Any], *, namespace: str, quota: Quota | None = None
    ) -> tuple[Episode, bool]:
        """Queue ``log`` (an ``ace learn`` log item) for ``playbook``; returns the episode and whether it is new.

        The log is checked first (:func:`ace.runs.from_logs.to_task`): a bad one is an :class:`EpisodeError`
        and nothing is queued. Sending the same episode again returns the row already queued (or done). With a
        ``quota``, a new episode that would take the namespace's waiting episodes past it raises
        :class:`QuotaExceeded`; the count and the insert are one transaction, serialized per namespace, so writers
        racing each other cannot pass it together."""
        namespace, playbook = check_name(namespace, "namespace"), check_name(playbook, "playbook")
        if not isinstance(log, Mapping):
            raise EpisodeError("an episode is a JSON object with 'messages' (see ace learn)")
        episode_id, body = episode_key(log)
        try:
            to_task(log, episode_id)
        except (ValueError, TypeError) as e:
            raise EpisodeError(f"not an episode: {e}") from None
        now = _now()
        try:
            with self.store.transaction(write=True) as conn:
                if quota is not None:
                    _admit(conn, namespace, playbook, episode_id, len(body), quota)
                conn.execute(
                    episodes.insert().values(
                        namespace=namespace,
                        playbook=playbook,
                        episode_id=episode_id,
                        body=body,
                        status="queued",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            new = True
        except IntegrityError:
            new = False
        found = self.get(playbook, episode_id, namespace=namespace)
        if not new and found.body != body:
            raise EpisodeConflict(
                f"episode {episode_id!r} of {namespace}/{playbook} was already sent with a different body; "
                "give each episode its own 'id'"
            )
        return found, new

    def get(self, playbook: str, episode_id: str, *, namespace: str) -> Episode:
        with self.store.transaction() as conn:
            row = conn.execute(
                select(episodes).where(
                    episodes.c.namespace == namespace,
                    episodes.c.playbook == playbook,
                    episodes.c.episode_id == episode_id,
                )
            ).one_or_none()
        if row is None:
            raise EpisodeNotFound(f"no episode {episode_id!r} in {namespace}/{playbook}")
        return _episode(row)

    def find(self, episode_id: str, *, namespace: str) -> Episode | None:
        """The namespace's episode with this id, whatever its playbook (the oldest if several), or None."""
        with self.store.transaction() as conn:
            row = conn.execute(
                select(episodes)
                .where(episodes.c.namespace == namespace, episodes.c.episode_id == episode_id)
                .order_by(episodes.c.id)
                .limit(1)
            ).one_or_none()
        return None if row is None else _episode(row)

    def list(
        self, *, namespace: str, playbook: str | None = None, status: Status | None = None, limit: int = 100
    ) -> list[Episode]:
        """The namespace's episodes, newest first."""
        q = select(episodes).where(episodes.c.namespace == namespace)
        if playbook is not None:
            q = q.where(episodes.c.playbook == playbook)
        if status is not None:
            q = q.where(episodes.c.status == status)
        with self.store.transaction() as conn:
            rows = conn.execute(q.order_by(episodes.c.id.desc()).limit(limit)).all()
        return [_episode(r) for r in rows]

    def counts(self, *, namespace: str | None = None) -> dict[str, int]:
        """How many episodes are in each status (in one namespace, or all)."""
        q = select(episodes.c.status, func.count()).group_by(episodes.c.status)
        if namespace is not None:
            q = q.where(episodes.c.namespace == namespace)
        with self.store.transaction() as conn:
            found = {status: n for status, n in conn.execute(q).all()}
        return {s: int(found.get(s, 0)) for s in ("queued", "running", "done", "failed")}

    # -- workers ------------------------------------------------------------------------------------------
    def claim(self, worker: str) -> Episode | None:
        """Take the oldest episode that is queued or whose lease has expired, under a lease for ``worker``;
        None when there is nothing to do. An expired episode that has used up its attempts is failed instead."""
        now = _now()
        ready = or_(
            and_(episodes.c.status == "queued", or_(episodes.c.retry_at.is_(None), episodes.c.retry_at <= now)),
            and_(episodes.c.status == "running", episodes.c.lease_until < now),
        )
        q = select(episodes).where(ready).order_by(episodes.c.id).limit(1)
        if self._pg:
            q = q.with_for_update(skip_locked=True)
        while True:
            with self.store.transaction(write=True) as conn:
                row = conn.execute(q).one_or_none()
                if row is None:
                    return None
                if row.attempts >= self.max_attempts:
                    conn.execute(
                        update(episodes)
                        .where(episodes.c.id == row.id)
                        .values(
                            status="failed",
                            worker=None,
                            lease_until=None,
                            updated_at=now,
                            error=f"gave up after {row.attempts} attempts (the last by {row.worker}, whose lease "
                            f"expired){': ' + row.error if row.error else ''}",
                        )
                    )
                    continue
                taken = conn.execute(
                    update(episodes)
                    .where(episodes.c.id == row.id, ready)  # still ready: a lost race changes nothing
                    .values(
                        status="running",
                        worker=worker[:128],
                        attempts=row.attempts + 1,
                        lease_until=now + timedelta(seconds=self.lease_s),
                        retry_at=None,
                        updated_at=now,
                    )
                )
                if taken.rowcount == 1:
                    return _episode(conn.execute(select(episodes).where(episodes.c.id == row.id)).one())

    def renew(self, episode: Episode, worker: str) -> bool:
        """Extend ``worker``'s lease on ``episode``; False if the lease was lost (another worker has it now)."""
        now = _now()
        with self.store.transaction(write=True) as conn:
            done = conn.execute(
                update(episodes)
                .where(episodes.c.id == episode.row, episodes.c.status == "running", episodes.c.worker == worker)
                .values(lease_until=now + timedelta(seconds=self.lease_s), updated_at=now)
            )
        return done.rowcount == 1

    def finish(self, episode: Episode, worker: str, *, version: int, committed: bool, note: str | None = None) -> bool:
        """Mark ``episode`` done with the head after it; False if ``worker`` no longer held it."""
        return self._close(episode, worker, status="done", version=version, committed=int(committed), error=note)

    def fail(
        self, episode: Episode, worker: str, error: str, *, retry: bool, retry_after_s: float | None = None
    ) -> bool:
        """Record a failed try. A passing failure (``retry``) puts the episode back in the queue, not to be tried
        before the backoff (:meth:`backoff`; at least ``retry_after_s`` when the provider said, within the cap),
        until ``max_attempts`` tries are used: then it is failed with the reason. A lasting one fails it now."""
        if retry and episode.attempts < self.max_attempts:
            wait = max(self.backoff(episode.attempts), min(retry_after_s or 0.0, self.backoff_max_s))
            return self._close(
                episode, worker, status="queued", version=None, committed=None, error=error,
                retry_at=_now() + timedelta(seconds=wait),
            )  # fmt: skip
        if retry:
            error = f"gave up after {episode.attempts} attempt(s): {error}"
        return self._close(episode, worker, status="failed", version=None, committed=None, error=error)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before the try after ``attempts`` failed ones: ``backoff_s`` doubled per try, plus up
        to a quarter of jitter (so that workers do not come back all at once), never over ``backoff_max_s``."""
        base = self.backoff_s * 2.0 ** min(max(attempts - 1, 0), 32)
        return min(self.backoff_max_s, base * (1 + random.random() / 4))

    def _close(self, episode: Episode, worker: str, **values: Any) -> bool:
        values.setdefault("retry_at", None)
        with self.store.transaction(write=True) as conn:
            done = conn.execute(
                update(episodes)
                .where(episodes.c.id == episode.row, episodes.c.status == "running", episodes.c.worker == worker)
                .values(worker=None, lease_until=None, updated_at=_now(), **values)
            )
        return done.rowcount == 1


def _episode(r: Any) -> Episode:
    return Episode(
        row=r.id,
        namespace=r.namespace,
        playbook=r.playbook,
        episode_id=r.episode_id,
        status=r.status,
        attempts=r.attempts,
        version=r.version,
        committed=None if r.committed is None else bool(r.committed),
        error=r.error,
        worker=r.worker,
        created_at=_aware(r.created_at),
        updated_at=_aware(r.updated_at),
        body=r.body,
        retry_at=None if r.retry_at is None else _aware(r.retry_at),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


__all__ = [
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_LEASE_S",
    "DEFAULT_MAX_ATTEMPTS",
    "Episode",
    "EpisodeConflict",
    "EpisodeError",
    "EpisodeNotFound",
    "EpisodeQueue",
    "Status",
    "episode_key",
    "episodes",
]
