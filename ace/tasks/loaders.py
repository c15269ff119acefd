"""Task files: the ACE paper's finance JSONL (Formula, FiNER) and a generic JSONL of questions and answers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ace.errors import InputFileError, read_input
from ace.tasks.evaluators import FinanceKind
from ace.tasks.model import Task


def load_finance(path: str | Path, kind: FinanceKind | None = None, *, limit: int | None = None) -> list[Task]:
    """Tasks from the paper's finance JSONL (``{"context": ..., "target": ...}`` per line); any path accepted.

    ``kind`` defaults from the file name (``finer`` in it, else ``formula``).
    """
    p = Path(path)
    kind = kind or ("finer" if "finer" in p.name.lower() else "formula")
    tasks = []
    for n, row in _rows(p, "{'context': ..., 'target': ...}"):
        try:
            tasks.append(
                Task(id=f"{p.stem}:{n}", input=row["context"], target=str(row["target"]), metadata={"kind": kind})
            )
        except (KeyError, TypeError) as e:
            raise InputFileError(f"{p}, line {n}: expected {{'context': ..., 'target': ...}} ({e!r})") from None
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def _rows(p: Path, expected: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line of a JSONL file."""
    # lines end at "\n" only: str.splitlines() would also split at U+2028 / U+2029, which JSON allows raw in a string
    for n, line in enumerate(read_input(p, what="task file").split("\n"), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise InputFileError(f"{p}, line {n}: expected {expected} ({e})") from None


def load_tasks(path: str | Path, *, limit: int | None = None) -> list[Task]:
    """Tasks from a generic JSONL file: ``{"input" | "question": ..., "target" | "answer": ..., "id": ...}`` per
    line (``id`` defaults to ``<file stem>:<line>``, and names one task; the target may be absent: no ground truth).
    Optional: ``replaces`` (the value the target replaced: the fact changed) and ``feedback`` (what the environment
    adds when the answer is wrong), both kept in the task's metadata for the evaluator. Each field is a string or a
    number (written as JSON writes it); an empty one, a list, an object, a boolean, a NUL character, an id used
    twice or a ``replaces`` equal to the target is refused with the file and line."""
    p = Path(path)
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for n, row in _rows(p, "{'input': ..., 'target': ...}"):
        where = f"{p}, line {n}"
        if not isinstance(row, dict):
            raise InputFileError(f"{where}: expected {{'input': ..., 'target': ...}}, not {type(row).__name__}")
        if "input" not in row and "question" not in row:
            raise InputFileError(f"{where}: no 'input' (the question): expected {{'input': ..., 'target': ...}}")
        text = _text(row.get("input", row.get("question")), where, "input")
        target = row.get("target", row.get("answer"))
        target = None if target is None else _text(target, where, "target")
        extra = {k: _text(row[k], where, k) for k in ("replaces", "feedback") if row.get(k) not in (None, "")}
        if target is not None and extra.get("replaces", "").strip().casefold() == target.strip().casefold():
            raise InputFileError(f"{where}: 'replaces' is the target itself ({target!r}): it names the old value")
        task_id = _text(row["id"], where, "id") if row.get("id") not in (None, "") else f"{p.stem}:{n}"
        if task_id in seen:
            raise InputFileError(f"{where}: id {task_id!r} is the id of line {seen[task_id]} too (ids name one task)")
        seen[task_id] = n
        tasks.append(Task(id=task_id, input=text, target=target, metadata=extra))
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def _text(value: Any, where: str, field: str) -> str:
    """A row's field as text: a string, or a number written as JSON writes it (``4.50`` is ``4.5``); a list, an
    object, a boolean, an empty string, a NUL character, a lone surrogate ("\\ud800", which no file or prompt can
    hold) or a number that is not finite (NaN, 1e999) is refused with the file and line."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputFileError(f"{where}: {field!r} must be a string or a number, not {json.dumps(value)[:60]}")
    if isinstance(value, float) and not math.isfinite(value):  # NaN (not JSON), or 1e999 read as infinity
        raise InputFileError(f"{where}: {field!r} is not a finite number ({value})")
    text = value if isinstance(value, str) else json.dumps(value)
    if not text.strip():
        raise InputFileError(f"{where}: {field!r} is empty")
    if "\x00" in text:
        raise InputFileError(f"{where}: {field!r} contains a NUL character (U+0000)")
    if bad := next((c for c in text if 0xD800 <= ord(c) <= 0xDFFF), None):  # "\ud800" alone: no UTF-8 for it
        raise InputFileError(f"{where}: {field!r} contains a lone surrogate (U+{ord(bad):04X}), not a character")
    return text


__all__ = ["load_finance", "load_tasks"]
