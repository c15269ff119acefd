"""The store's schema revision, kept with Alembic (migrations in ``ace/store/migrations``).

A new database gets today's tables and is stamped with the newest revision. A database at an older revision is
not used: opening it raises :class:`SchemaOutdated`, which says to run ``ace db upgrade`` (:func:`upgrade`).
Databases written before revisions were recorded (ACE's first releases) are recognised by their tables and
digests and upgraded from there: ``0001`` the first release's tables, ``0002`` the idempotency key of commits,
``0003`` named versions (tags), ``0004`` version digests in today's form (every version checked first),
``0005`` the materialized head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ace.playbook import Playbook
from ace.store import schema as t
from ace.store.engine import shown_url
from ace.store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where it is used (opening a store, upgrading): loading it takes a quarter of a second, which
# a command that only reads a file (``ace replay``) should not pay.

VERSION_TABLE = "ace_schema_version"
HEAD = "0005"
MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutdated(StoreError):
    """The database's schema is older than this code; ``ace db upgrade`` brings it up to date."""


def _config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def recorded_revision(conn: Connection) -> str | None:
    """The revision the database says it is at, or None if it records none."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def revision(conn: Connection) -> str | None:
    """The database's revision: recorded, or recognised for a database from before revisions were recorded;
    None for a database without ACE's tables."""
    recorded = recorded_revision(conn)
    if recorded is not None:
        return recorded
    insp = inspect(conn)
    if not insp.has_table(t.playbooks.name):
        return None
    if "key" not in {c["name"] for c in insp.get_columns(t.versions.name)}:
        return "0001"
    if not insp.has_table(t.tags.name):
        return "0002"
    return "0004" if _digests_current(conn) else "0003"


def _digests_current(conn: Connection) -> bool:
    """Whether the first snapshot's recorded digest is in today's form (or there is nothing to tell by)."""
    row = conn.execute(
        select(t.snapshots.c.playbook_id, t.snapshots.c.version, t.snapshots.c.state).limit(1)
    ).one_or_none()
    if row is None:
        return True
    recorded = conn.execute(
        select(t.versions.c.digest).where(
            t.versions.c.playbook_id == row.playbook_id, t.versions.c.version == row.version
        )
    ).scalar_one()
    return bool(Playbook.from_dict(json.loads(row.state)).digest() == recorded)


def prepare(engine: Engine, url: str) -> None:
    """Make a new database ready (today's tables, stamped), or refuse one whose schema is older than this code."""
    with engine.connect() as conn:
        recorded = recorded_revision(conn)
        if recorded == HEAD:
            return
        current = recorded or revision(conn)
    if current is None:
        _create(engine)
        return
    shown = current if recorded else f"{current} (from before revisions were recorded)"
    raise SchemaOutdated(
        f"the database {shown_url(url)} has schema revision {shown}; this version of ace needs {HEAD}. Back it up, "
        f"then run `ace db upgrade --db {shown_url(url)}`"
    )


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create ``metadata``'s tables that are missing (the store's, or a memory tier's in the same database)."""
    try:
        metadata.create_all(engine)
    except IntegrityError:  # another process created the tables at the same moment (PostgreSQL catalogs)
        metadata.create_all(engine)


def _create(engine: Engine) -> None:
    """Today's tables and the newest revision stamped; two processes doing it at once both succeed."""
    from alembic import command

    create_tables(engine, t.metadata)
    try:
        command.stamp(_config(engine), HEAD)
    except (IntegrityError, OperationalError, ProgrammingError):  # another process stamped it first
        with engine.connect() as conn:
            if recorded_revision(conn) != HEAD:
                raise


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to :data:`HEAD`; returns (revision before, revision after). A database from before
    revisions were recorded is stamped with the revision its tables show, then upgraded from there."""
    with engine.connect() as conn:
        before = revision(conn)
        recorded = recorded_revision(conn)
    if before is None:
        _create(engine)
        return None, HEAD
    from alembic import command

    cfg = _config(engine)
    if recorded is None:
        cfg.attributes["recognised"] = before  # stamped inside the upgrade's transaction (see migrations/env.py)
    command.upgrade(cfg, "head")
    return before, HEAD


__all__ = [
    "HEAD",
    "VERSION_TABLE",
    "SchemaOutdated",
    "create_tables",
    "prepare",
    "recorded_revision",
    "revision",
    "upgrade",
]
