"""``retry_at``: a queued episode whose last try failed for a passing reason is not claimed before this time."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("ace_episodes", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
