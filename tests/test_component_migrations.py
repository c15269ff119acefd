"""Every table under Alembic (#23 item 7): the episode queue's and the knowledge graph's tables have histories of
their own (:mod:`ace.store.components`). A database whose tables the old ``create_all`` made upgrades on open and
keeps its rows; a new database gets the tables by running the history, which builds what the code declares; a
column added by a new revision is applied on open (the mechanism a future column will use); opening again reads
nothing; a failed upgrade changes nothing. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
)

from ace.memory import schema as kg_schema
from ace.memory.graph import KnowledgeGraph
from ace.service import queue as queue_module
from ace.service.queue import EpisodeQueue, episodes
from ace.store import PlaybookStore, make_engine
from ace.store.components import ComponentSchema

NOW = datetime.now(UTC) - timedelta(minutes=1)


def log(n: int) -> dict[str, Any]:
    return {
        "id": f"game-{n}",
        "task": f"Game {n}: cook the soup.",
        "messages": [
            {"role": "user", "content": f"Game {n}: cook the soup."},
            {"role": "assistant", "content": "I give up."},
        ],
        "outcome": {"success": False, "message": "slice first"},
    }


def old_queue_table(url: str, *, with_retry_at: bool) -> None:
    """``ace_episodes`` as the releases before the history made it (``create_all``), with one queued episode:
    the first layout, or the one after ``retry_at`` was added at open."""
    old = MetaData()
    table = Table(
        "ace_episodes", old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("namespace", String(128), nullable=False),
        Column("playbook", String(256), nullable=False),
        Column("episode_id", String(200), nullable=False),
        Column("body", Text, nullable=False),
        Column("status", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("worker", String(128), nullable=True),
        Column("lease_until", DateTime(timezone=True), nullable=True),
        Column("version", Integer, nullable=True),
        Column("committed", Integer, nullable=True),
        Column("error", Text, nullable=True),
        *([Column("retry_at", DateTime(timezone=True), nullable=True)] if with_retry_at else []),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("namespace", "playbook", "episode_id", name="uq_ace_episodes_key"),
        Index("ix_ace_episodes_status", "status", "id"),
    )  # fmt: skip
    engine = create_engine(url)
    old.create_all(engine)
    body = json.dumps(log(0), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    with engine.begin() as conn:
        conn.execute(insert(table).values(namespace="team-a", playbook="cook", episode_id="game-0", body=body,
                                          status="queued", attempts=0, created_at=NOW, updated_at=NOW))  # fmt: skip
    engine.dispose()


def old_graph_tables(url: str) -> None:
    """The knowledge graph's tables as ``create_all`` made them before the history, with one fact and one link."""
    old = MetaData()
    facts = Table(
        "ace_kg_facts", old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("namespace", String(128), nullable=False),
        Column("subject", String(256), nullable=False),
        Column("subject_key", String(256), nullable=False),
        Column("relation", String(128), nullable=False),
        Column("object", String(1000), nullable=False),
        Column("object_key", String(1000), nullable=False),
        Column("single", Boolean, nullable=False),
        Column("valid_from", Integer, nullable=False),
        Column("valid_to", Integer, nullable=True),
        Column("superseded_by", Integer, nullable=True),
        Column("episode", String(256), nullable=True),
        Column("playbook", String(256), nullable=True),
        Column("version", Integer, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_ace_kg_facts_lookup", "namespace", "subject_key", "relation"),
    )  # fmt: skip
    links = Table(
        "ace_kg_bullet_links", old,
        Column("namespace", String(128), primary_key=True),
        Column("entity_key", String(256), primary_key=True),
        Column("playbook", String(256), primary_key=True),
        Column("bullet_id", String(64), primary_key=True),
    )  # fmt: skip
    engine = create_engine(url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(facts).values(namespace="n", subject="Acme Corp", subject_key="acme corp",
                                          relation="reporting_currency", object="EUR", object_key="eur", single=True,
                                          valid_from=1, created_at=NOW))  # fmt: skip
        conn.execute(insert(links).values(namespace="n", entity_key="acme corp", playbook="fin", bullet_id="s-00001"))
    engine.dispose()


def recorded(url: str, schema: ComponentSchema) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return schema.revision(conn)
    finally:
        engine.dispose()


def table_columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


@pytest.mark.parametrize("with_retry_at", [False, True], ids=["first-layout", "retry-at-added-at-open"])
def test_a_queue_table_made_by_create_all_upgrades_on_open_and_keeps_its_episodes(
    db_url: str, with_retry_at: bool
) -> None:
    old_queue_table(db_url, with_retry_at=with_retry_at)
    assert recorded(db_url, queue_module.SCHEMA) is None
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store, backoff_s=30.0)
    assert recorded(db_url, queue_module.SCHEMA) == queue_module.SCHEMA.head == "0002"
    kept = queue.get("cook", "game-0", namespace="team-a")
    assert kept.status == "queued" and kept.retry_at is None and kept.log == log(0)
    taken = queue.claim("w")
    assert taken is not None and taken.episode_id == "game-0"
    assert queue.fail(taken, "w", "ProviderError: the provider timed out", retry=True)
    assert queue.get("cook", "game-0", namespace="team-a").retry_at is not None  # the column is there and used
    assert queue.submit("cook", log(1), namespace="team-a")[1]
    store.close()


