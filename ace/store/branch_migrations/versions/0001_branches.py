"""Branches: a playbook's fork point (``ace_branches``: the playbook it was branched from, at which version) and the
merges of a branch into it (``ace_merges``: the branch version merged, the version the merge made, the id map and
the operations left out for the next merge)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    fk = "ace_playbooks.id"
    op.create_table(
        "ace_branches",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey(fk, ondelete="CASCADE"), primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey(fk, ondelete="CASCADE"), nullable=False),
        sa.Column("fork_version", sa.Integer, nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_branches_parent", "ace_branches", ["parent_id"])
    op.create_table(
        "ace_merges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("branch_id", sa.Integer, sa.ForeignKey(fk, ondelete="CASCADE"), nullable=False),
        sa.Column("target_id", sa.Integer, sa.ForeignKey(fk, ondelete="CASCADE"), nullable=False),
        sa.Column("branch_version", sa.Integer, nullable=False),
        sa.Column("target_version", sa.Integer, nullable=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("ids", sa.Text, nullable=False),
        sa.Column("pending", sa.Text, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_merges_lookup", "ace_merges", ["branch_id", "id"])
