"""The short-term tier: what just happened in this run, under a token budget.

Eviction policy (documented, tested): entries are kept in arrival order; when adding one takes the total over
``budget`` tokens, the *oldest* entries are evicted until it fits. An entry that alone exceeds the budget is cut
to the budget (its head is kept, marked with "…"). Tokens are the project's documented estimate,
:func:`ace.playbook.approx_tokens` (4 characters per token).

The buffer is plain data (:meth:`to_list` / :meth:`from_list`), so the loop keeps it in its checkpointed state
and a resumed run has it back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from ace.errors import ConfigError
from ace.playbook import approx_tokens


@dataclass(frozen=True, slots=True)
class Entry:
    step: int
    kind: str  # "task", "answer", "feedback", "note", ...
    text: str

    @property
    def tokens(self) -> int:
        return approx_tokens(self.text)


class ShortTermBuffer:
    def __init__(self, budget: int = 500, entries: list[Entry] | None = None) -> None:
        if budget < 1:
            raise ConfigError("budget must be at least 1 token")
        self.budget = budget
        self._entries: deque[Entry] = deque()
        self._tokens = 0
        for e in entries or []:
            self.add(e.step, e.kind, e.text)

    def add(self, step: int, kind: str, text: str) -> list[Entry]:
        """Add an entry; returns the entries evicted to make room (oldest first)."""
        text = " ".join(text.split())
        if approx_tokens(text) > self.budget:
            text = text[: max(0, self.budget * 4 - 1)] + "…"
        entry = Entry(step, kind, text)
        evicted: list[Entry] = []
        while self._entries and self._tokens + entry.tokens > self.budget:
            old = self._entries.popleft()
            self._tokens -= old.tokens
            evicted.append(old)
        self._entries.append(entry)
        self._tokens += entry.tokens
        return evicted

    @property
    def tokens(self) -> int:
        return self._tokens

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def newest_first(self) -> list[Entry]:
        return list(reversed(self._entries))

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._entries]

    @classmethod
    def from_list(cls, budget: int, data: list[dict[str, Any]] | None) -> ShortTermBuffer:
        return cls(budget, [Entry(int(d["step"]), str(d["kind"]), str(d["text"])) for d in data or []])
