"""Differences between two playbooks: bullets added, removed, and changed (content, section or counters)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def diff(old: Playbook, new: Playbook) -> PlaybookDiff:
    """What changed from ``old`` to ``new``, each list in the order the bullets render."""
    before, after = old.bullets_by_id, new.bullets_by_id
    added = [b for b in new if b.id not in before]
    removed = [b for b in old if b.id not in after]
    changed = []
    for b in new:
        a = before.get(b.id)
        if a is not None and a is not b:
            fields = tuple(f for f in _COMPARED if getattr(a, f) != getattr(b, f))
            if fields:
                changed.append(BulletChange(a, b, fields))
    return PlaybookDiff(added, removed, changed)
