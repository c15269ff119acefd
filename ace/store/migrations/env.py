"""Alembic environment for the store's schema; run through :mod:`ace.store.schema_version`, which passes the
engine in ``config.attributes["engine"]``."""

from __future__ import annotations

from alembic import context
from alembic.script import ScriptDirectory

from ace.store.schema_version import VERSION_TABLE

engine = context.config.attributes["engine"]
# a database from before revisions were recorded: the revision its tables show, stamped in the same transaction as
# the upgrade, so a failed upgrade leaves no stamp behind either
recognised = context.config.attributes.get("recognised")
with engine.connect() as connection:
    connection.execution_options(ace_write=True)  # SQLite: take the writer's lock, like a commit
    # transactional_ddl: SQLite and PostgreSQL both roll DDL back, so a failed upgrade changes nothing at all
    context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True, transactional_ddl=True)
    with context.begin_transaction():
        if recognised:
            context.get_context().stamp(ScriptDirectory.from_config(context.config), recognised)
        context.run_migrations()
