"""Gated promotion and watch: a playbook's gate (``ace_gates``: its evaluation lane, the test's settings, the
campaign, the watch), its trials (``ace_trials``), each task's answers in a trial (``ace_trial_results``) and the
outcomes agents reported for the versions they read (``ace_outcomes``)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _playbook() -> sa.ForeignKey:
    return sa.ForeignKey("ace_playbooks.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "ace_gates",
        sa.Column("playbook_id", sa.Integer, _playbook(), primary_key=True),
        sa.Column("tasks", sa.Text, nullable=True),
        sa.Column("evaluator", sa.Text, nullable=True),
        sa.Column("n_tasks", sa.Integer, nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("min_effect", sa.Float, nullable=False),
        sa.Column("test", sa.String(16), nullable=False),
        sa.Column("spending", sa.String(16), nullable=False),
        sa.Column("looks", sa.Integer, nullable=False),
        sa.Column("campaign", sa.Text, nullable=True),
        sa.Column("watch", sa.Boolean, nullable=False),
        sa.Column("watch_window", sa.Integer, nullable=False),
        sa.Column("watch_alpha", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
    )
    op.create_table(
        "ace_trials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("playbook_id", sa.Integer, _playbook(), nullable=False),
        sa.Column("candidate", sa.Integer, nullable=False),
        sa.Column("serving", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("campaign", sa.Integer, nullable=False),
        sa.Column("look", sa.Integer, nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("lane", sa.Text, nullable=False),
        sa.Column("provider", sa.String(256), nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("wall_s", sa.Float, nullable=False),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_trials_lookup", "ace_trials", ["playbook_id", "id"])
    op.create_table(
        "ace_trial_results",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("ace_trials.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("task_id", sa.String(256), primary_key=True),
        sa.Column("arm", sa.String(16), primary_key=True),
        sa.Column("correct", sa.Boolean, nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
    )
    op.create_table(
        "ace_outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("playbook_id", sa.Integer, _playbook(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("episode", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ace_outcomes_lookup", "ace_outcomes", ["playbook_id", "version", "id"])
