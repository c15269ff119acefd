"""Channels: a playbook's named pointers to versions (``ace_channels``) and the log of their moves
(``ace_channel_moves``)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    fk = sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE")
    op.create_table(
        "ace_channels",
        sa.Column("playbook_id", sa.Integer, fk, primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ace_channel_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("previous", sa.Integer, nullable=True),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("evidence", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_channel_moves_lookup", "ace_channel_moves", ["playbook_id", "channel", "id"])
