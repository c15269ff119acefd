"""Schema migrations (Alembic): a database created by ACE's first release is refused until ``ace db upgrade``,
then upgraded with its history intact and every digest checked; the migration chain builds the same schema as
today's tables; a corrupt history stops the upgrade and changes nothing."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from ace.cli import app
from ace.playbook import Delta
from ace.store import SCHEMA_REVISION, PlaybookStore, SchemaOutdated, make_engine, upgrade
from ace.store import schema as t
from ace.store.schema_version import _config, recorded_revision

FIRST_RELEASE = Path(__file__).resolve().parent / "fixtures" / "first-release.db"  # written by ACE b18a8a8


@pytest.fixture
def old_db(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    shutil.copy(FIRST_RELEASE, path)
    return f"sqlite:///{path}"


def test_a_first_release_database_is_refused_until_upgraded_then_keeps_its_history(old_db: str) -> None:
    with pytest.raises(SchemaOutdated, match=r"revision 0001 \(from before revisions were recorded\).*ace db upgrade"):
        PlaybookStore(old_db)
    refused = CliRunner().invoke(app, ["playbook", "list", "--db", old_db])
    assert refused.exit_code == 1 and "ace db upgrade" in refused.output and "Traceback" not in refused.output
    status = CliRunner().invoke(app, ["db", "status", "--db", old_db])
    assert "revision 0001" in status.output and f"needs {SCHEMA_REVISION}" in status.output

    result = CliRunner().invoke(app, ["db", "upgrade", "--db", old_db])
    assert result.exit_code == 0 and f"from revision 0001 to {SCHEMA_REVISION}" in result.output, result.output
    store = PlaybookStore(old_db)
    assert [(p.namespace, p.name, p.head) for p in store.list()] == [("default", "finance", 4), ("team-b", "other", 1)]
    assert store.verify("finance") == 4 and store.verify("other", namespace="team-b") == 1
    assert [h.kind for h in store.history("finance")] == ["import", "delta", "delta", "rollback"]
    assert store.load("finance", 4).digest() == store.load("finance", 2).digest()  # the rollback, still exact
    # and what the later revisions added works on it: idempotency keys, tags
    add = {"type": "ADD", "section": "OTHERS", "content": "A lesson learned after the upgrade."}
    info = store.commit("finance", Delta.parse({"operations": [add]}), key="run-1:0")
    assert store.commit("finance", Delta.parse({"operations": [add]}), key="run-1:0").version == info.version == 5
    store.tag("finance", "best", 5)
    assert store.resolve("finance", "best") == 5
    again = CliRunner().invoke(app, ["db", "upgrade", "--db", old_db])
    assert again.exit_code == 0 and "already" in again.output


def test_a_corrupt_history_stops_the_upgrade_and_changes_nothing(old_db: str, tmp_path: Path) -> None:
    path = Path(old_db.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ace_versions SET digest = ? WHERE version = 3", ("0" * 64,))
    before = path.read_bytes()
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", old_db])
    assert result.exit_code == 1 and "finance version 3 does not match its recorded digest" in result.output
    assert path.read_bytes() == before or _same_rows(path, tmp_path)
    with pytest.raises(SchemaOutdated):
        PlaybookStore(old_db)


def _same_rows(path: Path, tmp_path: Path) -> bool:
    """SQLite may rewrite the file's header on a rolled-back transaction; the rows are what must not change."""
    copy = tmp_path / "orig.db"
    shutil.copy(FIRST_RELEASE, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE ace_versions SET digest = ? WHERE version = 3", ("0" * 64,))
    query = "SELECT playbook_id, version, digest FROM ace_versions ORDER BY 1, 2"
    with sqlite3.connect(path) as a, sqlite3.connect(copy) as b:
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        return a.execute(query).fetchall() == b.execute(query).fetchall() and (
            a.execute(tables).fetchall() == b.execute(tables).fetchall()
        )


def _schema(url: str) -> dict[str, object]:
    insp = inspect(create_engine(url))
    out: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        if table.startswith("ace_") and table != "ace_schema_version":
            cols = sorted((c["name"], str(c["type"]).split("(")[0], c["nullable"]) for c in insp.get_columns(table))
            idx = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table))
            pk = tuple(insp.get_pk_constraint(table)["constrained_columns"])
            out[table] = (cols, idx, pk)
    return out


def test_the_migration_chain_builds_the_schema_of_todays_tables(db_url: str, tmp_path: Path) -> None:
    from alembic import command

    PlaybookStore(db_url)  # today's tables, stamped
    fresh = _schema(db_url)
    assert set(fresh) == {tb.name for tb in t.metadata.sorted_tables}
    other = f"sqlite:///{tmp_path / 'chain.db'}" if db_url.startswith("sqlite") else _second_pg(db_url)
    engine = make_engine(other)
    command.upgrade(_config(engine), "head")  # 0001 -> 0002 -> 0003 -> 0004 on an empty database
    with engine.connect() as conn:
        assert recorded_revision(conn) == SCHEMA_REVISION
    assert _schema(other) == fresh


def _second_pg(url: str) -> str:
    """A second empty database on the same PostgreSQL server (dropped with the test's own by the fixture)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1] + "_chain"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def test_upgrading_an_empty_database_makes_it_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert upgrade(make_engine(url)) == (None, SCHEMA_REVISION)
    assert PlaybookStore(url).list() == []
