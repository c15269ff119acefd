"""Promotion policies: how a playbook's serving channel moves (``ace_policies``: immediate, review)."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "ace_policies",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
    )
