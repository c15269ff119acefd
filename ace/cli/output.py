"""The CLI's one output layer: the consoles, the handler that turns every expected failure into one line, and
the printers the command groups share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from ace.errors import AceError
from ace.loop import StepRecord
from ace.playbook.diff import PlaybookDiff
from ace.store import PlaybookStore, VersionInfo

# soft_wrap: a long path or message is never broken across lines (tables still fit the terminal)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


@contextmanager
def errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and exit status 1."""
    try:
        yield
    except AceError as e:
        err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (OSError, UnicodeDecodeError) as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as e:
        err.print(f"[bold red]error:[/] database: {str(e).splitlines()[0]}", soft_wrap=True)
        raise typer.Exit(1) from None


def open_store(db: str | None) -> PlaybookStore:
    return PlaybookStore(db)


def print_step(r: StepRecord, *, rounds: bool = False, feedback: bool = False) -> None:
    """One line per finished loop step: outcome, task, (rounds, what the environment said), version or failure."""
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]?[/]"}[r.correct]
    tail = f" · failed: {r.error[:100]}" if r.error else f" · v{r.version}" if r.committed else ""
    said = f" · rounds {r.rounds}" if rounds else ""
    said += f" · {r.feedback}" if feedback and r.feedback else ""
    out.print(f"  {mark} {r.task_id}{said}{tail}", highlight=False)


def ops_summary(info: VersionInfo) -> str:
    if info.delta is None:
        return info.kind
    counts = Counter(op.type for op in info.delta.operations)
    return " ".join(f"{k}×{v}" for k, v in counts.items()) or "(empty)"


def print_text(text: str) -> None:
    # Playbook text holds [ids] that Rich would read as markup: print it verbatim.
    typer.echo(text, nl=not text.endswith("\n"))


def print_diff(d: PlaybookDiff) -> None:
    if d.empty:
        out.print("no differences")
        return
    for b in d.added:
        out.print(f"+ [{b.id}] ({b.section}) {b.content}", style="green", markup=False)
    for b in d.removed:
        out.print(f"- [{b.id}] ({b.section}) {b.content}", style="red", markup=False)
    for c in d.changed:
        parts = []
        for f in c.fields:
            before, after = getattr(c.before, f), getattr(c.after, f)
            parts.append(f"{f}: {before!r} → {after!r}" if f in ("content", "section") else f"{f} {before}→{after}")
        out.print(f"~ [{c.after.id}] " + "; ".join(parts), style="yellow", markup=False)
    out.print(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")
