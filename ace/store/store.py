"""The versioned playbook store on SQLAlchemy: commit, load, history, diff, rollback, blame.

Concurrency is optimistic: a commit names the version it was computed against (``expected_version``) and fails
with :class:`StaleVersionError` if another writer got there first; ``expected_version=None`` applies the delta on
whatever the head is, inside the same locked transaction (a rebase, right for TAG-style deltas). Writers on one
playbook are serialized by the database: ``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` elsewhere, and
the ``(playbook, version)`` primary key makes a lost update impossible even without them.

A commit writes one version row, the delta's blame rows and the rows of the materialized head it changes
(:mod:`ace.store.schema`): O(delta), from any process, whether or not it holds the playbook. The operations are
those of :func:`~ace.playbook.apply`, run on the bullets the delta names (:func:`~ace.playbook.delta.apply_to_head`)
or on the head this store holds in memory. Loading the head reads its rows; an older version rebuilds from the
nearest snapshot and the deltas after it. Snapshots are written after a commit by a background thread
(``background_snapshots``; :meth:`flush` waits) every ``snapshot_every`` versions, or more rarely for a large
playbook (every n/10 versions: a snapshot costs O(n)), so no commit pays for one. The store keeps the last state
it saw per playbook in memory and catches it up by applying only the deltas it missed.

This module is the façade: :class:`PlaybookStore` runs each write and read on the modules that do one job each,
:mod:`ace.store.engine` (the database, its transactions, forks), :mod:`ace.store.log` (the version log and its
replay), :mod:`ace.store.head` (the materialized head's rows), :mod:`ace.store.snapshots` (when a snapshot is due,
its text, the background thread) and :mod:`ace.store.cache` (the states held in memory).
"""

from __future__ import annotations

import builtins
import functools
import logging
import unicodedata
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import QueuePool, StaticPool

