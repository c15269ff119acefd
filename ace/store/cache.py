"""The last state a store saw of each playbook, kept in memory.

A commit from the state the store holds applies the delta to it (no read of the head); a store whose state fell a
few versions behind (another writer moved the head) catches it up by applying only the deltas it missed
(:func:`ace.store.log.rebuild`). Playbooks are immutable, so a held state is shared, never copied.
"""

from __future__ import annotations

from ace.playbook.model import Playbook


class StateCache:
    """playbook id -> ``(version, state)``, the latest this store saw, and one older version read since (what
    agents read when ``serving`` is pinned behind the head: read again and again, rebuilt each time otherwise);
    ``enabled=False`` keeps nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._held: dict[int, tuple[int, Playbook]] = {}
        self._older: dict[int, tuple[int, Playbook]] = {}

    def get(self, pid: int) -> tuple[int, Playbook] | None:
        """``(version, state)`` held for playbook ``pid``, or None."""
        return self._held.get(pid)

    def at(self, pid: int, version: int) -> Playbook | None:
        """The state held for playbook ``pid`` if it is ``version`` (the latest or the older one kept), else None."""
        for held in (self._held.get(pid), self._older.get(pid)):
            if held is not None and held[0] == version:
                return held[1]
        return None

    def remember(self, pid: int, version: int, pb: Playbook) -> None:
        if self.enabled:
            self._held[pid] = (version, pb)

    def remember_older(self, pid: int, version: int, pb: Playbook) -> None:
        """Keep ``version`` (older than the latest) as the one older state of ``pid``."""
        if self.enabled:
            self._older[pid] = (version, pb)