def test_graph_tables_made_by_create_all_upgrade_on_open_and_keep_their_facts(db_url: str) -> None:
    old_graph_tables(db_url)
    assert recorded(db_url, kg_schema.SCHEMA) is None
    store = PlaybookStore(db_url)
    kg = KnowledgeGraph(store, namespace="n")
    assert recorded(db_url, kg_schema.SCHEMA) == kg_schema.SCHEMA.head == "0001"
    assert [f.object for f in kg.current("acme corp", "reporting_currency")] == ["EUR"]
    assert kg.bullets("Acme Corp") == [("fin", "s-00001")]
    kg.add("Acme Corp", "reporting_currency", "USD", valid_from=2)
    assert [f.object for f in KnowledgeGraph(store, namespace="n").current("acme corp", "reporting_currency")] == [
        "USD"
    ]
    store.close()


def test_a_new_database_gets_the_tables_the_code_declares_by_running_the_history(db_url: str) -> None:
    store = PlaybookStore(db_url)
    EpisodeQueue(store)
    KnowledgeGraph(store, namespace="n")
    assert recorded(db_url, queue_module.SCHEMA) == queue_module.SCHEMA.head
    assert recorded(db_url, kg_schema.SCHEMA) == kg_schema.SCHEMA.head
    for table in [episodes, *kg_schema.metadata.tables.values()]:
        assert table_columns(db_url, table.name) == {c.name for c in table.columns}, table.name
    engine = create_engine(db_url)
    indexes = {i["name"] for i in inspect(engine).get_indexes(episodes.name)}
    engine.dispose()
    assert "ix_ace_episodes_status" in indexes
    store.close()


def _with_revision(tmp_path: Path, body: str, name: str) -> Path:
    """A copy of the queue's migration folder with one more revision: what a release that adds a column ships."""
    folder = tmp_path / "queue_migrations"
    shutil.copytree(queue_module.SCHEMA.migrations, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / name).write_text(body, encoding="utf-8")
    return folder


ADD_PRIORITY = '''"""A later release's column: the episode's priority."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("ace_episodes", sa.Column("priority", sa.Integer, nullable=True))
'''


def test_a_column_added_by_a_new_revision_is_applied_when_the_queue_opens(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store)
    queue.submit("cook", log(0), namespace="team-a")
    store.close()
    assert "priority" not in table_columns(db_url, episodes.name)

    later = ComponentSchema(
        "episode queue", queue_module.SCHEMA.version_table, _with_revision(tmp_path, ADD_PRIORITY, "0003_priority.py"),
        queue_module.SCHEMA.recognise,
    )  # fmt: skip
    monkeypatch.setattr(queue_module, "SCHEMA", later)
    store = PlaybookStore(db_url)
    queue = EpisodeQueue(store)
    assert "priority" in table_columns(db_url, episodes.name)
    assert recorded(db_url, later) == later.head == "0003"
    assert queue.get("cook", "game-0", namespace="team-a").status == "queued"  # the row is kept
    store.close()

    # a database from before the history takes every revision, its own and the new one, in one go
    fresh = f"sqlite:///{tmp_path / 'old.db'}"
    old_queue_table(fresh, with_retry_at=False)
    engine = make_engine(fresh)
    assert later.upgrade(engine) == ("0001", "0003")
    engine.dispose()
    assert {"retry_at", "priority"} <= table_columns(fresh, episodes.name)


FAILS = '''"""A revision that fails half-way."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("ace_episodes", sa.Column("priority", sa.Integer, nullable=True))
    op.execute("SELECT no_such_column FROM ace_episodes")
'''


def test_a_failed_upgrade_changes_nothing(db_url: str, tmp_path: Path) -> None:
    old_queue_table(db_url, with_retry_at=False)
    failing = ComponentSchema(
        "episode queue", queue_module.SCHEMA.version_table, _with_revision(tmp_path, FAILS, "0003_fails.py"),
        queue_module.SCHEMA.recognise,
    )  # fmt: skip
    engine = make_engine(db_url)
    with pytest.raises(Exception, match="no_such_column"):
        failing.upgrade(engine)
    engine.dispose()
    assert recorded(db_url, failing) is None  # not even the stamp of the recognised tables
    assert table_columns(db_url, episodes.name).isdisjoint({"retry_at", "priority"})
    store = PlaybookStore(db_url)
    assert EpisodeQueue(store).get("cook", "game-0", namespace="team-a").status == "queued"
    store.close()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cu, statement, *_: seen.append(statement))
    return seen


def test_opening_again_reads_nothing_and_a_new_process_reads_only_the_version(sqlite_url: str) -> None:
    store = PlaybookStore(sqlite_url)
    EpisodeQueue(store)
    seen = _statements(store.engine)
    queue_module.SCHEMA.ensure(store.engine)
    kg_schema.SCHEMA.ensure(store.engine)  # made on the first open of the graph, not before
    assert len(seen) > 0
    seen.clear()
    EpisodeQueue(store)
    KnowledgeGraph(store, namespace="n")
    assert seen == [], seen  # this process saw both at their head on this engine
    store.close()

    elsewhere = make_engine(sqlite_url)
    seen = _statements(elsewhere)
    queue_module.SCHEMA.ensure(elsewhere)
    assert not any(s.lstrip().upper().startswith(("CREATE", "ALTER", "INSERT", "UPDATE")) for s in seen), seen
    elsewhere.dispose()


def test_processes_opening_a_new_database_at_once_all_succeed(db_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_queue() -> None:
        try:
            engine = make_engine(db_url)
            start.wait()
            queue_module.SCHEMA.ensure(engine)
            kg_schema.SCHEMA.ensure(engine)
            engine.dispose()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_queue) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert recorded(db_url, queue_module.SCHEMA) == queue_module.SCHEMA.head
    assert recorded(db_url, kg_schema.SCHEMA) == kg_schema.SCHEMA.head
