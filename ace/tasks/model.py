"""The ``Task`` an agent answers, the ``Feedback`` an evaluator gives, and accuracy over results."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class Feedback(BaseModel):
    """What the environment says about an answer. ``correct`` is None when there is no ground truth to judge by."""

    correct: bool | None
    score: float | None = None
    message: str = ""
    target: str | None = None
    # a knowledge update: the value the target replaces (the environment says the fact changed, and from what)
    replaces: str | None = None


class Task(BaseModel):
    """One item of a task stream."""

    id: str
    input: str
    target: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


# (task, answer) -> feedback. Any callable will do; one that also has a ``spec`` (:class:`Rebuildable`) can be
# rebuilt by name when a recorded run is re-executed.
Evaluator = Callable[[Task, str], Feedback]


@runtime_checkable
class Rebuildable(Protocol):
    """An evaluator or generator that says how to build it again: ``spec`` is ``{"name": ..., **parameters}``,
    a name registered in :mod:`ace.loop.registry`."""

    @property
    def spec(self) -> dict[str, Any]: ...


class Judged(Protocol):
    """Anything with a verdict: a step record, a prediction (``correct`` is None when there was nothing to judge)."""

    @property
    def correct(self) -> bool | None: ...


def share_correct(records: Iterable[Judged]) -> float | None:
    """Accuracy over records with a ``correct`` verdict; records without one don't count."""
    return share_of(r.correct for r in records)


def share_of(verdicts: Iterable[bool | None]) -> float | None:
    """The share of True among the verdicts that are not None (None: no verdict at all)."""
    judged = [v for v in verdicts if v is not None]
    return sum(judged) / len(judged) if judged else None


def accuracy(feedback: Iterable[Feedback]) -> float | None:
    return share_correct(feedback)


__all__ = ["Evaluator", "Feedback", "Judged", "Rebuildable", "Task", "accuracy", "share_correct", "share_of"]
