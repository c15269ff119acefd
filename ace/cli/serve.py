"""``ace serve``: the HTTP service over the store (:mod:`ace.service`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ace.cli.options import DbOpt
from ace.cli.output import out
from ace.service.auth import TOKEN_ENV, Tokens
from ace.store import PlaybookStore


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    tokens: Annotated[
        Path | None, typer.Option(help=f"Tokens file (JSON or TOML); default: ${TOKEN_ENV}.", dir_okay=False)
    ] = None,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body accepted, in bytes.")] = 1 << 20,
) -> None:
    """Serve playbooks over HTTP: read (rendered under a budget, or as JSON), apply deltas with If-Match, history
    and diff, each request checked against a bearer token's namespaces and role. OpenAPI docs at /docs."""
    import uvicorn

    from ace.service.app import create_app  # FastAPI loads only when serving

    table = Tokens.load(tokens)
    store = PlaybookStore(db)
    out.print(f"ace serve: {store.url} on http://{host}:{port} ({len(table)} token(s)); docs at /docs")
    uvicorn.run(create_app(store, table, max_body_bytes=max_body), host=host, port=port, log_level="warning")
