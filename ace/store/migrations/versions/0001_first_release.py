"""The first release's schema: playbooks, versions (the log of resolved deltas), snapshots, bullet events."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ace_playbooks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("head", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("namespace", "name", name="uq_ace_playbooks_ns_name"),
    )
    op.create_table(
        "ace_versions",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("delta", sa.Text, nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("n_bullets", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
    )
    op.create_table(
        "ace_snapshots",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "ace_bullet_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bullet_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
    )
    op.create_index("ix_ace_bullet_events_lookup", "ace_bullet_events", ["playbook_id", "bullet_id"])
