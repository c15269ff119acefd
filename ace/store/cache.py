"""The last state a store saw of each playbook, kept in memory.

A commit from the state the store holds applies the delta to it (no read of the head); a store whose state fell a
few versions behind (another writer moved the head) catches it up by applying only the deltas it missed
(:func:`ace.store.log.rebuild`). Playbooks are immutable, so a held state is shared, never copied.
"""

from __future__ import annotations

from ace.playbook.model import Playbook


class StateCache:
    """playbook id -> ``(version, state)``, the latest this store saw; ``enabled=False`` keeps nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._held: dict[int, tuple[int, Playbook]] = {}

    def get(self, pid: int) -> tuple[int, Playbook] | None:
        """``(version, state)`` held for playbook ``pid``, or None."""
        return self._held.get(pid)

    def at(self, pid: int, version: int) -> Playbook | None:
        """The state held for playbook ``pid`` if it is ``version``, else None."""
        held = self._held.get(pid)
        return held[1] if held is not None and held[0] == version else None

    def remember(self, pid: int, version: int, pb: Playbook) -> None:
        if self.enabled:
            self._held[pid] = (version, pb)
