"""``ace ui``: the console (:mod:`ace.service.console`) on the embedded default, with one admin token."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from ace.cli.options import DbOpt
from ace.llm.injection_probe import with_probe
from ace.service.auth import Tokens
from ace.store import PlaybookStore
from ace.store.engine import shown_url

UI_TOKEN_ENV = "ACE_UI_TOKEN"


def ui(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=UI_TOKEN_ENV,
            show_envvar=True,
            help="The admin token to sign in with (at least 16 characters); default: a new random one, printed.",
        ),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the sign-in page in a web browser.")
    ] = False,
) -> None:
    """Browse, review and explain the store's playbooks in a browser: serves the HTTP service with its console at
    /ui (the store, SQLite under ~/.local/share/ace unless --db says, on 127.0.0.1) with one admin token for every
    namespace, and prints the address and the token to sign in with. `ace serve` serves the same console behind
    its tokens file."""
    from ace.app.console_report import report_html
    from ace.service import server as uv
    from ace.service.app import create_app

    secret = token or secrets.token_urlsafe(24)
    table = Tokens.parse({"tokens": {secret: {"name": "console", "namespaces": ["*"], "role": "admin"}}},
                         where="ace ui --token")  # fmt: skip
    store = PlaybookStore(db, policy=with_probe())
    url = f"http://{_host(host)}:{port}/ui/"
    # plain lines (no wrapping): the address and the token are copied from here
    typer.echo(f"ace ui: the console of {shown_url(store.url)} at {url}")
    if token is None:
        typer.echo(f"admin token (a new one at each start; keep one with --token or ${UI_TOKEN_ENV}): {secret}")
    else:
        typer.echo(f"sign in with the token given (--token or ${UI_TOKEN_ENV})")
    if open_browser:
        import webbrowser

        webbrowser.open(url + "login")
    uv.run(create_app(store, table, run_report=report_html), host=host, port=port, log_level="warning")


def _host(host: str) -> str:
    """How a browser names ``host``: any address is reached on loopback; an IPv6 address in brackets."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
