"""Evaluators with ground truth: numeric (Formula), exact match, FiNER tags.

- **numeric** (Formula): the first number in the answer (``$1,234.5``, ``12.5%`` and ``-0.2`` all parse) is correct
  when it is within ``abs_tol`` (default 0.01, the Formula prompt asks for two decimals) of the target.
- **exact**: whitespace- and case-insensitive string equality.
- **tags** (FiNER): answer and target are comma-separated US-GAAP tags, one per sub-question (four per line in the
  paper's batched file); the score is the share of positions that match and the task is correct when all do.

Each is an object with a ``spec`` (:class:`~ace.tasks.model.Rebuildable`), so a recorded run names how it was
scored and a re-execution scores the same way.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from ace.tasks.model import Evaluator, Feedback, Task

_NUMBER = re.compile(r"-?\(?\$?\s*-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


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


class Numeric:
    """Correct when the first number of the answer is within ``abs_tol`` (or ``rel_tol`` of the target)."""

    def __init__(self, abs_tol: float = 0.01, rel_tol: float = 0.0) -> None:
        self.abs_tol, self.rel_tol = abs_tol, rel_tol

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "numeric", "abs_tol": self.abs_tol, "rel_tol": self.rel_tol}

    def __call__(self, task: Task, answer: str) -> Feedback:
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
        ok = abs(value - target) <= max(self.abs_tol, self.rel_tol * abs(target)) + 1e-12
        return Feedback(
            correct=ok,
            score=1.0 if ok else 0.0,
            target=task.target,
            message="correct" if ok else f"answered {value:g}, expected {target:g}",
        )


def numeric(abs_tol: float = 0.01, rel_tol: float = 0.0) -> Numeric:
    return Numeric(abs_tol, rel_tol)


class Exact:
    """Whitespace- and case-insensitive equality with the target."""

    spec: dict[str, Any] = {"name": "exact"}  # noqa: RUF012 - read-only by convention

    def __call__(self, task: Task, answer: str) -> Feedback:
        if task.target is None:
            return Feedback(correct=None, message="no ground truth")
        ok = " ".join(answer.split()).lower() == " ".join(task.target.split()).lower()
        replaces = task.metadata.get("replaces") or None
        message = "correct" if ok else f"expected {task.target!r}"
        if replaces and not ok:  # the fact changed: say so, and from what, as a system that changed it would
            message += f" (it replaces {replaces!r})"
        if (note := task.metadata.get("feedback")) and not ok:
            message += f"; {note}"
        return Feedback(correct=ok, score=float(ok), target=task.target, message=message, replaces=replaces)


class Tags:
    """FiNER: comma-separated tags compared position by position."""

    spec: dict[str, Any] = {"name": "tags"}  # noqa: RUF012 - read-only by convention

    def __call__(self, task: Task, answer: str) -> Feedback:
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


exact = Exact()
tags = Tags()

FinanceKind = Literal["formula", "finer"]
EVALUATORS: dict[str, Evaluator] = {"formula": numeric(), "finer": tags}

__all__ = ["EVALUATORS", "Exact", "FinanceKind", "Numeric", "Tags", "exact", "numeric", "parse_number", "tags"]
