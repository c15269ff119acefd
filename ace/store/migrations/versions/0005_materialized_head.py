"""The materialized head (``ace_heads``, ``ace_head_sections``, ``ace_head_order``, ``ace_head_bullets``): a commit
from a process that does not hold the playbook reads and writes only the rows its delta touches.

The tables start empty: each playbook's head is materialized from its log by the first commit after the upgrade
(a head whose recorded version is not the playbook's is rebuilt, in the commit's transaction).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    fk = sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE")
    op.create_table(
        "ace_heads",
        sa.Column("playbook_id", sa.Integer, fk, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("next_id", sa.Integer, nullable=False),
        sa.Column("n_bullets", sa.Integer, nullable=False),
        sa.Column("content_sum", sa.String(64), nullable=False),
        sa.Column("order_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "ace_head_sections",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
    )
    op.create_table(
        "ace_head_order",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ids", sa.Text, nullable=False),
    )
    op.create_table(
        "ace_head_bullets",
        sa.Column("playbook_id", sa.Integer, sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("bullet_id", sa.String(64), primary_key=True),
        sa.Column("section", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
