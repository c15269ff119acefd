"""Tables that other layers keep in the store's database (the episode queue, the knowledge graph), each under
Alembic: a history of revisions of its own, in a folder beside the code that owns the tables, and a version table
of its own (``ace_queue_version``, ``ace_kg_version``), so that each component upgrades on its own schedule and the
store's history (:mod:`ace.store.schema_version`) stays the store's.

A component's schema is brought to its newest revision when the component opens (:meth:`ComponentSchema.ensure`):

- a new database gets the tables by running the history from its first revision;
- a database whose tables were made before the history was recorded (``create_all``, with or without the columns
  added later) is recognised by its tables (``recognise``), stamped with the revision they show, and upgraded
  from there, rows kept;
- a database at an older revision is upgraded; adding a column is a new revision in the component's folder.

The upgrade is one transaction under the writer's lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock per
version table), so two processes opening at once do it once and a failed upgrade changes nothing. Opening stays
cheap: one read of the version table, and none at all once this process has seen the component at its head.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

_seen_lock = threading.Lock()
# Alembic's ``op`` is one module-level proxy: migrations in this process run one at a time (the database's locks
# order processes)
_migrating = threading.Lock()
# engines on which a component was seen at its head: (version table, head) pairs, dropped with the engine
_seen: weakref.WeakKeyDictionary[Engine, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class ComponentSchema:
    """The schema of a component's tables: its revisions in ``migrations/versions``, recorded in
    ``version_table``. ``recognise(conn)`` names the revision of tables made before the history was recorded, or
    None where the component has no tables yet."""

    name: str
    version_table: str
    migrations: Path
    recognise: Callable[[Connection], str | None]

    @cached_property
    def script(self) -> ScriptDirectory:
        from alembic.script import ScriptDirectory

        return ScriptDirectory(str(self.migrations))

    @property
    def head(self) -> str:
        head = self.script.get_current_head()
        assert head is not None, f"{self.migrations}: no revisions"
        return head

    def revision(self, conn: Connection) -> str | None:
        """The revision the database records for this component (None: none recorded)."""
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn, opts={"version_table": self.version_table}).get_current_revision()

    def ensure(self, engine: Engine) -> None:
        """Bring the component's tables to its head, if they are not there (see the module doc). ``engine`` is
        the store's (:func:`~ace.store.make_engine`), whose SQLite transactions begin explicitly: DDL in a plain
        pysqlite transaction would not roll back."""
        head = self.head
        key = (self.version_table, head)
        with _seen_lock:
            if key in _seen.get(engine, ()):
                return
        with engine.connect() as conn:
            at = self.revision(conn)
        if at != head:
            self.upgrade(engine)
        with _seen_lock:
            _seen.setdefault(engine, set()).add(key)

    def upgrade(self, engine: Engine) -> tuple[str | None, str]:
        """Bring the tables to the head in one transaction; returns (revision before, revision after), before
        being None for a database without the component's tables."""
        from alembic.operations import Operations
        from alembic.runtime.migration import MigrationContext

        script = self.script

        def to_head(rev: Any, _context: Any) -> Any:
            return script._upgrade_revs("head", rev)

        with _migrating, engine.connect() as conn:
            conn.execution_options(ace_write=True)  # the store's engine: SQLite takes the writer's lock
            with conn.begin():
                if conn.dialect.name == "postgresql":  # one process at a time upgrades this component
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._lock_key()})
                ctx = MigrationContext.configure(
                    conn,
                    opts={
                        "version_table": self.version_table,
                        "script": script,
                        "fn": to_head,
                        "render_as_batch": True,
                        "transactional_ddl": True,
                    },
                )
                before = ctx.get_current_revision()
                if before is None and (before := self.recognise(conn)) is not None:
                    ctx.stamp(script, before)  # tables from before the history, stamped in this transaction
                with Operations.context(ctx):
                    ctx.run_migrations()
        return before, self.head

    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"ace-schema:{self.version_table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


class TablePresence:
    """Whether a component's table exists, asked of the database until it does and then remembered per engine
    (a component's tables are never dropped); a database without it is asked again on each call, so a first write
    by another process is seen at once."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._seen: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __call__(self, conn: Connection) -> bool:
        engine = conn.engine
        with self._lock:
            if engine in self._seen:
                return True
        if conn.dialect.name == "postgresql":
            found = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": self.table}).scalar()
        else:
            q = text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t")
            found = conn.execute(q, {"t": self.table}).first() is not None
        if found:
            with self._lock:
                self._seen.add(engine)
        return bool(found)


def columns(conn: Connection, table: str) -> set[str] | None:
    """The column names of ``table``, or None if there is no such table (for a ``recognise`` function)."""
    from sqlalchemy import inspect

    insp = inspect(conn)
    if not insp.has_table(table):
        return None
    return {c["name"] for c in insp.get_columns(table)}


__all__ = ["ComponentSchema", "columns"]
