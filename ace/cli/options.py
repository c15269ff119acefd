"""Options shared by the command groups, and the bounds the numbers the CLI takes are checked against.

A number out of range is a usage error (exit status 2, naming the option) before any store, file or model is
opened: typer's ``min=``/``max=`` on every numeric option (a float range also refuses ``nan`` and ``inf``).
Versions are at least 1 and at most :data:`MAX_INT`, the largest integer SQLite and PostgreSQL store, so no
version can overflow a query; a version past the head is the store's :class:`~ace.store.VersionNotFound`.
"""

from __future__ import annotations

from typing import Annotated

import typer

MAX_INT = 2**63 - 1  # the largest integer a database column holds: a larger version or count names nothing
MAX_REPLY_TOKENS = 1 << 20  # a reply limit above any model's context


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
VersionOpt = Annotated[
    int | None, typer.Option("--version", "-v", min=1, max=MAX_INT, help="Version to read (default: head).")
]
BudgetOpt = Annotated[
    int | None, typer.Option("--budget", min=0, max=MAX_INT, help="Token budget: keep the most useful bullets.")
]
ReplyTokensOpt = Annotated[
    int, typer.Option("--max-tokens", min=16, max=MAX_REPLY_TOKENS, help="Token limit of each LLM reply.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one document on stdout) instead of a table.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, max=MAX_INT, help="Print at most this many.")]
