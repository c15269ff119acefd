"""Task files: the ACE paper's finance JSONL (Formula, FiNER) and a generic JSONL of questions and answers."""

from __future__ import annotations

import json
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
    for n, line in enumerate(read_input(p, what="task file").splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise InputFileError(f"{p}, line {n}: expected {expected} ({e})") from None


def load_tasks(path: str | Path, *, limit: int | None = None) -> list[Task]:
    """Tasks from a generic JSONL file: ``{"input" | "question": ..., "target" | "answer": ..., "id": ...}`` per
    line (``id`` defaults to ``<file stem>:<line>``; the target may be absent). Optional: ``replaces`` (the value
    the target replaced: the fact changed) and ``feedback`` (what the environment adds when the answer is wrong),
    both kept in the task's metadata for the evaluator."""
    p = Path(path)
    tasks = []
    for n, row in _rows(p, "{'input': ..., 'target': ...}"):
        try:
            text = row["input"] if "input" in row else row["question"]
            target = row.get("target", row.get("answer"))
            extra = {k: str(row[k]) for k in ("replaces", "feedback") if row.get(k) not in (None, "")}
            tasks.append(
                Task(
                    id=str(row.get("id") or f"{p.stem}:{n}"),
                    input=str(text),
                    target=None if target is None else str(target),
                    metadata=extra,
                )
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise InputFileError(f"{p}, line {n}: expected {{'input': ..., 'target': ...}} ({e!r})") from None
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


__all__ = ["load_finance", "load_tasks"]
