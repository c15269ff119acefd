"""The knowledge graph's tables, as ``create_all`` made them before the graph had a history: facts with provenance
and validity, and the links from entities to the bullets that mention them."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ace_kg_facts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("subject_key", sa.String(256), nullable=False),
        sa.Column("relation", sa.String(128), nullable=False),
        sa.Column("object", sa.String(1000), nullable=False),
        sa.Column("object_key", sa.String(1000), nullable=False),
        sa.Column("single", sa.Boolean, nullable=False),
        sa.Column("valid_from", sa.Integer, nullable=False),
        sa.Column("valid_to", sa.Integer, nullable=True),
        sa.Column("superseded_by", sa.Integer, nullable=True),
        sa.Column("episode", sa.String(256), nullable=True),
        sa.Column("playbook", sa.String(256), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_kg_facts_lookup", "ace_kg_facts", ["namespace", "subject_key", "relation"])
    op.create_table(
        "ace_kg_bullet_links",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("entity_key", sa.String(256), primary_key=True),
        sa.Column("playbook", sa.String(256), primary_key=True),
        sa.Column("bullet_id", sa.String(64), primary_key=True),
    )
