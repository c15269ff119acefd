"""Tasks and their evaluation: the ``Task`` an agent answers, the ``Feedback`` an evaluator gives, and loaders for
the ACE paper's finance benchmarks (Formula, FiNER).

A task may carry ground truth (``target``) or not; an evaluator turns an answer into feedback either way (without
ground truth it can still report execution feedback, e.g. "not a number"). Scoring rules used here:

- **numeric** (Formula): the first number in the answer (``$1,234.5``, ``12.5%`` and ``-0.2`` all parse) is correct
  when it is within ``abs_tol`` (default 0.01, the Formula prompt asks for two decimals) of the target.
- **exact**: whitespace- and case-insensitive string equality.
- **tags** (FiNER): answer and target are comma-separated US-GAAP tags, one per sub-question (four per line in the
  paper's batched file); the score is the share of positions that match and the task is correct when all do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

_NUMBER = re.compile(r"-?\(?\$?\s*-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


class Feedback(BaseModel):
    """What the environment says about an answer. ``correct`` is None when there is no ground truth to judge by."""

    correct: bool | None
    score: float | None = None
    message: str = ""
    target: str | None = None


class Task(BaseModel):
    """One item of a task stream."""

    id: str
    input: str
    target: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


Evaluator = Callable[[Task, str], Feedback]


def parse_number(text: str) -> float | None:
    """The first number in ``text``: thousands separators, $, % and (negative) parentheses handled."""
    m = _NUMBER.search(text)
    if not m:
        return None
    raw = m.group(0)
    negative = raw.startswith("-") or raw.startswith("(")
    digits = raw.replace("$", "").replace(",", "").replace("(", "").replace("-", "").strip()
    try:
        value = float(digits)
    except ValueError:
        return None
    return -value if negative else value


def numeric(abs_tol: float = 0.01, rel_tol: float = 0.0) -> Evaluator:
    def evaluate(task: Task, answer: str) -> Feedback:
        value = parse_number(answer)
        if value is None:
            return Feedback(
                correct=False if task.target is not None else None,
                score=0.0,
                message=f"the answer {answer.strip()[:80]!r} contains no number",
                target=task.target,
            )
        if task.target is None:
            return Feedback(correct=None, message=f"answered {value:g}")
        target = float(task.target)
        ok = abs(value - target) <= max(abs_tol, rel_tol * abs(target)) + 1e-12
        return Feedback(
            correct=ok,
            score=1.0 if ok else 0.0,
            target=task.target,
            message="correct" if ok else f"answered {value:g}, expected {target:g}",
        )

    evaluate.spec = {"name": "numeric", "abs_tol": abs_tol, "rel_tol": rel_tol}  # type: ignore[attr-defined]
    return evaluate


def exact(task: Task, answer: str) -> Feedback:
    if task.target is None:
        return Feedback(correct=None, message="no ground truth")
    ok = " ".join(answer.split()).lower() == " ".join(task.target.split()).lower()
    return Feedback(
        correct=ok, score=float(ok), target=task.target, message="correct" if ok else f"expected {task.target!r}"
    )


def tags(task: Task, answer: str) -> Feedback:
    if task.target is None:
        return Feedback(correct=None, message="no ground truth")
    want = [t.strip() for t in task.target.split(",")]
    got = [t.strip() for t in answer.split(",")]
    hits = sum(1 for i, t in enumerate(want) if i < len(got) and got[i] == t)
    wrong = [
        f"#{i + 1}: expected {t}, got {got[i] if i < len(got) else 'nothing'}"
        for i, t in enumerate(want)
        if i >= len(got) or got[i] != t
    ]
    return Feedback(
        correct=hits == len(want),
        score=hits / len(want),
        target=task.target,
        message="correct" if not wrong else "; ".join(wrong),
    )


exact.spec = {"name": "exact"}  # type: ignore[attr-defined]
tags.spec = {"name": "tags"}  # type: ignore[attr-defined]

FinanceKind = Literal["formula", "finer"]
EVALUATORS: dict[FinanceKind, Evaluator] = {"formula": numeric(), "finer": tags}


def evaluator_spec(evaluator: Evaluator) -> dict[str, Any] | None:
    """How to rebuild ``evaluator`` (its ``spec`` attribute: a name and parameters), or None for one of your own.
    Trajectories record it so that ``ace replay --provider`` can score a re-executed run the same way."""
    spec = getattr(evaluator, "spec", None)
    return dict(spec) if isinstance(spec, dict) else None


def evaluator_from_spec(spec: dict[str, Any]) -> Evaluator:
    """The evaluator an :func:`evaluator_spec` describes: ``numeric``, ``exact``, ``tags``, ``logged`` (an
    agent log's own outcome, :mod:`ace.logs`) or ``textworld``."""
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name")
    if name == "numeric":
        return numeric(**params)
    if name == "exact":
        return exact
    if name == "tags":
        return tags
    if name == "logged":
        from ace.logs import logged_outcome

        return logged_outcome
    if name == "textworld":
        from ace.envs.textworld import TextWorldEvaluator

        return TextWorldEvaluator(**params)
    raise ValueError(f"unknown evaluator {name!r}; known: numeric, exact, tags, logged, textworld")


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
            raise ValueError(f"{p}, line {n}: expected {{'context': ..., 'target': ...}} ({e!r})") from None
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def _rows(p: Path, expected: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line of a JSONL file."""
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}, line {n}: expected {expected} ({e})") from None


def load_tasks(path: str | Path, *, limit: int | None = None) -> list[Task]:
    """Tasks from a generic JSONL file: ``{"input" | "question": ..., "target" | "answer": ..., "id": ...}`` per
    line (``id`` defaults to ``<file stem>:<line>``; the target may be absent)."""
    p = Path(path)
    tasks = []
    for n, row in _rows(p, "{'input': ..., 'target': ...}"):
        try:
            text = row["input"] if "input" in row else row["question"]
            target = row.get("target", row.get("answer"))
            tasks.append(
                Task(
                    id=str(row.get("id") or f"{p.stem}:{n}"),
                    input=str(text),
                    target=None if target is None else str(target),
                )
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{p}, line {n}: expected {{'input': ..., 'target': ...}} ({e!r})") from None
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def share_correct(records: Iterable[dict[str, Any]]) -> float | None:
    """Accuracy over result records (``{"correct": bool | None, ...}``); records without a verdict don't count."""
    judged = [r["correct"] for r in records if r["correct"] is not None]
    return sum(judged) / len(judged) if judged else None


def accuracy(feedback: Iterable[Feedback]) -> float | None:
    judged = [f for f in feedback if f.correct is not None]
    return sum(f.correct for f in judged) / len(judged) if judged else None  # type: ignore[misc]
