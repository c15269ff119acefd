"""Differences between two playbooks: bullets added, removed, and changed (content, section or counters)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ace.playbook.model import Bullet, Playbook

_COMPARED = ("section", "content", "helpful", "harmful", "neutral")


@dataclass(frozen=True, slots=True)
class BulletChange:
    before: Bullet
    after: Bullet
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlaybookDiff:
    added: list[Bullet] = field(default_factory=list)
    removed: list[Bullet] = field(default_factory=list)
    changed: list[BulletChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def touched_ids(self) -> list[str]:
        return [b.id for b in self.added] + [b.id for b in self.removed] + [c.after.id for c in self.changed]

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON-ready data (what ``GET .../diff`` and ``ace playbook diff --json`` print)."""
        return {
            "added": [b.to_dict() for b in self.added],
            "removed": [b.to_dict() for b in self.removed],
            "changed": [{"id": c.after.id, "fields": list(c.fields), "after": c.after.to_dict()} for c in self.changed],
        }


def diff(old: Playbook, new: Playbook, *, touched: Iterable[str] | None = None) -> PlaybookDiff:
    """What changed from ``old`` to ``new``, each list in the order the bullets render.

    When ``new`` was applied from ``old`` (:meth:`Playbook.touched_since`), or the caller passes ``touched`` (every id
    the deltas between them put or removed, e.g. from their :class:`~ace.playbook.delta.Patch` es), only those
    bullets are compared: O(delta); otherwise every bullet is.
    """
    before, after = old.bullets_by_id, new.bullets_by_id
    touched = set(touched) if touched is not None else new.touched_since(old)
    if touched is not None:
        added = _in_order(new, [i for i in touched if i in after and i not in before])
        removed = _in_order(old, [i for i in touched if i in before and i not in after])
        candidates = _in_order(new, [i for i in touched if i in after and i in before])
    else:
        added = [b for b in new if b.id not in before]
        removed = [b for b in old if b.id not in after]
        candidates = list(new)
    changed = []
    for b in candidates:
        a = before.get(b.id)
        if a is not None and a is not b:
            fields = tuple(f for f in _COMPARED if getattr(a, f) != getattr(b, f))
            if fields:
                changed.append(BulletChange(a, b, fields))
    return PlaybookDiff(added, removed, changed)


def _in_order(pb: Playbook, ids: list[str]) -> list[Bullet]:
    """The bullets ``ids`` of ``pb`` in render order, without walking the playbook."""
    rank = {name: n for n, name in enumerate(pb.sections)}
    bullets = [pb[i] for i in ids]
    return sorted(bullets, key=lambda b: (rank[b.section], pb.sections[b.section].position(b.id)))
