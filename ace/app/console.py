"""How runs and the CLI write to a terminal: never reading text from a user, a file or a model as markup.

Consoles made here have Rich markup, emoji codes and highlighting off, so ``[/]``, ``[date]`` or ``:smile:`` in a
bullet, a name or an error message print as they are. Styles are given explicitly (:func:`line`: plain strings
and ``(text, style)`` pairs), and :func:`safe` shows any character that would act on the terminal (escape
sequences, bidi overrides, zero-width and line-separator characters) as a visible escape instead.
"""

from __future__ import annotations

import unicodedata
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def safe(value: object, *, newlines: bool = True) -> str:
    """``value`` as text that prints as it reads: unprintable characters shown as ``\\xNN`` / ``\\uNNNN`` (tabs
    kept; newlines kept unless ``newlines=False``, e.g. in a table cell)."""
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\t" or (ch == "\n" and newlines) or unicodedata.category(ch) not in _UNPRINTABLE:
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def line(*parts: str | tuple[str, str]) -> Text:
    """One styled line from plain strings and ``(text, style)`` pairs; every part goes through :func:`safe`."""
    return Text.assemble(*((safe(p[0]), p[1]) if isinstance(p, tuple) else safe(p) for p in parts))


def cell(value: object) -> Text:
    """A table cell: one line of safe text that folds rather than stretching the table."""
    return Text(safe("" if value is None else value, newlines=False), overflow="fold")


def table(*columns: str, **kwargs: Any) -> Table:
    """A table whose columns fold long values, so it stays readable at 80 columns: short columns (numbers,
    times, digests) keep their width, the text columns take what is left."""
    t = Table(**kwargs)
    for name in columns:
        short = name in SHORT_COLUMNS
        t.add_column(name, overflow="fold", no_wrap=short, ratio=None if short else 1)
    return t


# columns whose values are short and never worth breaking
SHORT_COLUMNS = frozenset({"v", "version", "head", "bullets", "step", "op", "when (UTC)", "created (UTC)", "digest"})


class SafeConsole(Console):
    """A console that interprets nothing it prints: no markup, no emoji codes, no highlighting, and every plain
    string shown through :func:`safe`."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(line(o) if isinstance(o, str) else o for o in objects), **kwargs)


def make_console(*, stderr: bool = False, file: IO[str] | None = None, **kwargs: Any) -> Console:
    """A :class:`SafeConsole`."""
    return SafeConsole(markup=False, emoji=False, highlight=False, stderr=stderr, file=file, **kwargs)


__all__ = ["SafeConsole", "add_row", "cell", "line", "make_console", "safe", "table"]


def add_row(t: Table, *values: object) -> None:
    """A row of :func:`cell` s (a value that is already a ``Text`` keeps its style)."""
    t.add_row(*(v if isinstance(v, Text) else cell(v) for v in values))
