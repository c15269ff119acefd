"""Options shared by the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="ACE_DB",
        show_envvar=True,
        help="SQLAlchemy URL of the store (default: SQLite under ~/.local/share/ace).",
    ),
]
NsOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace (agent or tenant) of the playbook.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", help="Who makes this change (recorded in history).")]
MessageOpt = Annotated[str | None, typer.Option("--message", "-m", help="Why (recorded in history).")]
