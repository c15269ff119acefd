"""A writer's idempotency key on each version: a commit repeated after a crash finds the version it made."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("ace_versions") as batch:
        batch.add_column(sa.Column("key", sa.String(200), nullable=True))
    op.create_index("ux_ace_versions_key", "ace_versions", ["playbook_id", "key"], unique=True)