from ace.errors import ConfigError
from ace.names import InvalidName, check_name, check_optional
from ace.playbook.bulk import collector_paused
from ace.playbook.delta import REPLAY_POLICY, ApplyPolicy, Delta, HeadView, Patch, apply, apply_to_head
from ace.playbook.diff import PlaybookDiff, diff
from ace.playbook.errors import DeltaError
from ace.playbook.merge import STRATEGIES, plan_merge
from ace.playbook.model import Bullet, Playbook, Source
from ace.playbook.quality import QualityRules, content_problem, injection, section_problem
from ace.store import branches as br
from ace.store import channels as ch
from ace.store import head as heads
from ace.store import log as vlog
from ace.store import schema as t
from ace.store.cache import StateCache
from ace.store.engine import WAL_AUTOCHECKPOINT, Connections, default_url, make_engine
from ace.store.errors import (
    CorruptRow,
    ImportRefused,
    PlaybookExists,
    PlaybookNotFound,
    StaleVersionError,
    StoreError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.store.head import Head, HeadDamaged
from ace.store.log import VersionInfo
from ace.store.schema_version import prepare
from ace.store.snapshots import Background, serialized, snapshot_due, snapshot_of, write_periodic
from ace.telemetry import promoted, traced_read, traced_write

DEFAULT_NAMESPACE = "default"
DIFF_REPLAY = 1_000  # versions apart up to which diff replays the deltas between instead of building both states
CHECKPOINT_EVERY = 100  # commits of one store between its background WAL checkpoints (SQLite)

log = logging.getLogger("ace.store")


@dataclass(frozen=True, slots=True)
class _NewVersion:
    """What a write puts on top of the head: the new state, how it was made, the bullets it touched."""

    kind: str  # import | delta | rollback
    delta: Delta | None
    playbook: Playbook | None  # None: a commit made from the materialized head alone
    touched: list[tuple[str, str]]
    author: str | None
    message: str | None
    snapshot: bool = False  # force a snapshot (imports and rollbacks have no delta to replay)
    key: str | None = None  # idempotency key of the write
    patch: Patch | None = None  # what a delta changed, written to the materialized head ``head``
    head: Head | None = None


class _Unchanged(Exception):
    """A write that would not change the head (a rollback to the state it has): ``head`` is returned instead."""

    def __init__(self, head: VersionInfo) -> None:
        super().__init__("unchanged")
        self.head = head


@dataclass(frozen=True, slots=True)
class PlaybookInfo:
    namespace: str
    name: str
    head: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "head": self.head,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class BlameEntry:
    """A version that touched a bullet, with the op and the provenance recorded for it."""

    version: int
    op: str
    created_at: datetime
    author: str | None
    message: str | None
    source: Source | None

    def to_dict(self) -> dict[str, Any]:
        source = None if self.source is None else self.source.to_dict()
        return {
            "version": self.version,
            "op": self.op,
            "author": self.author,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
            "source": source,
        }


class PlaybookStore:
    """Versioned playbooks keyed by ``(namespace, name)`` in any SQLAlchemy database.

    >>> store = PlaybookStore("sqlite:///ace.db")            # doctest: +SKIP
    >>> store.create("finance", playbook)                    # version 1  # doctest: +SKIP
    >>> store.commit("finance", delta, expected_version=1)   # version 2  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        snapshot_every: int = 50,
        policy: ApplyPolicy | None = None,
        cache: bool = True,
        background_snapshots: bool = True,
    ) -> None:
        if snapshot_every < 1:
            raise ConfigError("snapshot_every must be >= 1")
        self._background = Background()  # periodic snapshots and WAL checkpoints, after the commit
        self.url = url or default_url()
        # the default location (the data directory) is made on first use; a path given by hand must exist
        self.engine = engine or make_engine(self.url, create_dirs=url is None or url == default_url())
        self._db = Connections(self.engine)  # and a forked child opens its own connections
        # periodic snapshots are written after the commit, by one background thread, so that no commit pays for
        # serializing the whole playbook; imports and rollbacks (no delta to replay) snapshot in their transaction.
        # An in-memory SQLite database is one shared connection: no second thread may write on it.
        self.background_snapshots = background_snapshots and not isinstance(self.engine.pool, StaticPool)
        self.snapshot_every = snapshot_every
        self.policy = policy or ApplyPolicy()
        self._cache = StateCache(cache)  # the last state seen per playbook
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._commits = 0
        self._damaged: set[int] = set()  # playbooks whose materialized head a read found wrong: rebuilt on write
        prepare(self.engine, self.url)

    def close(self) -> None:
        self._background.close()
        self.engine.dispose()

    def flush(self) -> None:
        """Wait until the periodic snapshots scheduled so far are written (or given up: a snapshot only speeds
        up loading; every version rebuilds from an earlier one and the deltas after it)."""
        self._background.flush()

    def _write_snapshot(self, pid: int, version: int, pb: Playbook) -> None:
        write_periodic(self._db, self.snapshot_every, pid, version, pb)

    def __enter__(self) -> PlaybookStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------------------
    def transaction(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        """A transaction on the store's database for other tables that live in it (the memory tiers); a write
        transaction takes the same writer lock as a commit."""
        return self._write() if write else self._read()

    def _write(self) -> AbstractContextManager[Connection]:
        return self._db.write()

    def _read(self) -> AbstractContextManager[Connection]:
        return self._db.read()

    def _row(self, conn: Connection, namespace: str, name: str, *, lock: bool = False) -> Any:
        """The playbook's row, looked up by its names as stored: NFC-normalized, as :func:`check_name` stores them
        (a name typed in NFD, as macOS file names and some keyboards give it, finds the playbook it created)."""
        namespace, name = _nfc(namespace), _nfc(name)
        q = select(t.playbooks).where(t.playbooks.c.namespace == namespace, t.playbooks.c.name == name)
        if lock:
            q = q.with_for_update()
        row = conn.execute(q).one_or_none()
        if row is None:
            raise PlaybookNotFound(namespace, name)
        return row

    # -- writing ------------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        playbook: Playbook | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        author: str | None = None,
        message: str | None = None,
        force: bool = False,
    ) -> VersionInfo:
        """Store ``playbook`` (default: empty) as version 1 of a new playbook. ``name`` and ``namespace`` follow
        :func:`ace.names.check_name` (raises :class:`~ace.names.InvalidName`).

        An import meets the quality gate a delta meets (the store policy's ``quality`` rules, None = off; see
        :func:`import_problems`): a bullet or a section name that fails it raises :class:`ImportRefused` and nothing
        is written. ``force=True`` stores it anyway, and the version's message records that it was forced, by whom
        (``author``) and past how many problems."""
        name, namespace = check_name(name, "playbook name"), check_name(namespace, "namespace")
        author = check_optional(author, "author")
        pb = playbook if playbook is not None else Playbook.empty()
        problems = import_problems(pb, self.policy.quality)
        if problems and not force:
            raise ImportRefused(namespace, name, problems)
        if problems:
            n = len(problems)
            forced = (
                f"import forced past the quality gate by {author or 'an unnamed author'}: {n} problem{'s' * (n != 1)}"
                f" (first: {problems[0][0]}: {problems[0][1]})"
            )
            log.warning("playbook %s/%s: %s", namespace, name, forced)
            message = f"{message}; {forced}" if message else forced
        new = _NewVersion("import", None, pb, [(b.id, "IMPORT") for b in pb], author, message, snapshot=True)
        with self._read() as conn:  # one that exists (ensure's usual case) is no write: no update_memory span
            try:
                self._row(conn, namespace, name)
            except PlaybookNotFound:
                pass
            else:
                raise PlaybookExists(namespace, name)
        return self._create_version(namespace, name, new)

    @traced_write  # the first version's update_memory span too (an import, a new playbook)
    def _create_version(self, namespace: str, name: str, new: _NewVersion) -> VersionInfo:
        try:
            with self._write() as conn:
                pid: int = conn.execute(
                    insert(t.playbooks).values(namespace=namespace, name=name, head=1, created_at=vlog.now())
                ).inserted_primary_key[0]  # type: ignore[index]
                info = self._insert_version(conn, pid, namespace, name, 1, None, new)
        except IntegrityError:
            raise PlaybookExists(namespace, name) from None
        assert new.playbook is not None
        self._cache.remember(pid, 1, new.playbook)
        return info

    def ensure(
        self,
        name: str,
        playbook: Playbook | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        author: str | None = None,
        message: str | None = None,
        force: bool = False,
    ) -> VersionInfo:
        """The head of ``name``, creating it from ``playbook`` (default: empty) first if it does not exist; two
        callers at once both get the one that was created. A playbook that would be created meets the quality gate
        as in :meth:`create` (``force`` as there); one that exists already is returned whatever ``playbook`` holds."""
        try:
            return self.create(name, playbook, namespace=namespace, author=author, message=message, force=force)
        except PlaybookExists:
            return self.head(name, namespace=namespace)
        except ImportRefused as refused:  # refused before looking: it may exist already
            try:
                return self.head(name, namespace=namespace)
            except PlaybookNotFound:
                raise refused from None

    def _ask_second_opinion(self, delta: Delta) -> None:
        """Ask the quality rules' second opinion (a model: tens of milliseconds a text) about the delta's texts
        *before* the write lock is taken: ``apply`` asks again under the lock and finds the verdicts in the judge's
        cache, so a slow judge never holds the database's write lock. Verdicts are not acted on here."""
        rules = self.policy.quality
        if rules is None or not rules.reject_injection or rules.second_opinion is None:
            return
        for op in delta.operations:
            for text in (getattr(op, "content", None), getattr(op, "section", None)):
                if isinstance(text, str) and text.strip() and injection(text) is None:
                    rules.second_opinion(text)

    def commit(
        self,
        name: str,
        delta: Delta,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
        key: str | None = None,
    ) -> VersionInfo:
        """Apply ``delta`` to the head and store the result as a new version; all or nothing.

        Raises :class:`~ace.playbook.DeltaError` for an invalid delta and :class:`StaleVersionError` when
        ``expected_version`` is given and is no longer the head; in both cases nothing is written. ``key`` makes
        the commit idempotent: if a version with this key exists, it is returned and nothing is written (a
        runner that crashed after committing and retries the step does not apply it twice).
        """

        if not delta.operations:
            raise DeltaError("it has no operations: there is nothing to commit")
        self._ask_second_opinion(delta)

        def make(conn: Connection, row: Any) -> _NewVersion:
            head = None if row.id in self._damaged else heads.current(conn, row)
            cached = self._cache.get(row.id)
            warm = cached is not None and cached[0] == row.head
            if head is not None and warm and cached is not None and not heads.agrees(head, cached[1]):
                log.warning(
                    "playbook %s/%s: its materialized head is rebuilt (it disagrees with the log)", namespace, name
                )
                head = None
            if head is not None and not warm:
                view = HeadView(head.sections, head.next_id, head.n_bullets, lambda ids: heads.fetch(conn, row.id, ids))
                try:  # O(delta): only the bullets the delta names are read
                    patch, resolved = apply_to_head(view, delta, policy=self.policy)
                    return _NewVersion(
                        "delta",
                        resolved,
                        None,
                        resolved.ids_touched(),
                        author,
                        message,
                        key=key,
                        patch=patch,
                        head=head,
                    )
                except HeadDamaged as e:
                    log.warning("playbook %s/%s: %s; its materialized head is rebuilt from the log", namespace, name, e)
                    head = None
            if head is None:  # not materialized (a database from before revision 0005) or damaged: from the log
                base = self._rebuild(conn, row.id, row.head)
                head = heads.materialize(conn, row.id, row.head, base)[0]
                self._damaged.discard(row.id)
                self._cache.remember(row.id, row.head, base)
            else:  # the head this store holds
                base = self._state(conn, row.id, row.head)
            applied = apply(base, delta, policy=self.policy)
            return _NewVersion(
                "delta",
                applied.delta,
                applied.playbook,
                applied.delta.ids_touched(),
                author,
                message,
                key=key,
                patch=applied.patch,
                head=head,
            )

        return self._append_version(namespace, name, expected_version, make, key=key)

    def rollback(
        self,
        name: str,
        version: int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> VersionInfo:
        """Make the state of ``version`` the new head, as a new version: history is kept, nothing is erased. When
        the head already has that state (its recorded digest), nothing is written and the head is returned, as an
        empty delta is never committed: a rollback sent twice makes one version."""

        def make(conn: Connection, row: Any) -> _NewVersion:
            _check_version(name, version, row.head)
            digests = dict(
                conn.execute(
                    select(t.versions.c.version, t.versions.c.digest).where(
                        t.versions.c.playbook_id == row.id, t.versions.c.version.in_((version, row.head))
                    )
                ).all()
            )
            if digests.get(version) is not None and digests.get(version) == digests.get(row.head):
                raise _Unchanged(vlog.infos(conn, row, row.head, row.head)[0])
            target = self._state(conn, row.id, version)
            try:
                touched = diff(self._state(conn, row.id, row.head), target).touched_ids()
            except StoreIntegrityError:  # rolling back away from a corrupt head: blame every bullet of the target
                touched = [b.id for b in target]
            return _NewVersion(
                "rollback",
                None,
                target,
                [(i, "ROLLBACK") for i in touched],
                author,
                message or f"rollback to version {version}",
                snapshot=True,
            )

        try:
            return self._append_version(namespace, name, expected_version, make)
        except _Unchanged as same:  # raised inside the write transaction: nothing was written
            return same.head

    def pick(
        self,
        name: str,
        base: int,
        versions: Sequence[int],
        *,
        edit: Delta | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> VersionInfo:
        """A new head made of version ``base`` with the deltas of ``versions`` (later than ``base``, replayed in
        order, as they were committed) and then ``edit`` (a delta of this store's writer, checked by its policy):
        what a reviewer approves when they keep some of the changes waiting after ``base`` (none: a rejection).
        Stored like a rollback (a snapshot; the versions left out stay in history), except that the ids the versions
        left out drew are never drawn again. Raises :class:`~ace.playbook.DeltaError` when a kept
        delta needs one left out (an UPDATE of a bullet that a left-out version added) or the edit does not apply,
        and :class:`StaleVersionError` when the head is not ``expected_version``; nothing is written then."""
        chosen = sorted(set(versions))

        def make(conn: Connection, row: Any) -> _NewVersion:
            _check_version(name, base, row.head)
            if chosen and (chosen[0] <= base or chosen[-1] > row.head):
                raise DeltaError(f"the versions kept are after v{base} and at most v{row.head}, not {chosen}")
            logged = dict(vlog.deltas(conn, row.id, base, chosen[-1])) if chosen else {}
            state = self._state(conn, row.id, base)
            for v in chosen:
                text = logged[v]
                if text is None:
                    raise DeltaError(f"v{v} is an import, a rollback or a merge: its state is a snapshot, not a delta "
                                     "that can be kept apart from what came before it")  # fmt: skip
                try:
                    state = apply(state, Delta.model_validate_json(text), policy=REPLAY_POLICY).playbook
                except DeltaError as e:
                    raise DeltaError(f"v{v} cannot be kept without a version left out: {e}") from e
            head = self._state(conn, row.id, row.head)
            if state.next_id < head.next_id:  # ids the versions left out drew are never drawn again
                layout: list[tuple[str, list[Bullet], str | None]] = [
                    (s.name, [state[i] for i in s.ids], s.slug) for s in state.sections.values()
                ]
                state = Playbook.from_sections(layout, head.next_id)
            if edit is not None and edit.operations:
                self._ask_second_opinion(edit)
                state = apply(state, edit, policy=self.policy).playbook
            touched = diff(head, state).touched_ids()
            kept = ", ".join(f"v{v}" for v in chosen) or "none"
            return _NewVersion("rollback", None, state, [(i, "ROLLBACK") for i in touched], author,
                               message or f"v{base} with {kept}" + (" and an edit" if edit else ""),
                               snapshot=True)  # fmt: skip

        return self._append_version(namespace, name, expected_version, make)

    @traced_write  # an update_memory span per version written, when OpenTelemetry is on (ace.telemetry)
    def _append_version(
        self,
        namespace: str,
        name: str,
        expected_version: int | None,
        make: Callable[[Connection, Any], _NewVersion | None],
        key: str | None = None,
    ) -> VersionInfo:
        """The one write path: lock the head, build the next state from it, store that as head + 1 (``make``
        returning None: no new version, the rest of its transaction is kept: a merge that only records itself)."""
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            if key is not None:
                done = conn.execute(
                    select(t.versions.c.version).where(t.versions.c.playbook_id == row.id, t.versions.c.key == key)
                ).scalar_one_or_none()
                if done is not None:
                    return vlog.infos(conn, row, done, done)[0]
            if expected_version is not None and expected_version != row.head:
                raise StaleVersionError(name, expected_version, row.head)
            new = make(conn, row)
            if new is None:
                return vlog.infos(conn, row, row.head, row.head)[0]
            version = row.head + 1
            info = self._insert_version(conn, row.id, namespace, name, version, row.head, new)
            res = conn.execute(
                update(t.playbooks)
                .where(t.playbooks.c.id == row.id, t.playbooks.c.head == row.head)
                .values(head=version)
            )
            if res.rowcount != 1:  # pragma: no cover - the row lock makes this unreachable; kept as a last guard
                raise StaleVersionError(name, row.head, -1)
        if new.playbook is not None:
            self._cache.remember(row.id, version, new.playbook)
            if self.background_snapshots and not new.snapshot and version % self.snapshot_every == 0:
                self._background.later(
                    self._write_snapshot, row.id, version, new.playbook
                )  # after the commit: it is visible
        self._commits += 1
        if self.background_snapshots and self._sqlite and self._commits % CHECKPOINT_EVERY == 0:
            self._background.later(self._db.checkpoint)
        return info

    def _insert_version(
        self, conn: Connection, pid: int, namespace: str, name: str, version: int, parent: int | None, new: _NewVersion
    ) -> VersionInfo:
        check_optional(new.author, "author")
        now, texts = vlog.now(), {}
        if new.patch is not None and new.head is not None:
            digest, n_bullets = heads.write_patch(conn, pid, version, new.head, new.patch, new.playbook)
        else:
            assert new.playbook is not None
            texts = heads.materialize(conn, pid, version, new.playbook)[1]
            digest, n_bullets = new.playbook.digest(), len(new.playbook)
        conn.execute(
            insert(t.versions).values(
                playbook_id=pid,
                version=version,
                parent=parent,
                kind=new.kind,
                delta=new.delta.to_json() if new.delta is not None else None,
                digest=digest,
                n_bullets=n_bullets,
                created_at=now,
                author=new.author,
                message=new.message,
                key=new.key,
            )
        )
        pb = new.playbook
        if pb is not None and new.patch is None:  # an import or a rollback: its rows' texts make the snapshot
            conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=snapshot_of(pb, texts)))
        elif pb is not None and (
            new.snapshot
            or (
                not self.background_snapshots
                and version % self.snapshot_every == 0
                and snapshot_due(conn, pid, version, len(pb), self.snapshot_every)
            )
        ):
            conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=serialized(pb)))
        if new.touched:
            conn.execute(
                insert(t.bullet_events),
                [{"playbook_id": pid, "bullet_id": b, "version": version, "op": op} for b, op in new.touched],
            )
        return VersionInfo(
            namespace, name, version, parent, new.kind, digest, n_bullets, now, new.author, new.message, new.delta
        )

    # -- the materialized head ----------------------------------------------------------------------------
    def _load_head(self, conn: Connection, pid: int, version: int) -> Playbook | None:
        """The head read from its materialized rows when they hold ``version`` and match the digest recorded for
        it; None otherwise (then it is rebuilt from the log, and the rows on this store's next write)."""
        h = heads.head_row(conn, pid)
        if h is None or h.version != version or pid in self._damaged:
            return None
        with collector_paused():
            try:
                return heads.read(conn, pid, version, h)
            except CorruptRow as e:
                # A database whose reads see each statement's latest commit (PostgreSQL's READ COMMITTED) may have
                # shown rows of two versions if a commit landed between these statements: then the head row says so
                # now, and nothing is wrong with the rows (the version asked for is read from the log)
                now = conn.execute(select(t.heads.c.version).where(t.heads.c.playbook_id == pid)).scalar_one_or_none()
                if now == h.version:
                    log.warning(
                        "playbook #%s: the materialized head is not version %s as recorded (%s); read from the log",
                        pid,
                        version,
                        str(e)[:160],
                    )
                    self._damaged.add(pid)
                return None

    def tag(self, name: str, tag: str, version: int, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Point ``tag`` at ``version`` (moving it if it exists), e.g. the offline runner's ``best``."""
        tag = check_name(tag, "tag")
        if tag.isdigit():
            raise ConfigError(f"a tag is not a number (numbers are versions), got {tag!r}")
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            _check_version(name, version, row.head)
            conn.execute(delete(t.tags).where(t.tags.c.playbook_id == row.id, t.tags.c.tag == tag))
            conn.execute(insert(t.tags).values(playbook_id=row.id, tag=tag, version=version, created_at=vlog.now()))

    def tags(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, int]:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            rows = conn.execute(select(t.tags.c.tag, t.tags.c.version).where(t.tags.c.playbook_id == row.id)).all()
        return {r.tag: r.version for r in sorted(rows)}

    def resolve(self, name: str, ref: int | str | None, *, namespace: str = DEFAULT_NAMESPACE) -> int:
        """A version number from a number, a channel (``candidate``, ``serving``, one moved before), a tag name,
        or None (the head)."""
        if ref is None:
            return self.head(name, namespace=namespace).version
        if isinstance(ref, int) or ref.isdigit():
            return int(ref)
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            ref = _nfc(ref)
            if ref in ch.BUILTIN or ch.pointed(conn, row.id, ref) is not None:
                return ch.version_of(conn, row.id, int(row.head), ref, f"{namespace}/{name}")
        found = self.tags(name, namespace=namespace).get(_nfc(ref))
        if found is None:
            raise StoreError(f"playbook {namespace}/{name} has no version or tag {ref!r}")
        return found

    # -- reading ------------------------------------------------------------------------------------------
    def load(
        self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE, channel: str | None = None
    ) -> Playbook:
        """The playbook at ``version`` (default: the head), or where ``channel`` points."""
        return self.load_versioned(name, version, namespace=namespace, channel=channel)[1]

    @traced_read  # a search_memory span per read, when OpenTelemetry is on
    def load_versioned(
        self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE, channel: str | None = None
    ) -> tuple[int, Playbook]:
        """``(version, playbook)`` at ``version`` (default: the head), or where ``channel`` points
        (:mod:`ace.store.channels`: ``serving`` is what agents read), read in one transaction."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            v = self._wanted(conn, row, version, channel)
            return int(v), self._state(conn, row.id, v)

    def _wanted(self, conn: Connection, row: Any, version: int | None, channel: str | None) -> int:
        """The version a read asks for: ``version``, where ``channel`` points, or the head."""
        if version is not None and channel is not None:
            raise ConfigError("read a version or a channel, not both")
        if channel is not None:
            return ch.version_of(conn, row.id, int(row.head), ch.check_channel(channel), f"{row.namespace}/{row.name}")
        v = row.head if version is None else version
        _check_version(row.name, v, row.head)
        return int(v)

    # -- channels ---------------------------------------------------------------------------------------------
    def channels(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> builtins.list[ch.ChannelInfo]:
        """``candidate`` (the head, where learning commits), ``serving`` (what agents read) and every other channel
        moved, with the versions they point at."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            return ch.listed(conn, row.id, int(row.head))

    def channel_log(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, channel: str | None = None
    ) -> builtins.list[ch.ChannelMove]:
        """Every move of the playbook's channels (of ``channel`` only, when given), oldest first."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            return ch.log(conn, row.id, None if channel is None else ch.check_channel(channel))

    def turned_down(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 20
    ) -> builtins.list[tuple[str, str]]:
        """The lessons reviewers turned down lately, newest first: ``(text, reason)`` for each ADD and UPDATE of
        the versions a rejection (or an approval of part of a change) left out, at most ``limit``. What a curator
        is shown so that it does not propose them again. Empty for a playbook nobody reviewed."""
        moves = [m for m in self.channel_log(name, namespace=namespace, channel=ch.SERVING)
                 if m.evidence and m.evidence.get("decision") in ("rejected", "approved part")]  # fmt: skip
        found: dict[str, str] = {}
        for move in reversed(moves[-limit:]):
            ev = move.evidence or {}
            left = ev.get("reviewed") if ev.get("decision") == "rejected" else ev.get("rejected")
            for v in sorted({int(x) for x in (left or []) if isinstance(x, int)}, reverse=True):
                delta = self.version(name, v, namespace=namespace).delta
                for op in delta.operations if delta is not None else ():
                    text = getattr(op, "content", None) if op.type in ("ADD", "UPDATE") else None
                    if text and text not in found and len(found) < limit:
                        found[text] = (move.reason or "turned down")[:300]
        return builtins.list(found.items())

    def promotion(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> str:
        """The promotion policy: how the playbook's ``serving`` channel moves: ``immediate`` (it follows the head:
        what learning commits, agents read), ``review`` (it stays until a reviewer approves), ``gated`` (until a
        matched trial finds the candidate better: :mod:`ace.governance`) or ``gated+review`` (a trial passes the
        candidate, a reviewer serves it)."""
        with self._read() as conn:
            return ch.policy_of(conn, self._row(conn, namespace, name).id)

    def set_promotion(
        self, name: str, policy: str, *, namespace: str = DEFAULT_NAMESPACE, author: str | None = None
    ) -> str:
        """Set the promotion policy. To ``review`` (or ``gated``, ``gated+review``): a ``serving`` that follows the
        head is pinned where the head is now (logged), so what learning commits from here on waits for a reviewer
        (or a trial). To ``immediate``: ``serving``
        follows the head again (logged). Returns the policy."""
        if policy not in ch.POLICIES:
            raise ConfigError(f"a promotion policy is one of {', '.join(ch.POLICIES)}, not {policy!r}")
        author = check_optional(author, "author")
        ch.SCHEMA.ensure(self.engine)
        now = vlog.now()
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            before = ch.policy_of(conn, row.id)
            ch.set_policy(conn, row.id, policy, author=author, now=now)
            pinned = ch.pointed(conn, row.id, ch.SERVING)
            pins = policy in ch.PINNED
            to = int(row.head) if pins and pinned is None else None  # review and gated pin a following serving
            if (pins and pinned is None) or (policy == "immediate" and pinned is not None):
                ch.move(conn, row.id, ch.SERVING, to, author=author, reason=f"policy {before} -> {policy}",
                        evidence=None, now=now)  # fmt: skip
        return policy

    def move_channel(
        self,
        name: str,
        channel: str,
        version: int | None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        author: str | None = None,
        reason: str | None = None,
        evidence: dict[str, Any] | None = None,
        expected: int | None = None,
    ) -> ch.ChannelInfo:
        """Point ``channel`` at ``version``, logged with who, why and the evidence. ``version=None``: ``serving``
        follows the head again (refused under the ``review`` policy: there the reviewer moves it), another channel is
        removed. ``expected``: the version the channel must point at now (a stale mover gets
        :class:`~ace.store.channels.ChannelMoved`). ``candidate`` is the head and cannot be moved (commit or roll
        back instead). A move that changes nothing writes nothing."""
        if channel == ch.CANDIDATE:
            raise InvalidName("candidate is where learning commits (the head): commit or roll back to change it")
        channel = ch.check_channel(channel)
        author = check_optional(author, "author")
        ch.SCHEMA.ensure(self.engine)
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            head = int(row.head)
            if version is not None:
                _check_version(name, version, head)
            pinned = ch.pointed(conn, row.id, channel)
            now_at = (head if pinned is None else pinned) if channel == ch.SERVING else pinned
            if expected is not None and now_at != expected:
                raise ch.ChannelMoved(f"{namespace}/{name}", channel, expected, now_at)
            if channel == ch.SERVING and version is None and (policy := ch.policy_of(conn, row.id)) in ch.PINNED:
                how = "under review: serving moves when a reviewer approves"
                if policy.startswith("gated"):
                    how = f"under the {policy} policy: serving moves when a trial or a reviewer serves a version"
                raise ConfigError(f"{namespace}/{name} is {how}, not with the head (set the policy to immediate for "
                                  "that)")  # fmt: skip
            now = vlog.now()
            if pinned != version:  # a move that changes nothing is not logged
                ch.move(conn, row.id, channel, version, author=author, reason=reason, evidence=evidence, now=now)
        if pinned != version:
            promoted(name, namespace, channel, version)
        return ch.ChannelInfo(channel, head if version is None else version, version is None, now)

    @traced_read
    def load_held(
        self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE, channel: str | None = None
    ) -> tuple[int, Playbook] | None:
        """``(version, playbook)`` at ``version`` (default: the head) if this store holds that state in memory: one
        indexed read, nothing rebuilt. None when it does not, or when this is not a SQLite file or no pooled
        connection is free right now (then :meth:`load_versioned` reads it). For a caller that must never wait,
        such as a server's event loop: in WAL mode a SQLite read does not wait for a writer's lock, and no
        connection is waited for."""
        pool = self.engine.pool
        if not self._sqlite or not isinstance(pool, QueuePool) or pool.checkedout() >= pool.size() + pool._max_overflow:
            return None
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            v = self._wanted(conn, row, version, channel)
            held = self._cache.at(row.id, int(v))
        return (int(v), held) if held is not None else None

    def head_version(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> int:
        """The head's version number alone: one indexed read, nothing parsed."""
        with self._read() as conn:
            return int(self._row(conn, namespace, name).head)

    def head(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> VersionInfo:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            return vlog.infos(conn, row, row.head, row.head)[0]

    def history(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, since: int = 1, limit: int | None = None
    ) -> list[VersionInfo]:
        """Every version from ``since`` to the head, oldest first; with ``limit``, the first ``limit`` of them."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            last = row.head if limit is None else min(row.head, since + max(limit, 0) - 1)
            return vlog.infos(conn, row, since, last)

    def version(self, name: str, version: int, *, namespace: str = DEFAULT_NAMESPACE) -> VersionInfo:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            _check_version(name, version, row.head)
            return vlog.infos(conn, row, version, version)[0]

    def diff(self, name: str, v1: int, v2: int, *, namespace: str = DEFAULT_NAMESPACE) -> PlaybookDiff:
        """Bullets added, removed and changed going from version ``v1`` to ``v2``."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            _check_version(name, v1, row.head)
            _check_version(name, v2, row.head)
            lo, hi = min(v1, v2), max(v1, v2)
            if hi - lo > DIFF_REPLAY:  # far apart: two states, every bullet compared
                return diff(self._state(conn, row.id, v1), self._state(conn, row.id, v2))
            # near: the later one is the earlier plus the deltas between, which also say what to compare
            early = self._state(conn, row.id, lo)
            replayed = vlog.replay_between(conn, row.id, early, lo, hi)
            touched: set[str] | None
            if replayed is None:  # read it as any version is (raises if corrupt)
                late, touched = self._state(conn, row.id, hi), None
            else:
                late, touched = replayed
            return diff(early, late, touched=touched) if v1 <= v2 else diff(late, early, touched=touched)

    def blame(self, name: str, bullet_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> list[BlameEntry]:
        """Every version that touched ``bullet_id``, oldest first, with its provenance."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            rows = conn.execute(
                select(
                    t.bullet_events.c.version,
                    t.bullet_events.c.op,
                    t.versions.c.created_at,
                    t.versions.c.author,
                    t.versions.c.message,
                    t.versions.c.delta,
                )
                .join(
                    t.versions,
                    (t.versions.c.playbook_id == t.bullet_events.c.playbook_id)
                    & (t.versions.c.version == t.bullet_events.c.version),
                )
                .where(t.bullet_events.c.playbook_id == row.id, t.bullet_events.c.bullet_id == bullet_id)
                .order_by(t.bullet_events.c.version, t.bullet_events.c.id)
            ).all()
        return [
            BlameEntry(
                r.version,
                r.op,
                vlog.aware(r.created_at),
                r.author,
                r.message,
                vlog.op_source(Delta.model_validate_json(r.delta), bullet_id) if r.delta else None,
            )
            for r in rows
        ]

    def list(self, namespace: str | None = None) -> list[PlaybookInfo]:
        q = select(t.playbooks).order_by(t.playbooks.c.namespace, t.playbooks.c.name)
        if namespace is not None:
            q = q.where(t.playbooks.c.namespace == _nfc(namespace))
        with self._read() as conn:
            return [PlaybookInfo(r.namespace, r.name, r.head, vlog.aware(r.created_at)) for r in conn.execute(q)]

    def verify(self, name: str, *, namespace: str = DEFAULT_NAMESPACE, since: int = 1) -> int:
        """Rebuild every version from the log and check it against its recorded digest; returns how many were
        checked. ``since``: start at the nearest snapshot at or below that version (checked against its own
        digest) instead of version 1, so that a verify covers only what an earlier one did not. The materialized
        head is compared with the head rebuilt from the log, and rewritten from it if it differs.

        Raises :class:`StoreIntegrityError` naming the first version that does not match.
        """
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            snaps = set(
                conn.execute(select(t.snapshots.c.version).where(t.snapshots.c.playbook_id == row.id)).scalars()
            )
            start = max((v for v in snaps if v <= max(since, 1)), default=1)
            rows = conn.execute(
                select(t.versions.c.version, t.versions.c.digest, t.versions.c.delta).where(
                    t.versions.c.playbook_id == row.id, t.versions.c.version >= start
                )
            ).all()
            recorded = {r.version: r.digest for r in rows}
            deltas = {r.version: r.delta for r in rows}
            state: Playbook | None = None
            for v in range(start, row.head + 1):
                try:
                    state = vlog.verified(conn, row.id, name, v, recorded, deltas, snaps, state, first=v == start)
                except CorruptRow as e:  # a row that no longer decodes or applies
                    raise StoreIntegrityError(
                        f"playbook {name!r}: version {v} no longer rebuilds ({e.kind}: {str(e)[:120]})"
                    ) from None
            self._damaged.discard(row.id)
            held = self._load_head(conn, row.id, row.head)
        if held is None and state is not None:  # not materialized yet, or not what the log says: rewrite it
            log.warning("playbook %s/%s: its materialized head is rewritten from the verified log", namespace, name)
            with self._write() as conn:
                locked = self._row(conn, namespace, name, lock=True)
                if locked.head == row.head:
                    heads.materialize(conn, row.id, row.head, state)
            self._damaged.discard(row.id)
        return int(row.head) - start + 1

    # -- branches -------------------------------------------------------------------------------------------
    def branch(
        self,
        name: str,
        branch: str,
        *,
        from_version: int | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        author: str | None = None,
        message: str | None = None,
    ) -> br.BranchInfo:
        """Make ``branch``: a new playbook in the same namespace whose version 1 is ``name`` at ``from_version``
        (default: the head), its fork point recorded (:mod:`ace.store.branches`). It learns apart by its name, as
        any playbook does; :meth:`merge` brings what it learned back. Raises :class:`PlaybookExists` when a playbook
        has that name, :class:`~ace.store.branches.BranchRefused` for the playbook's own name."""
        name, branch = check_name(name, "playbook name"), check_name(branch, "branch name")
        namespace, author = check_name(namespace, "namespace"), check_optional(author, "author")
        if branch == name:
            raise br.BranchRefused(f"a branch needs a name of its own: {branch!r} is the playbook it branches from")
        br.SCHEMA.ensure(self.engine)
        try:
            with self._write() as conn:
                row = self._row(conn, namespace, name, lock=True)
                v = int(row.head) if from_version is None else from_version
                _check_version(name, v, row.head)
                same = (t.playbooks.c.namespace == namespace) & (t.playbooks.c.name == branch)
                if conn.execute(select(t.playbooks.c.id).where(same)).first() is not None:
                    raise PlaybookExists(namespace, branch)
                pb, now = self._state(conn, row.id, v), vlog.now()
                pid: int = conn.execute(
                    insert(t.playbooks).values(namespace=namespace, name=branch, head=1, created_at=now)
                ).inserted_primary_key[0]  # type: ignore[index]
                why = message or f"branch of {name}@v{v}"
                new = _NewVersion("import", None, pb, [(b.id, "IMPORT") for b in pb], author, why, snapshot=True)
                self._insert_version(conn, pid, namespace, branch, 1, None, new)
                br.record_fork(conn, pid, row.id, v, author=author, now=now)
        except IntegrityError:
            raise PlaybookExists(namespace, branch) from None
        self._cache.remember(pid, 1, pb)
        return br.BranchInfo(namespace, branch, name, v, 1, now, author)

    def branches(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> builtins.list[br.BranchInfo]:
        """The branches made from ``name``, each with its fork point and how far it was merged back."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            return br.listed(conn, row.namespace, row.id, row.name)

    def merge(
        self,
        branch: str,
        *,
        into: str,
        namespace: str = DEFAULT_NAMESPACE,
        author: str | None = None,
        strategy: str = "report",
        similar: Callable[[builtins.list[str], builtins.list[str]], Any] | None = None,
        threshold: float = 0.9,
    ) -> br.MergeResult:
        """Merge what ``branch`` committed since its last merge (or its fork) into ``into``, the playbook it was
        branched from, three-way (:mod:`ace.playbook.merge`), as one new version whose message and provenance name
        ``branch@vN``; conflicts are resolved by ``strategy`` (``report``: left out and listed, taken up again by the
        next merge; ``ours``: the target's side; ``theirs``: the branch's). ``similar``: cosines of two lists of
        texts (an embedding index's) to find duplicate ADDs by, at ``threshold``; without it, the same words. It is
        called under the write lock, with the target's texts: pass one that holds their vectors already. The merge
        is recorded in the same transaction; merging again with nothing new writes nothing."""
        branch, into = check_name(branch, "branch name"), check_name(into, "playbook name")
        namespace, author = check_name(namespace, "namespace"), check_optional(author, "author")
        if strategy not in STRATEGIES:
            raise ConfigError(f"a merge strategy is one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if branch == into:
            raise br.BranchRefused(f"{branch!r} cannot be merged into itself; nothing was written")
        done: builtins.list[br.MergeResult] = []

        def make(conn: Connection, row: Any) -> _NewVersion | None:
            job, head = br.prepare(conn, namespace, branch, row), int(row.head)
            if job.nothing_new:
                done.append(br.unchanged(namespace, into, strategy, job, head))
                return None
            target = self._state(conn, row.id, head)
            ops = br.branch_ops(conn, job, lambda v: self._state(conn, job.branch_id, v))
            base = self._state(conn, job.branch_id, job.through)
            source = Source(role="merge", note=f"merge of {branch}@v{job.head}")
            plan = plan_merge(target, base, ops, id_map=job.ids, strategy=strategy, similar=similar,
                              threshold=threshold, policy=self.policy, source=source)  # fmt: skip
            applied = apply(target, plan.delta, policy=self.policy) if plan.delta.operations else None
            version = head + 1 if applied is not None and applied.playbook.digest() != target.digest() else None
            result = br.result(namespace, into, strategy, job, plan, version, head)
            done.append(result)
            if version is not None or job.head != job.through or plan.pending != job.pending or plan.id_map != job.ids:
                br.record_merge(conn, job, row.id, plan, version=version, strategy=strategy, author=author,
                                now=vlog.now())  # fmt: skip
            if applied is None or version is None:
                return None
            held = None if row.id in self._damaged else heads.current(conn, row)
            if held is not None and not heads.agrees(held, target):
                held = None  # the rows do not hold the head this store read: written whole from the new state
            touched = applied.delta.ids_touched()
            return _NewVersion("delta", applied.delta, applied.playbook, touched, author, result.message,
                               patch=applied.patch, head=held)  # fmt: skip

        self._append_version(namespace, into, None, make)
        return done[-1]

    # -- rebuilding ---------------------------------------------------------------------------------------
    def _state(self, conn: Connection, pid: int, version: int) -> Playbook:
        """Version ``version``: the cached state, caught up by the deltas it missed when it is a few behind, the
        materialized head's rows, or the nearest snapshot plus the deltas after it."""
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == version:  # the common commit path: the cache is the head
            return cached[1]
        if (older := self._cache.at(pid, version)) is not None:  # an older version read before (a pinned serving)
            return older
        near = cached is not None and cached[0] < version <= cached[0] + vlog.CATCH_UP
        state = None if near else self._load_head(conn, pid, version)
        if state is None:
            state = self._rebuild(conn, pid, version)
        if cached is None or version >= cached[0]:
            self._cache.remember(pid, version, state)
        else:
            self._cache.remember_older(pid, version, state)
        return state

    def _rebuild(self, conn: Connection, pid: int, version: int) -> Playbook:
        """Version ``version`` from the log: the cached state or the nearest snapshot, plus the deltas after it;
        checked against the digest recorded for it (raises :class:`StoreIntegrityError`)."""
        keep = functools.partial(self._cache.waypoint, pid)
        return vlog.rebuild(conn, pid, version, self._cache.nearest(pid, version), keep)


def import_problems(playbook: Playbook, rules: QualityRules | None) -> builtins.list[tuple[str, str]]:
    """What keeps ``playbook`` from being imported under ``rules`` (None: nothing): ``(where, why)`` for every
    section name and bullet content that fails the checks a delta's would (:func:`~ace.playbook.quality.
    section_problem`, :func:`~ace.playbook.quality.content_problem`), a section name also checked for an injection
    (:func:`~ace.playbook.quality.injection`: a section's name is printed into every prompt as a bullet is).
    ``where`` is ``section '<name>'`` or ``bullet <id>``.

    The trust checks apply in full: an injected instruction or a hidden character in content or a section name, a
    section named after an operation. The length rules (``min_words``, ``min_section_letters``) do not: they keep a
    small curator's fragments out of a delta, but a playbook written by hand states terse rules ("Check units.",
    "rule 1"): none of the released or starter playbooks trips them, but the fixtures of 26 of the suite's tests do."""
    if rules is None:
        return []
    rules = replace(rules, min_words=0, min_section_letters=0)
    problems: builtins.list[tuple[str, str]] = []
    for section in playbook.sections:
        why = section_problem(section, rules)
        if why is None and rules.reject_injection and (found := injection(section)):
            why = f"section name reads as a prompt injection: {found}"
        if why is not None:
            problems.append((f"section {section[:60]!r}", why))
    for b in playbook:
        if (why := content_problem(b.content, rules)) is not None:
            problems.append((f"bullet {b.id}", why))
    return problems


def _nfc(value: str) -> str:
    """A name or namespace as the store keys it: NFC (what :func:`ace.names.check_name` stores); anything that is
    not text is left for the query to find nothing."""
    if isinstance(value, str) and not value.isascii():
        return unicodedata.normalize("NFC", value)
    return value


def _check_version(name: str, version: int, head: int) -> None:
    if not 1 <= version <= head:
        raise VersionNotFound(name, version, head)


__all__ = [
    "CHECKPOINT_EVERY",
    "DEFAULT_NAMESPACE",
    "DIFF_REPLAY",
    "WAL_AUTOCHECKPOINT",
    "BlameEntry",
    "PlaybookInfo",
    "PlaybookStore",
    "VersionInfo",
    "default_url",
    "import_problems",
    "make_engine",
]
