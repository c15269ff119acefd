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
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, delete, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import QueuePool, StaticPool

from ace.errors import ConfigError
from ace.names import check_name, check_optional
from ace.playbook.bulk import collector_paused
from ace.playbook.delta import REPLAY_POLICY, ApplyPolicy, Delta, HeadView, MergeOp, Patch, apply, apply_to_head
from ace.playbook.diff import PlaybookDiff, diff
from ace.playbook.errors import DeltaError
from ace.playbook.model import (
    ORDER_SEP,
    Bullet,
    Playbook,
    Section,
    Source,
    digest_of,
    order_hash_of,
    without_id,
)
from ace.playbook.quality import QualityRules, content_problem, injection, section_problem
from ace.store import schema as t
from ace.store.errors import (
    ImportRefused,
    PlaybookExists,
    PlaybookNotFound,
    StaleVersionError,
    StoreError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.store.schema_version import prepare

DEFAULT_NAMESPACE = "default"
WAL_AUTOCHECKPOINT = 10_000  # pages (SQLite's default is 1,000)
DIFF_REPLAY = 1_000  # versions apart up to which diff replays the deltas between instead of building both states
CHECKPOINT_EVERY = 100  # commits of one store between its background WAL checkpoints (SQLite)

log = logging.getLogger("ace.store")


# Stores with a background thread. Before this process forks, each finishes what its thread is doing: a SQLite
# connection that is inside a transaction when the process forks leaves the child believing a lock is held that
# nobody in it will ever release (its commits then wait out the busy timeout and fail).
_WITH_BACKGROUND: weakref.WeakSet[PlaybookStore] = weakref.WeakSet()


def _finish_background_work() -> None:
    for store in builtins.list(_WITH_BACKGROUND):
        try:
            store.flush()
        except Exception as e:  # a snapshot or checkpoint that failed is only a lost speed-up
            log.debug("background work before fork: %s", e)


os.register_at_fork(before=_finish_background_work)


def default_url() -> str:
    """``$ACE_DB`` if set, else SQLite at ``$XDG_DATA_HOME/ace/ace.db`` (``~/.local/share/ace/ace.db``)."""
    if url := os.environ.get("ACE_DB"):
        return url
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'ace' / 'ace.db'}"


def make_engine(url: str, *, busy_timeout_s: float = 60.0, create_dirs: bool = False) -> Engine:
    """An engine set up for the store: SQLite in WAL mode with a busy timeout and explicit BEGINs. A SQLite file's
    directory must exist (a mistyped path is an error, not a new directory tree) unless ``create_dirs``."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        parent = Path(path).expanduser().parent
        if create_dirs:
            parent.mkdir(parents=True, exist_ok=True)
        elif not parent.is_dir():
            raise StoreError(f"{url}: the directory {parent} does not exist; create it first or fix the path")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
    if not path or path == ":memory:":
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves (pysqlite's own is deferred and late)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # the checkpoint (copying the WAL back into the database, with an fsync) runs in whichever commit crosses
        # this many pages; a store that writes runs them earlier from its background thread (PlaybookStore), so this
        # is the backstop for processes that never do (one CLI call), at 40 MB of WAL instead of SQLite's 4 MB
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two of them cannot both read the same head.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ace_write") else "BEGIN")

    return engine


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
    head: _Head | None = None


@dataclass(slots=True)
class _Head:
    """The materialized head's own row and its sections (name -> slug, in order), without the bullets."""

    version: int
    next_id: int
    n_bullets: int
    content_sum: int
    order_hash: bytes
    sections: dict[str, str]


class _NoSnapshot(Exception):
    """A version the log cannot rebuild: it has no delta and no snapshot, or its row is missing."""


class _Unchanged(Exception):
    """A write that would not change the head (a rollback to the state it has): ``head`` is returned instead."""

    def __init__(self, head: VersionInfo) -> None:
        super().__init__("unchanged")
        self.head = head


