"""The ``ace`` command (Typer + Rich), one module per command group:

- :mod:`~ace.cli.playbook`: ``ace playbook import|show|history|diff|apply|rollback|export|blame|list|verify|dedup|
  check|trajectory``, with :mod:`~ace.cli.gate`'s ``ace playbook lane|trial`` (gated promotion);
- :mod:`~ace.cli.runs`: ``ace demo``, ``ace run``, ``ace learn``, ``ace replay``, ``ace report``;
- :mod:`~ace.cli.textworld`: ``ace textworld make|play|export``;
- :mod:`~ace.cli.db`: ``ace db status|upgrade``;
- :mod:`~ace.cli.memory`: ``ace memory episodes|facts``;
- :mod:`~ace.cli.review`: ``ace review list|show|approve|reject|policy``;
- :mod:`~ace.cli.tour`: ``ace tour``;
- :mod:`~ace.cli.sync`: ``ace sync`` (a playbook's block in AGENTS.md / CLAUDE.md) and the files of ``ace playbook
  export|import --format skill|agents-md``;
- :mod:`~ace.cli.serve`: ``ace serve`` (the HTTP service, :mod:`ace.service`), ``ace worker`` and ``ace mcp``;
- :mod:`~ace.cli.ui`: ``ace ui`` (the console, :mod:`ace.service.console`, on the embedded default).

Every store command takes ``--db URL`` (default: ``$ACE_DB``, else SQLite at ``~/.local/share/ace/ace.db``) and
``--namespace``; ``ace --version`` prints the installed package's version. Errors are one line on stderr and exit
status 1; an option out of its range is a usage error, exit status 2 (:mod:`~ace.cli.output`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ace.cli import db, gate, memory, playbook, review, runs, serve, sync, textworld, tour, ui
from ace.cli.output import AceTyper

app = AceTyper(
    help="ACE: playbooks that evolve by small, versioned deltas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"ace {version('ace')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("ace (version unknown: the package is not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    otel: Annotated[
        bool,
        typer.Option(
            "--otel",
            help="Send traces and metrics over OpenTelemetry (OTLP, where the OTEL_* variables say; default "
            "http://localhost:4318); also on when OTEL_EXPORTER_OTLP_ENDPOINT or ACE_OTEL=1 is set.",
        ),
    ] = False,
) -> None:
    """ACE: playbooks that evolve by small, versioned deltas."""
    if otel:
        _otel()


def _otel() -> None:
    """``--otel``: telemetry on in this process and in those it starts (workers)."""
    import os

    from ace.cli.output import err
    from ace.telemetry import SWITCH, enable

    os.environ[SWITCH] = "1"
    if not enable():
        err.print("note: --otel needs OpenTelemetry: pip install 'ace[otel]'; telemetry is off")


playbook.app.command()(gate.lane)
playbook.app.command()(gate.trial)
app.add_typer(playbook.app, name="playbook")
app.add_typer(review.app, name="review")
app.add_typer(textworld.app, name="textworld")
app.add_typer(db.app, name="db")
app.add_typer(memory.app, name="memory")
app.registered_commands.extend(runs.app.registered_commands)
app.command()(tour.tour)
app.command()(sync.sync)
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(serve.mcp)
app.command()(ui.ui)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
