"""``ace db status|upgrade``: the store's schema revision (Alembic migrations in ``ace/store/migrations``)."""

from __future__ import annotations

from ace.app.console import line
from ace.cli.options import DbOpt
from ace.cli.output import AceTyper, out
from ace.store import SCHEMA_REVISION, default_url, make_engine, upgrade
from ace.store.engine import shown_url
from ace.store.schema_version import recorded_revision, revision

app = AceTyper(help="The store's schema: its revision, and upgrading an older database.", no_args_is_help=True)


@app.command()
def status(db: DbOpt = None) -> None:
    """Say which schema revision the database is at, and whether this version of ace can use it."""
    url = db or default_url()
    engine = make_engine(url, create_dirs=db is None)
    shown = shown_url(url)  # the password is never printed
    with engine.connect() as conn:
        recorded, current = recorded_revision(conn), revision(conn)
    if current is None:
        out.print(f"{shown}: no ACE tables yet (they are made on first use, at revision {SCHEMA_REVISION})")
    elif recorded == SCHEMA_REVISION:
        out.print(line(("ok", "green"), f": {shown} is at revision {SCHEMA_REVISION}, this code's"))
    else:
        how = "recorded" if recorded else "recognised from its tables (revisions were not recorded then)"
        out.print(f"{shown} is at revision {current} ({how}); this code needs {SCHEMA_REVISION}: run `ace db upgrade`")


@app.command("upgrade")
def upgrade_(db: DbOpt = None) -> None:
    """Upgrade the database to this code's schema revision (back it up first; an upgrade that fails changes
    nothing)."""
    url = db or default_url()
    before, after = upgrade(make_engine(url, create_dirs=db is None))
    if before == after:
        out.print(f"{shown_url(url)} is at revision {after} already")
    else:
        out.print(line(("upgraded", "green"), f" {shown_url(url)} from revision {before or '(empty)'} to {after}"))