class _HeadDamaged(Exception):
    """A row of the materialized head does not hold what its digest says (edited by hand): rebuild it."""


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
        source = None if self.source is None else {k: v for k, v in asdict(self.source).items() if v is not None}
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
        self._snapshotter: ThreadPoolExecutor | None = None
        self._snapshotter_pid = 0  # a forked child does not inherit the thread: it starts its own
        self._engine_pid = os.getpid()  # and it opens its own connections (_own_connections)
        self._pending: list[Future[None]] = []
        self._snapshot_lock = threading.Lock()
        self.url = url or default_url()
        # the default location (the data directory) is made on first use; a path given by hand must exist
        self.engine = engine or make_engine(self.url, create_dirs=url is None or url == default_url())
        # periodic snapshots are written after the commit, by one background thread, so that no commit pays for
        # serializing the whole playbook; imports and rollbacks (no delta to replay) snapshot in their transaction.
        # An in-memory SQLite database is one shared connection: no second thread may write on it.
        self.background_snapshots = background_snapshots and not isinstance(self.engine.pool, StaticPool)
        self.snapshot_every = snapshot_every
        self.policy = policy or ApplyPolicy()
        self._cache_enabled = cache
        self._cache: dict[int, tuple[int, Playbook]] = {}  # playbook id -> (version, state)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._commits = 0
        self._damaged: set[int] = set()  # playbooks whose materialized head a read found wrong: rebuilt on write
        prepare(self.engine, self.url)

    def close(self) -> None:
        self.flush()
        if self._snapshotter is not None and self._snapshotter_pid == os.getpid():
            self._snapshotter.shutdown(wait=True)
            self._snapshotter = None
        self.engine.dispose()

    def flush(self) -> None:
        """Wait until the periodic snapshots scheduled so far are written (or given up: a snapshot only speeds
        up loading; every version rebuilds from an earlier one and the deltas after it)."""
        with self._snapshot_lock:
            if self._snapshotter_pid != os.getpid():  # forked: the parent's thread and futures are not ours
                self._snapshotter, self._pending = None, []
            pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def _later(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job`` on the store's background thread (a snapshot, a WAL checkpoint): after the commit."""
        _WITH_BACKGROUND.add(self)
        with self._snapshot_lock:
            if self._snapshotter is None or self._snapshotter_pid != os.getpid():
                self._snapshotter = ThreadPoolExecutor(1, thread_name_prefix="ace-snapshot")
                self._snapshotter_pid, self._pending = os.getpid(), []
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._snapshotter.submit(job, *args))

    def _checkpoint(self) -> None:
        """A passive WAL checkpoint (SQLite): it copies what no reader needs back into the database without
        blocking readers or writers, so that no commit has to."""
        try:
            self._own_connections()
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            finally:
                raw.close()
        except Exception as e:  # a busy or closed database: the next one, or SQLite's own, will do it
            log.debug("WAL checkpoint skipped: %s", e)

    def _write_snapshot(self, pid: int, version: int, pb: Playbook) -> None:
        try:
            with self._read() as conn:
                if not self._snapshot_due(conn, pid, version, len(pb)):
                    return
            state = _serialized(pb, yielding=True)
            with self._write() as conn:
                conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=state))
        except IntegrityError:  # written already (another process), or the playbook is gone
            pass
        except Exception as e:  # the database is away: this snapshot is skipped, nothing depends on it
            log.warning("snapshot of playbook #%s v%s not written: %s", pid, version, e)

    def __enter__(self) -> PlaybookStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------------------
    def transaction(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        """A transaction on the store's database for other tables that live in it (the memory tiers); a write
        transaction takes the same writer lock as a commit."""
        return self._write() if write else self._read()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._own_connections()
        with self.engine.connect() as conn:
            conn.execution_options(ace_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._own_connections()
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _own_connections(self) -> None:
        """In a process forked from the one that opened the store, drop the pooled connections it inherited
        (SQLite's and the drivers' connections must not cross a fork: a lock the parent held would be the child's
        too, or nobody's) without closing them under the parent; the child opens its own."""
        if self._engine_pid != os.getpid():
            self.engine.dispose(close=False)
            self._engine_pid = os.getpid()

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
        try:
            with self._write() as conn:
                pid: int = conn.execute(
                    insert(t.playbooks).values(namespace=namespace, name=name, head=1, created_at=_now())
                ).inserted_primary_key[0]  # type: ignore[index]
                info = self._insert_version(conn, pid, namespace, name, 1, None, new)
        except IntegrityError:
            raise PlaybookExists(namespace, name) from None
        self._remember(pid, 1, pb)
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
            head = None if row.id in self._damaged else self._head(conn, row)
            cached = self._cache.get(row.id)
            warm = cached is not None and cached[0] == row.head
            if head is not None and warm and cached is not None and not _agrees(head, cached[1]):
                log.warning(
                    "playbook %s/%s: its materialized head is rebuilt (it disagrees with the log)", namespace, name
                )
                head = None
            if head is not None and not warm:
                view = HeadView(head.sections, head.next_id, head.n_bullets, lambda ids: self._fetch(conn, row.id, ids))
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
                except _HeadDamaged as e:
                    log.warning("playbook %s/%s: %s; its materialized head is rebuilt from the log", namespace, name, e)
                    head = None
            if head is None:  # not materialized (a database from before revision 0005) or damaged: from the log
                base = self._rebuild(conn, row.id, row.head)
                head = self._materialize(conn, row.id, row.head, base)[0]
                self._damaged.discard(row.id)
                self._remember(row.id, row.head, base)
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
                raise _Unchanged(self._infos(conn, row, row.head, row.head)[0])
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

    def _append_version(
        self,
        namespace: str,
        name: str,
        expected_version: int | None,
        make: Callable[[Connection, Any], _NewVersion],
        key: str | None = None,
    ) -> VersionInfo:
        """The one write path: lock the head, build the next state from it, store that as head + 1."""
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            if key is not None:
                done = conn.execute(
                    select(t.versions.c.version).where(t.versions.c.playbook_id == row.id, t.versions.c.key == key)
                ).scalar_one_or_none()
                if done is not None:
                    return self._infos(conn, row, done, done)[0]
            if expected_version is not None and expected_version != row.head:
                raise StaleVersionError(name, expected_version, row.head)
            new = make(conn, row)
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
            self._remember(row.id, version, new.playbook)
            if self.background_snapshots and not new.snapshot and version % self.snapshot_every == 0:
                self._later(self._write_snapshot, row.id, version, new.playbook)  # after the commit: it is visible
        self._commits += 1
        if self.background_snapshots and self._sqlite and self._commits % CHECKPOINT_EVERY == 0:
            self._later(self._checkpoint)
        return info

    def _insert_version(
        self, conn: Connection, pid: int, namespace: str, name: str, version: int, parent: int | None, new: _NewVersion
    ) -> VersionInfo:
        check_optional(new.author, "author")
        now, texts = _now(), {}
        if new.patch is not None and new.head is not None:
            digest, n_bullets = self._write_patch(conn, pid, version, new.head, new.patch, new.playbook)
        else:
            assert new.playbook is not None
            texts = self._materialize(conn, pid, version, new.playbook)[1]
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
            conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=_snapshot_of(pb, texts)))
        elif pb is not None and (
            new.snapshot
            or (
                not self.background_snapshots
                and version % self.snapshot_every == 0
                and self._snapshot_due(conn, pid, version, len(pb))
            )
        ):
            conn.execute(insert(t.snapshots).values(playbook_id=pid, version=version, state=_serialized(pb)))
        if new.touched:
            conn.execute(
                insert(t.bullet_events),
                [{"playbook_id": pid, "bullet_id": b, "version": version, "op": op} for b, op in new.touched],
            )
        return VersionInfo(
            namespace, name, version, parent, new.kind, digest, n_bullets, now, new.author, new.message, new.delta
        )

    # -- the materialized head ----------------------------------------------------------------------------
    def _head(self, conn: Connection, row: Any) -> _Head | None:
        """The materialized head of playbook ``row`` if it holds the head version, else None (rebuild it)."""
        h = conn.execute(select(t.heads).where(t.heads.c.playbook_id == row.id)).one_or_none()
        if h is None or h.version != row.head:
            return None
        secs = conn.execute(
            select(t.head_sections.c.name, t.head_sections.c.slug)
            .where(t.head_sections.c.playbook_id == row.id)
            .order_by(t.head_sections.c.position)
        ).all()
        try:
            return _Head(
                h.version, h.next_id, h.n_bullets, int(h.content_sum, 16), bytes.fromhex(h.order_hash), dict(secs)
            )
        except ValueError:  # a digest part edited into something that is not hex
            return None

    def _fetch(self, conn: Connection, pid: int, ids: Any) -> dict[str, Bullet]:
        """The head's bullets among ``ids``, each checked against its row's digest (raises :class:`_HeadDamaged`)."""
        found: dict[str, Bullet] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(
                    t.head_bullets.c.bullet_id, t.head_bullets.c.section, t.head_bullets.c.data, t.head_bullets.c.digest
                ).where(t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id.in_(ids[start : start + 500]))
            ).all()
            for r in rows:
                found[r.bullet_id] = _bullet_from_row(r.bullet_id, r.section, r.data, r.digest)
        return found

    def _materialize(self, conn: Connection, pid: int, version: int, pb: Playbook) -> tuple[_Head, dict[str, str]]:
        """Write ``pb`` as the materialized head of playbook ``pid`` at ``version`` (all rows replaced): O(n).
        Returns the head and each bullet's row text (its canonical JSON)."""
        for table in (t.head_bullets, t.head_order, t.head_sections, t.heads):
            conn.execute(delete(table).where(table.c.playbook_id == pid))
        sections = list(pb.sections.values())
        if sections:
            conn.execute(
                insert(t.head_sections),
                [{"playbook_id": pid, "position": k, "name": s.name, "slug": s.slug} for k, s in enumerate(sections)],
            )
        chunks = [
            {"playbook_id": pid, "position": k, "chunk": c, "ids": ORDER_SEP.join(s.ids[start : start + t.HEAD_CHUNK])}
            for k, s in enumerate(sections)
            for c, start in enumerate(range(0, len(s), t.HEAD_CHUNK))
        ]
        if chunks:
            conn.execute(insert(t.head_order), chunks)
        rows = [_row_of(pid, b) for b in pb]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(t.head_bullets), rows[start : start + 5000])
        head = _Head(
            version, pb.next_id, len(pb), pb.content_sum(), pb.order_hash(), {s.name: s.slug for s in sections}
        )
        conn.execute(insert(t.heads).values(playbook_id=pid, **_head_values(head)))
        return head, {r["bullet_id"]: r["data"] for r in rows}

    def _write_patch(
        self, conn: Connection, pid: int, version: int, head: _Head, patch: Patch, pb: Playbook | None
    ) -> tuple[str, int]:
        """Bring the materialized head from ``head`` to ``version`` by ``patch``: the rows the delta changed, the
        orders of the sections it reordered, the head's row. Returns the new version's digest and size."""
        added: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        gone: list[str] = []
        for i, old in patch.before.items():
            cur = patch.after.get(i)
            if cur is None:
                if old is not None:
                    gone.append(i)
            else:
                (added if old is None else changed).append(_row_of(pid, cur))
        if gone:
            for start in range(0, len(gone), 500):
                conn.execute(
                    delete(t.head_bullets).where(
                        t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id.in_(gone[start : start + 500])
                    )
                )
        if added:
            conn.execute(insert(t.head_bullets), added)
        if changed:
            conn.execute(
                update(t.head_bullets)
                .where(t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id == bindparam("b_id"))
                .values(section=bindparam("b_section"), data=bindparam("b_data"), digest=bindparam("b_digest")),
                [
                    {"b_id": r["bullet_id"], "b_section": r["section"], "b_data": r["data"], "b_digest": r["digest"]}
                    for r in changed
                ],
            )
        order_hash, sections = head.order_hash, head.sections
        if patch.order_changed:
            order_hash, sections = self._reorder(conn, pid, head, patch)
        content_sum = patch.content_sum(head.content_sum)
        new = _Head(version, patch.next_id, patch.n_bullets, content_sum, order_hash, sections)
        conn.execute(update(t.heads).where(t.heads.c.playbook_id == pid).values(**_head_values(new)))
        digest = digest_of(new.next_id, order_hash, content_sum)
        if pb is not None:  # the digest's parts, so that the held playbook need not rehash its order
            pb.set_derived("order_hash", order_hash, keep=True)
            pb.set_derived("content_sum", content_sum, keep=True)
        return digest, new.n_bullets

    def _reorder(self, conn: Connection, pid: int, head: _Head, patch: Patch) -> tuple[bytes, dict[str, str]]:
        """Apply the patch's order events to the sections' stored orders, rewriting only the chunks they change;
        returns the new order hash (which hashes every section's order: O(n) bytes read and hashed, in C) and the
        sections (name -> slug) with the ones the patch created."""
        positions = {name: k for k, name in enumerate(head.sections)}
        chunks: dict[int, list[_Chunk]] = {k: [] for k in positions.values()}
        for r in conn.execute(
            select(t.head_order.c.position, t.head_order.c.chunk, t.head_order.c.ids)
            .where(t.head_order.c.playbook_id == pid)
            .order_by(t.head_order.c.position, t.head_order.c.chunk)
        ):
            chunks.setdefault(r.position, []).append(_Chunk(r.chunk, r.ids, stored=True))
        sections = dict(head.sections)
        if patch.new_sections:
            conn.execute(
                insert(t.head_sections),
                [
                    {"playbook_id": pid, "position": len(sections) + k, "name": name, "slug": slug}
                    for k, (name, slug) in enumerate(patch.new_sections)
                ],
            )
            for name, slug in patch.new_sections:
                positions[name] = len(sections)
                sections[name] = slug
                chunks[positions[name]] = []
        for kind, sec, bullet_id in patch.order:
            if sec not in positions:
                raise _HeadDamaged(f"section {sec!r} is missing from the stored sections")
            held = chunks[positions[sec]]
            if kind == "+":
                if held and held[-1].ids and held[-1].ids.count(ORDER_SEP) + 1 < t.HEAD_CHUNK:
                    held[-1].ids, held[-1].dirty = f"{held[-1].ids}{ORDER_SEP}{bullet_id}", True
                elif held and not held[-1].ids:
                    held[-1].ids, held[-1].dirty = bullet_id, True
                else:
                    held.append(_Chunk(held[-1].number + 1 if held else 0, bullet_id, dirty=True))
                continue
            for c in held:
                if (rest := without_id(c.ids, bullet_id)) is not None:
                    c.ids, c.dirty = rest, True
                    break
            else:
                raise _HeadDamaged(f"bullet {bullet_id!r} is missing from its section's stored order")
        for position, held in chunks.items():
            for c in held:
                if not c.dirty:
                    continue
                key = (t.head_order.c.playbook_id == pid) & (t.head_order.c.position == position)
                key &= t.head_order.c.chunk == c.number
                if not c.ids and c is not held[-1]:  # an emptied chunk goes (the last one stays, to append to)
                    if c.stored:
                        conn.execute(delete(t.head_order).where(key))
                elif c.stored:
                    conn.execute(update(t.head_order).where(key).values(ids=c.ids))
                else:
                    conn.execute(
                        insert(t.head_order).values(playbook_id=pid, position=position, chunk=c.number, ids=c.ids)
                    )
        order_hash = order_hash_of(
            (name, slug, ORDER_SEP.join(c.ids for c in chunks[positions[name]] if c.ids))
            for name, slug in sections.items()
        )
        return order_hash, sections

    def _load_head(self, conn: Connection, pid: int, version: int) -> Playbook | None:
        """The head read from its materialized rows when they hold ``version`` and match the digest recorded for
        it; None otherwise (then it is rebuilt from the log, and the rows on this store's next write)."""
        h = conn.execute(select(t.heads).where(t.heads.c.playbook_id == pid)).one_or_none()
        if h is None or h.version != version or pid in self._damaged:
            return None
        with collector_paused():
            return self._read_head(conn, pid, version, h)

    def _read_head(self, conn: Connection, pid: int, version: int, h: Any) -> Playbook | None:
        try:
            secs = conn.execute(
                select(t.head_sections.c.position, t.head_sections.c.name, t.head_sections.c.slug)
                .where(t.head_sections.c.playbook_id == pid)
                .order_by(t.head_sections.c.position)
            ).all()
            orders: dict[int, list[str]] = {}
            for position, chunk in conn.execute(
                select(t.head_order.c.position, t.head_order.c.ids)
                .where(t.head_order.c.playbook_id == pid)
                .order_by(t.head_order.c.position, t.head_order.c.chunk)
            ):
                if chunk:
                    orders.setdefault(position, []).append(chunk)
            rows = conn.execute(
                select(
                    t.head_bullets.c.bullet_id, t.head_bullets.c.section, t.head_bullets.c.data, t.head_bullets.c.digest
                ).where(t.head_bullets.c.playbook_id == pid)
            ).all()
            data = json.loads("[" + ",".join(r.data for r in rows) + "]") if rows else []
            if len(data) != len(rows):
                raise ValueError("a row's data is not one JSON object")
            by_id: dict[str, Bullet] = {}
            for r, d in zip(rows, data, strict=True):
                if not isinstance(d, dict) or d.get("id") != r.bullet_id or d.get("section") != r.section:
                    raise ValueError(f"the row of {r.bullet_id!r} holds another bullet")
                # each row's digest is the hash of its text; their sum must make the digest recorded for the version
                # (checked below), so an edited row is found without serializing every bullet again
                b = by_id[r.bullet_id] = Bullet.from_canonical(d, r.data)
                if b.digest().hex() != r.digest:  # what a commit that touches it would check
                    raise ValueError(f"the row of {r.bullet_id!r} does not match its digest")
            sections: dict[str, Section] = {}
            placed = 0
            for s in secs:
                ids = ORDER_SEP.join(orders.pop(s.position, [])).split(ORDER_SEP) if s.position in orders else []
                if any(by_id.get(i) is None or by_id[i].section != s.name for i in ids):
                    raise ValueError(f"section {s.name!r} orders a bullet it does not hold")
                placed += len(ids)
                sections[s.name] = Section(s.name, s.slug, ids)
            if placed != len(by_id) or orders:
                raise ValueError("a bullet is in no section's order")
            pb = Playbook(sections, by_id, h.next_id)
            recorded = conn.execute(
                select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == version)
            ).scalar_one_or_none()
            if pb.digest() != recorded:
                raise ValueError(f"its rows hash to {pb.digest()[:12]}, but {str(recorded)[:12]} was recorded")
        except (ValueError, TypeError, KeyError) as e:
            # A database whose reads see each statement's latest commit (PostgreSQL's READ COMMITTED) may have shown
            # rows of two versions if a commit landed between these statements: then the head row says so now, and
            # nothing is wrong with the rows (the version asked for is read from the log)
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
        return pb

    def _snapshot_due(self, conn: Connection, pid: int, version: int, n_bullets: int) -> bool:
        """Whether a periodic snapshot is due at ``version`` (a multiple of ``snapshot_every``): every
        ``snapshot_every`` versions, or every n/10 for a playbook of n bullets: a snapshot's O(n) is shared by as
        many commits, and rebuilding an old version replays at most n/10 deltas after one, which costs about what
        reading the snapshot does (one small delta parses and applies in ~6 bullets' time)."""
        span = max(self.snapshot_every, n_bullets // 10)
        if span == self.snapshot_every:
            return True
        last = conn.execute(
            select(func.max(t.snapshots.c.version)).where(
                t.snapshots.c.playbook_id == pid, t.snapshots.c.version <= version
            )
        ).scalar_one()
        return last is None or version - last >= span

    def tag(self, name: str, tag: str, version: int, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Point ``tag`` at ``version`` (moving it if it exists), e.g. the offline runner's ``best``."""
        tag = check_name(tag, "tag")
        if tag.isdigit():
            raise ConfigError(f"a tag is not a number (numbers are versions), got {tag!r}")
        with self._write() as conn:
            row = self._row(conn, namespace, name, lock=True)
            _check_version(name, version, row.head)
            conn.execute(delete(t.tags).where(t.tags.c.playbook_id == row.id, t.tags.c.tag == tag))
            conn.execute(insert(t.tags).values(playbook_id=row.id, tag=tag, version=version, created_at=_now()))

    def tags(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, int]:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            rows = conn.execute(select(t.tags.c.tag, t.tags.c.version).where(t.tags.c.playbook_id == row.id)).all()
        return {r.tag: r.version for r in sorted(rows)}

    def resolve(self, name: str, ref: int | str | None, *, namespace: str = DEFAULT_NAMESPACE) -> int:
        """A version number from a number, a tag name, or None (the head)."""
        if ref is None:
            return self.head(name, namespace=namespace).version
        if isinstance(ref, int) or ref.isdigit():
            return int(ref)
        found = self.tags(name, namespace=namespace).get(_nfc(ref))
        if found is None:
            raise StoreError(f"playbook {namespace}/{name} has no version or tag {ref!r}")
        return found

    # -- reading ------------------------------------------------------------------------------------------
    def load(self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE) -> Playbook:
        """The playbook at ``version`` (default: the head)."""
        return self.load_versioned(name, version, namespace=namespace)[1]

    def load_versioned(
        self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> tuple[int, Playbook]:
        """``(version, playbook)`` at ``version`` (default: the head), read in one transaction."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            v = row.head if version is None else version
            _check_version(name, v, row.head)
            return int(v), self._state(conn, row.id, v)

    def load_held(
        self, name: str, version: int | None = None, *, namespace: str = DEFAULT_NAMESPACE
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
            v = row.head if version is None else version
            _check_version(name, v, row.head)
            held = self._cache.get(row.id)
        return (int(v), held[1]) if held is not None and held[0] == v else None

    def head_version(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> int:
        """The head's version number alone: one indexed read, nothing parsed."""
        with self._read() as conn:
            return int(self._row(conn, namespace, name).head)

    def head(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> VersionInfo:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            return self._infos(conn, row, row.head, row.head)[0]

    def history(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, since: int = 1, limit: int | None = None
    ) -> list[VersionInfo]:
        """Every version from ``since`` to the head, oldest first; with ``limit``, the first ``limit`` of them."""
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            last = row.head if limit is None else min(row.head, since + max(limit, 0) - 1)
            return self._infos(conn, row, since, last)

    def version(self, name: str, version: int, *, namespace: str = DEFAULT_NAMESPACE) -> VersionInfo:
        with self._read() as conn:
            row = self._row(conn, namespace, name)
            _check_version(name, version, row.head)
            return self._infos(conn, row, version, version)[0]

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
            early = late = self._state(conn, row.id, lo)
            replayed: set[str] = set()
            touched: set[str] | None = replayed
            try:
                for _v, text in self._deltas(conn, row.id, lo, hi):
                    if text is None:  # a rollback or an import between: no delta to replay
                        raise ValueError("no delta")
                    applied = apply(late, Delta.model_validate_json(text), policy=REPLAY_POLICY)
                    late = applied.playbook
                    replayed.update(applied.patch.before if applied.patch is not None else ())
                recorded = conn.execute(
                    select(t.versions.c.digest).where(t.versions.c.playbook_id == row.id, t.versions.c.version == hi)
                ).scalar_one()
                if late.digest() != recorded:
                    raise ValueError("the replayed version does not match its digest")
            except (ValueError, TypeError, KeyError, _NoSnapshot):  # read it as any version is (raises if corrupt)
                late, touched = self._state(conn, row.id, hi), None
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
                _aware(r.created_at),
                r.author,
                r.message,
                _op_source(Delta.model_validate_json(r.delta), bullet_id) if r.delta else None,
            )
            for r in rows
        ]

    def list(self, namespace: str | None = None) -> list[PlaybookInfo]:
        q = select(t.playbooks).order_by(t.playbooks.c.namespace, t.playbooks.c.name)
        if namespace is not None:
            q = q.where(t.playbooks.c.namespace == _nfc(namespace))
        with self._read() as conn:
            return [PlaybookInfo(r.namespace, r.name, r.head, r.created_at) for r in conn.execute(q)]

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
                    state = self._verified(conn, row, name, v, recorded, deltas, snaps, state, first=v == start)
                except (ValueError, TypeError, KeyError) as e:
                    raise StoreIntegrityError(
                        f"playbook {name!r}: version {v} no longer rebuilds ({type(e).__name__}: {str(e)[:120]})"
                    ) from None
            self._damaged.discard(row.id)
            held = self._load_head(conn, row.id, row.head)
        if held is None and state is not None:  # not materialized yet, or not what the log says: rewrite it
            log.warning("playbook %s/%s: its materialized head is rewritten from the verified log", namespace, name)
            with self._write() as conn:
                locked = self._row(conn, namespace, name, lock=True)
                if locked.head == row.head:
                    self._materialize(conn, row.id, row.head, state)
            self._damaged.discard(row.id)
        return int(row.head) - start + 1

    def _verified(
        self,
        conn: Connection,
        row: Any,
        name: str,
        v: int,
        recorded: dict[int, str],
        deltas: dict[int, str | None],
        snaps: set[int],
        state: Playbook | None,
        *,
        first: bool = False,
    ) -> Playbook:
        """Version ``v`` rebuilt from ``state`` (version ``v - 1``), checked against its recorded digest; the
        ``first`` version checked is read from its snapshot."""
        if v not in recorded:
            raise StoreIntegrityError(f"playbook {name!r}: version {v} is missing from the log")
        text = deltas[v]
        if first and v in snaps:
            state = self._snapshot(conn, row.id, v)
        elif text is not None and state is not None:
            state = apply(state, Delta.model_validate_json(text), policy=REPLAY_POLICY).playbook
            if v in snaps and self._snapshot(conn, row.id, v).digest() != recorded[v]:
                raise StoreIntegrityError(f"playbook {name!r}: snapshot of version {v} does not match")
        elif v in snaps:
            state = self._snapshot(conn, row.id, v)
        else:
            raise StoreIntegrityError(f"playbook {name!r}: version {v} has neither a delta nor a snapshot")
        if state.digest() != recorded[v]:
            raise StoreIntegrityError(
                f"playbook {name!r}: version {v} rebuilds to digest {state.digest()[:12]}, "
                f"but {recorded[v][:12]} was recorded"
            )
        return state

    # -- rebuilding ---------------------------------------------------------------------------------------
    def _snapshot(self, conn: Connection, pid: int, version: int) -> Playbook:
        state = conn.execute(
            select(t.snapshots.c.state).where(t.snapshots.c.playbook_id == pid, t.snapshots.c.version == version)
        ).scalar_one()
        with collector_paused():
            return Playbook.from_dict(json.loads(state))

    def _state(self, conn: Connection, pid: int, version: int) -> Playbook:
        """Version ``version``: the cached state, caught up by the deltas it missed when it is a few behind, the
        materialized head's rows, or the nearest snapshot plus the deltas after it."""
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == version:  # the common commit path: the cache is the head
            return cached[1]
        near = cached is not None and cached[0] < version <= cached[0] + 256
        state = None if near else self._load_head(conn, pid, version)
        if state is None:
            state = self._rebuild(conn, pid, version)
        if cached is None or version >= cached[0]:
            self._remember(pid, version, state)
        return state

    def _rebuild(self, conn: Connection, pid: int, version: int) -> Playbook:
        """Version ``version`` from the log: the cached state or the nearest snapshot, plus the deltas after it;
        checked against the digest recorded for it (raises :class:`StoreIntegrityError`)."""
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == version:
            return cached[1]
        snap_v = conn.execute(
            select(func.max(t.snapshots.c.version)).where(
                t.snapshots.c.playbook_id == pid, t.snapshots.c.version <= version
            )
        ).scalar_one()
        if snap_v is None:
            raise StoreIntegrityError(f"playbook #{pid} has no snapshot at or below version {version}")
        try:
            # from the cached state when it is at or below the version and not far behind (another writer moved
            # the head): a few deltas are cheaper than a snapshot, even one written since the cached version
            if cached is not None and cached[0] <= version and (snap_v <= cached[0] or version - cached[0] <= 256):
                base_v, state = cached
            else:
                base_v, state = snap_v, self._snapshot(conn, pid, snap_v)
            steps = self._deltas(conn, pid, base_v, version)
            # an import or a rollback has no delta: its state is its own snapshot, and what came before it is moot
            restart = [k for k, (_v, text) in enumerate(steps) if text is None]
            if restart:
                state, steps = self._own_snapshot(conn, pid, steps[restart[-1]][0]), steps[restart[-1] + 1 :]
            for text in [text for _v, text in steps if text is not None]:  # all of them, after the restart
                state = apply(state, Delta.model_validate_json(text), policy=REPLAY_POLICY).playbook
            corrupt = None
        except _NoSnapshot as e:
            state, corrupt = None, str(e)
        except (ValueError, TypeError, KeyError) as e:  # a row that no longer parses or applies (edited, bit rot)
            state, corrupt = None, f"its stored log no longer rebuilds ({type(e).__name__}: {str(e)[:120]})"
        # integrity on open: the rebuilt state must have the digest recorded when the version was committed
        recorded = conn.execute(
            select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == version)
        ).scalar_one_or_none()
        if state is not None and state.digest() != recorded:
            corrupt = f"it rebuilds to digest {state.digest()[:12]}, but {str(recorded)[:12]} was recorded"
        if corrupt or state is None:
            name = conn.execute(select(t.playbooks.c.name).where(t.playbooks.c.id == pid)).scalar_one_or_none()
            raise StoreIntegrityError(
                f"playbook {name!r} version {version} is corrupt: {corrupt}. Nothing is served or written on it; run "
                f"`ace playbook verify {name}` to find the first bad version and `ace playbook rollback` to a good one"
            )
        return state

    def _own_snapshot(self, conn: Connection, pid: int, version: int) -> Playbook:
        """The state of a version that has no delta (an import or a rollback): the snapshot written in its own
        transaction. Raises :class:`_NoSnapshot` if it is missing (deleted by hand: nothing else can rebuild it)."""
        state = conn.execute(
            select(t.snapshots.c.state).where(t.snapshots.c.playbook_id == pid, t.snapshots.c.version == version)
        ).scalar_one_or_none()
        if state is None:
            raise _NoSnapshot(
                f"version {version} has neither a delta nor a snapshot (an import or a rollback stores its state as "
                "a snapshot; that row is missing)"
            )
        with collector_paused():
            return Playbook.from_dict(json.loads(state))

    def _deltas(self, conn: Connection, pid: int, after: int, upto: int) -> builtins.list[tuple[int, str | None]]:
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
            raise _NoSnapshot(f"version {missing[0] if missing else upto} is missing from the log")
        return [(int(r.version), r.delta) for r in rows]

    def _remember(self, pid: int, version: int, pb: Playbook) -> None:
        if self._cache_enabled:
            self._cache[pid] = (version, pb)

    def _infos(self, conn: Connection, row: Any, first: int, last: int) -> builtins.list[VersionInfo]:
        rows = conn.execute(
            select(t.versions)
            .where(
                t.versions.c.playbook_id == row.id,
                t.versions.c.version >= first,
                t.versions.c.version <= last,
            )
            .order_by(t.versions.c.version)
        ).all()
        return [
            VersionInfo(
                row.namespace,
                row.name,
                r.version,
                r.parent,
                r.kind,
                r.digest,
                r.n_bullets,
                _aware(r.created_at),
                r.author,
                r.message,
                Delta.model_validate_json(r.delta) if r.delta else None,
            )
            for r in rows
        ]


def _agrees(head: _Head, pb: Playbook) -> bool:
    """Whether the materialized head's row describes ``pb`` (the head this store holds), as far as it tells
    without reading every bullet."""
    return (
        head.next_id == pb.next_id
        and head.n_bullets == len(pb)
        and pb.peek_derived("content_sum", head.content_sum) == head.content_sum
        and pb.peek_derived("order_hash", head.order_hash) == head.order_hash
        and list(head.sections.items()) == [(s.name, s.slug) for s in pb.sections.values()]
    )


def _row_of(pid: int, b: Bullet) -> dict[str, Any]:
    """The materialized head's row of ``b``: its canonical JSON (what its digest hashes) and that digest."""
    data, digest = b.canonical_with_digest()
    return {"playbook_id": pid, "bullet_id": b.id, "section": b.section, "data": data, "digest": digest.hex()}


def _bullet_from_row(bullet_id: str, section: str, data: str, digest: str) -> Bullet:
    """A row of the materialized head read back, checked: it parses, it is the bullet it is filed under, and its
    text is the canonical form of the bullet it holds with the digest the row records."""
    try:
        d = json.loads(data)
        if not isinstance(d, dict) or d.get("id") != bullet_id or d.get("section") != section:
            raise ValueError("it holds another bullet")
        b = Bullet.from_dict(d)
    except (ValueError, TypeError) as e:
        raise _HeadDamaged(f"the row of bullet {bullet_id!r} does not parse ({str(e)[:80]})") from None
    if b.canonical() != data or b.digest().hex() != digest:
        raise _HeadDamaged(f"the row of bullet {bullet_id!r} does not match its digest")
    return b


def _head_values(head: _Head) -> dict[str, Any]:
    return {
        "version": head.version,
        "next_id": head.next_id,
        "n_bullets": head.n_bullets,
        "content_sum": f"{head.content_sum:064x}",
        "order_hash": head.order_hash.hex(),
    }


@dataclass(slots=True)
class _Chunk:
    """One stored chunk of a section's order while a patch is applied to it."""

    number: int
    ids: str
    stored: bool = False
    dirty: bool = False


def _snapshot_of(pb: Playbook, texts: dict[str, str]) -> str:
    """The snapshot text of ``pb`` from its bullets' canonical texts (a bullet row may hold its section too)."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    parts = [
        f'{{"name":{dumps(s.name)},"slug":{dumps(s.slug)},"bullets":[{",".join(texts[i] for i in s.ids)}]}}'
        for s in pb.sections.values()
    ]
    return f'{{"format":"ace.playbook/v1","next_id":{pb.next_id},"sections":[{",".join(parts)}]}}'


def _serialized(pb: Playbook, *, yielding: bool = False) -> str:
    """The snapshot text of ``pb``, from each bullet's canonical JSON. ``yielding``: giving up the interpreter every
    few hundred bullets, so that a background thread does not stall the commits beside it."""
    texts: dict[str, str] = {}
    for n, b in enumerate(pb.bullets_by_id.values(), start=1):
        texts[b.id] = b.canonical()
        if yielding and n % 256 == 0:
            time.sleep(0)
    return _snapshot_of(pb, texts)


def _op_source(delta: Delta, bullet_id: str) -> Source | None:
    """The provenance of the operation that touched ``bullet_id`` (its own, in a merged batch, else the delta's)."""
    for op in delta.operations:
        if bullet_id in (op.ids if isinstance(op, MergeOp) else [op.id]) and op.source is not None:
            return op.source
    return delta.source


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


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
