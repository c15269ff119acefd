"""Tables of the playbook store (SQLAlchemy Core).

A playbook's history is an event log: one ``ace_versions`` row per version holding the resolved delta that made
it, plus a full ``ace_snapshots`` row every K versions (and for imports and rollbacks). Version N rebuilds from
the nearest snapshot at or below N plus the deltas after it. ``ace_bullet_events`` indexes which versions touched
which bullet, for blame.

The head is also kept *materialized*, so that a writer that does not hold it in memory commits in O(delta):
``ace_heads`` (the head's version, counters and the two parts of its digest), ``ace_head_sections`` (names and
slugs), ``ace_head_order`` (each section's ids in order, in chunks) and ``ace_head_bullets`` (one row per bullet of
the head, with its digest). A commit updates the rows it changes in its own transaction. The log stays the truth:
a head whose version is not the playbook's (a database from before revision 0005, a row found edited) is rebuilt
from it.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

playbooks = Table(
    "ace_playbooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("head", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("namespace", "name", name="uq_ace_playbooks_ns_name"),
)

versions = Table(
    "ace_versions",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("parent", Integer, nullable=True),
    Column("kind", String(16), nullable=False),  # import | delta | rollback
    Column("delta", Text, nullable=True),  # resolved delta JSON; NULL for import / rollback (they snapshot)
    Column("digest", String(64), nullable=False),
    Column("n_bullets", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("author", String(256), nullable=True),
    Column("message", Text, nullable=True),
    # A writer's idempotency key (e.g. "run-7:step-12"): a commit repeated after a crash finds its version here.
    Column("key", String(200), nullable=True),
    Index("ux_ace_versions_key", "playbook_id", "key", unique=True),
)

snapshots = Table(
    "ace_snapshots",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("state", Text, nullable=False),
)

bullet_events = Table(
    "ace_bullet_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("bullet_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("op", String(16), nullable=False),
    Index("ix_ace_bullet_events_lookup", "playbook_id", "bullet_id"),
)

# Named versions ("best", "release-3"): a tag points at one version and can be moved.
tags = Table(
    "ace_tags",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


heads = Table(
    "ace_heads",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, nullable=False),  # the version the rows below hold; stale if not the head
    Column("next_id", Integer, nullable=False),
    Column("n_bullets", Integer, nullable=False),
    Column("content_sum", String(64), nullable=False),  # hex, see Playbook.digest
    Column("order_hash", String(64), nullable=False),  # hex
)

head_sections = Table(
    "ace_head_sections",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("slug", String(64), nullable=False),
)

# A section's ids in order, in chunks of at most HEAD_CHUNK ids (joined by U+001F): an ADD rewrites the last chunk
# of its section and a REMOVE the chunk that held the id, not the whole order.
head_order = Table(
    "ace_head_order",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),  # the section's
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("ids", Text, nullable=False),
)
HEAD_CHUNK = 512

head_bullets = Table(
    "ace_head_bullets",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("bullet_id", String(64), primary_key=True),
    Column("section", Text, nullable=False),
    Column("data", Text, nullable=False),  # the bullet's fields but its section, as JSON
    Column("digest", String(64), nullable=False),  # hex SHA-256 of the bullet (Bullet.digest)
)
