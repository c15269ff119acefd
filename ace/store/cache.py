"""The last state a store saw of each playbook, kept in memory.

A commit from the state the store holds applies the delta to it (no read of the head); a store whose state fell a
few versions behind (another writer moved the head) catches it up by applying only the deltas it missed
(:func:`ace.store.log.rebuild`). Playbooks are immutable, so a held state is shared, never copied.

Reading old versions (a console browsing history, a diff, a pinned channel) rebuilds them from a snapshot plus the
deltas after it; the states met on the way every :data:`ace.store.log.WAYPOINT` versions are kept as *waypoints*
(the most recently used, up to :data:`WAYPOINT_BULLETS` bullets per playbook), so the next old version is rebuilt
from the nearest one below it: a few dozen deltas instead of a snapshot's decoding and up to n/10 deltas.
"""

from __future__ import annotations

from collections import OrderedDict

from ace.playbook.model import Playbook

# rebuilt old versions kept per playbook: as many as hold this many bullets in all (40 at 10k bullets, 2 at least);
# they share their bullet objects, so each costs its id tables (~300 KB at 10k bullets)
WAYPOINT_BULLETS = 400_000


class StateCache:
    """playbook id -> ``(version, state)``, the latest this store saw, and one older version read since (what
    agents read when ``serving`` is pinned behind the head: read again and again, rebuilt each time otherwise);
    ``enabled=False`` keeps nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._held: dict[int, tuple[int, Playbook]] = {}
        self._older: dict[int, tuple[int, Playbook]] = {}
        self._waypoints: dict[int, OrderedDict[int, Playbook]] = {}

    def get(self, pid: int) -> tuple[int, Playbook] | None:
        """``(version, state)`` held for playbook ``pid``, or None."""
        return self._held.get(pid)

    def at(self, pid: int, version: int) -> Playbook | None:
        """The state held for playbook ``pid`` if it is ``version`` (the latest or the older one kept), else None."""
        for held in (self._held.get(pid), self._older.get(pid)):
            if held is not None and held[0] == version:
                return held[1]
        return None

    def nearest(self, pid: int, version: int) -> tuple[int, Playbook] | None:
        """The held state of playbook ``pid`` closest at or below ``version`` (the latest, the older one, or a
        waypoint), or None."""
        best: tuple[int, Playbook] | None = None
        kept: OrderedDict[int, Playbook] = self._waypoints.get(pid, OrderedDict())
        for held in (self._held.get(pid), self._older.get(pid), *kept.items()):
            if held is not None and held[0] <= version and (best is None or held[0] > best[0]):
                best = held
        if best is not None and best[0] in kept:
            kept.move_to_end(best[0])  # used: the last to go
        return best

    def waypoint(self, pid: int, version: int, pb: Playbook) -> None:
        """Keep ``pb`` (version ``version``, checked against its recorded digest) as a waypoint of ``pid``."""
        if not self.enabled:
            return
        kept = self._waypoints.setdefault(pid, OrderedDict())
        kept[version] = pb
        kept.move_to_end(version)
        while len(kept) > 2 and sum(len(p) for p in kept.values()) > WAYPOINT_BULLETS:
            kept.popitem(last=False)

    def remember(self, pid: int, version: int, pb: Playbook) -> None:
        if self.enabled:
            self._held[pid] = (version, pb)

    def remember_older(self, pid: int, version: int, pb: Playbook) -> None:
        """Keep ``version`` (older than the latest) as the one older state of ``pid``."""
        if self.enabled:
            self._older[pid] = (version, pb)
