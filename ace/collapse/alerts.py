"""The collapse detectors' alerts: what a detector found, how bad it is, the versions, bullets and facts it is about,
and the evidence (JSON-ready with :meth:`Alert.to_dict`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY = {"info": 0, "warning": 1, "critical": 2}


MAX_LISTED = 100  # ids and facts listed in an alert's JSON (the counts say how many there were)


@dataclass(frozen=True)
class Alert:
    detector: str
    severity: Severity
    message: str
    versions: tuple[int | None, int | None]  # (before, after)
    evidence: dict[str, Any] = field(default_factory=dict)
    ids: tuple[str, ...] = ()  # the bullets it is about
    facts: tuple[str, ...] = ()  # the facts it is about (``kind:value``, :mod:`ace.collapse.facts`)

    def at_least(self, severity: Severity) -> bool:
        return SEVERITY[self.severity] >= SEVERITY[severity]

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data: detector, severity, message, versions, bullet ids, facts and evidence
        (texts in the evidence cut to 500 characters)."""
        return {"versions": list(self.span), "detector": self.detector, "severity": self.severity,
                "message": self.message, "ids": list(self.ids[:MAX_LISTED]), "facts": list(self.facts[:MAX_LISTED]),
                **({"more": {"ids": len(self.ids), "facts": len(self.facts)}}
                   if max(len(self.ids), len(self.facts)) > MAX_LISTED else {}),
                "evidence": _plain(self.evidence)}  # fmt: skip

    @property
    def span(self) -> tuple[int | None, int | None]:
        """``(before, after)``, an alert on a first version (an import: nothing before it) as ``(v, v)``."""
        before, after = self.versions
        return (after, after) if before is None else (before, after)

    def shown(self) -> str:
        """``v3 → v4``, or ``v1`` for an alert on a first version."""
        before, after = self.versions
        return f"v{after}" if before is None or before == after else f"v{before} → v{after}"

    def key(self) -> tuple[Any, ...]:
        """What tells two alerts apart (for comparing the guard's, the CLI's and the service's)."""
        return (self.detector, self.severity, self.versions, self.ids, self.facts)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: texts cut to 500 characters, tuples and sets as lists."""
    if isinstance(value, str):
        return value if len(value) <= 500 else value[:500] + "…"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _alert(
    detector: str,
    severity: Severity,
    message: str,
    versions: tuple[int | None, int | None],
    evidence: dict[str, Any],
    *,
    ids: Iterable[str] = (),
    facts: Iterable[str] = (),
) -> Alert:
    return Alert(detector, severity, message, versions, evidence, tuple(ids), tuple(facts))


__all__ = ["SEVERITY", "Alert", "Severity"]
