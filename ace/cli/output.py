"""The CLI's one output layer: the consoles, the handler that turns every expected failure into one line, and
the printers the command groups share.

Nothing printed here is read as markup (:mod:`ace.app.console`): names, bullets, messages and errors come from
users, files and models. Every command runs under :func:`errors`, installed by :class:`AceTyper`: an
:class:`~ace.errors.AceError`, a file or database error is one line on stderr and exit status 1; a usage error
(an option out of its range, :class:`typer.BadParameter` raised by a command) is typer's, exit status 2; anything
else is a bug, reported in one line too, with its traceback when ``ACE_DEBUG=1``.
"""

from __future__ import annotations

import functools
import json
import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from ace.app.console import line, make_console, safe
from ace.errors import AceError
from ace.errors import read_input as errors_read_input
from ace.playbook import ApplyPolicy
from ace.playbook.diff import PlaybookDiff
from ace.store import PlaybookStore, VersionInfo
from ace.store.engine import hide_secrets

if TYPE_CHECKING:
    from ace.loop import StepRecord

# soft_wrap: a long path or message is never broken across lines (tables still fit the terminal)
out = make_console(soft_wrap=True)
err = make_console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
# typer.BadParameter's bases: ClickException, from typer's vendored click (recent typer) or from click (older)
_USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException" or c is typer.TyperException
)


def fail(message: object, *, label: str = "error") -> None:
    """One line on stderr: ``error: <message>``, with the password of any database URL opened taken out (a driver's
    message may repeat part of it: :func:`ace.store.engine.hide_secrets`)."""
    err.print(line((f"{label}: ", "bold red"), hide_secrets(str(message))))


@contextmanager
def errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and exit status 1 (see the module doc)."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except _USAGE_ERRORS:  # typer.BadParameter from a command: typer shows it as any usage error, exit status 2
        raise
    except AceError as e:
        fail(e)
        raise typer.Exit(1) from None
    except (OSError, UnicodeError) as e:
        fail(e)
        raise typer.Exit(1) from None
    except SQLAlchemyError as e:
        fail(f"database: {str(e).splitlines()[0]}")
        raise typer.Exit(1) from None
    except Exception as e:  # a bug: say so in one line, and show where with ACE_DEBUG=1
        if os.environ.get("ACE_DEBUG"):
            err.print(safe(traceback.format_exc()))
        fail(f"{type(e).__name__}: {e} (a bug in ace; set ACE_DEBUG=1 for the traceback)", label="internal error")
        raise typer.Exit(1) from None


class AceTyper(typer.Typer):
    """A Typer app whose every command runs under :func:`errors`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            @functools.wraps(fn)
            def guarded(*a: Any, **kw: Any) -> Any:
                with errors():
                    return fn(*a, **kw)

            register(guarded)
            return fn

        return decorator


MAX_INPUT_BYTES = 64 * 1024 * 1024  # a playbook, delta or probe file read whole: the bound load_json applies


def read_input(path: Path, *, what: str = "file", limit: int = MAX_INPUT_BYTES) -> str:
    """:func:`ace.errors.read_input` with the bound of a playbook, delta or probe file (64 MiB)."""
    return errors_read_input(path, what=what, limit=limit)


def open_store(db: str | None, *, policy: ApplyPolicy | None = None) -> PlaybookStore:
    """The store a command works on; what it commits is judged by the injection probe too when the local model is
    installed (:func:`ace.llm.injection_probe.with_probe`; ``ACE_INJECTION_PROBE=off`` switches it off)."""
    from ace.llm.injection_probe import with_probe

    return PlaybookStore(db, policy=with_probe(policy))


def print_step(r: StepRecord, *, rounds: bool = False, feedback: bool = False) -> None:
    """One line per finished loop step: outcome, task, (rounds, what the environment said), version or failure."""
    mark = {True: ("✓", "green"), False: ("✗", "red"), None: ("?", "yellow")}[r.correct]
    tail = f" · failed: {r.error[:100]}" if r.error else f" · v{r.version}" if r.committed else ""
    said = f" · rounds {r.rounds}" if rounds else ""
    said += f" · {r.feedback}" if feedback and r.feedback else ""
    out.print(line("  ", mark, f" {r.task_id}{said}{tail}"))


def ops_summary(info: VersionInfo) -> str:
    if info.delta is None:
        return info.kind
    counts = Counter(op.type for op in info.delta.operations)
    return " ".join(f"{k}×{v}" for k, v in counts.items()) or "(empty)"


def print_json(data: object) -> None:
    """One JSON document on stdout (``--json``): plain ``print``, never Rich, so no markup, colour or wrapping."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def print_text(text: str) -> None:
    """Playbook text, verbatim (it is what a prompt or a file gets)."""
    typer.echo(text, nl=not text.endswith("\n"))


def print_diff(d: PlaybookDiff) -> None:
    if d.empty:
        out.print("no differences")
        return
    for b in d.added:
        out.print(line((f"+ [{b.id}] ({b.section}) {b.content}", "green")))
    for b in d.removed:
        out.print(line((f"- [{b.id}] ({b.section}) {b.content}", "red")))
    for c in d.changed:
        parts = []
        for f in c.fields:
            before, after = getattr(c.before, f), getattr(c.after, f)
            parts.append(f"{f}: {before!r} → {after!r}" if f in ("content", "section") else f"{f} {before}→{after}")
        out.print(line((f"~ [{c.after.id}] " + "; ".join(parts), "yellow")))
    out.print(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")
