"""Tables of the knowledge-graph tier (:mod:`ace.memory.graph`), in the store's database beside the playbooks.

They are defined here, by the tier that owns them, in a ``MetaData`` of their own; the store does not know them.
They are under Alembic with a history of their own (``graph_migrations/``, recorded in ``ace_kg_version``; see
:mod:`ace.store.components`): :class:`~ace.memory.graph.KnowledgeGraph` brings them to the newest revision on the
store's engine when it opens, tables made by ``create_all`` before the history included. A new column is a new
revision there (and a ``Column`` below).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Boolean, Column, Connection, DateTime, Index, Integer, MetaData, String, Table

from ace.store.components import ComponentSchema, columns

metadata = MetaData()

# The knowledge-graph tier (ace.memory.graph): typed facts with provenance and validity. A fact that a newer one
# contradicts is kept with valid_to / superseded_by set, never deleted.
kg_facts = Table(
    "ace_kg_facts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("subject_key", String(256), nullable=False),
    Column("relation", String(128), nullable=False),
    Column("object", String(1000), nullable=False),
    Column("object_key", String(1000), nullable=False),
    Column("single", Boolean, nullable=False),  # single-valued: a different object supersedes the current one
    Column("valid_from", Integer, nullable=False),  # a step (or any ordinal time) from which the fact holds
    Column("valid_to", Integer, nullable=True),  # NULL: still current
    Column("superseded_by", Integer, nullable=True),
    Column("episode", String(256), nullable=True),
    Column("playbook", String(256), nullable=True),
    Column("version", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_kg_facts_lookup", "namespace", "subject_key", "relation"),
)

kg_bullet_links = Table(
    "ace_kg_bullet_links",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("entity_key", String(256), primary_key=True),
    Column("playbook", String(256), primary_key=True),
    Column("bullet_id", String(64), primary_key=True),
)


def _recognise(conn: Connection) -> str | None:
    """The revision of the graph's tables made by ``create_all`` before the graph had a history."""
    return None if columns(conn, kg_facts.name) is None else "0001"


SCHEMA = ComponentSchema("knowledge graph", "ace_kg_version", Path(__file__).parent / "graph_migrations", _recognise)
