"""Trials as workers' work: what an ``ace worker`` (or a worker of ``ace serve``) does when no episode is waiting.

A playbook under a gated policy (``gated``, ``gated+review``) with a lane is *due* a trial when its candidate (the
head) is ahead of serving and either a trial of it was stopped (a token budget, a provider that went away, a kill:
it goes on where it stopped) or the head is at least ``every`` versions past the candidate of its last trial (a
trial after every commit would spend the campaign's looks on candidates that barely differ). The worker runs the
due trial with its own model, bounded by ``budget_tokens`` per go; the trial's answers are kept as they are made, so
another worker, or this one later, goes on with it. Two workers that pick the same trial at once answer some tasks
twice and keep the first answer of each (:func:`ace.governance.gate.record`); the decision is taken once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from ace.config import LoopConfig
from ace.governance import gate as g
from ace.governance.stats import CampaignSpent
from ace.governance.trials import NothingToTrial, TrialInterrupted, TrialReport, run_trial
from ace.llm import LLM
from ace.store import SERVING, PlaybookStore
from ace.store import schema as t

log = logging.getLogger(__name__)


@dataclass
class TrialDuty:
    """When a worker's queue is empty: find a due trial (at most every ``poll_s`` seconds) and run it."""

    every: int = 10  # versions past the last trial's candidate before the next trial
    budget_tokens: int | None = None  # per go; the trial stays open and goes on at the next go
    poll_s: float = 30.0
    _last: float = field(default=float("-inf"), init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise g.LaneError(f"a trial comes at least 1 version after the last one tried, not every={self.every!r}")
        if self.budget_tokens is not None and (isinstance(self.budget_tokens, bool) or self.budget_tokens < 1):
            raise g.LaneError(f"a token budget is at least 1, not {self.budget_tokens!r}")
        if not self.poll_s >= 0:
            raise g.LaneError(f"poll_s is a number of seconds >= 0, not {self.poll_s!r}")

    def due(self, store: PlaybookStore) -> list[tuple[str, str]]:
        """``(namespace, name)`` of every playbook due a trial, stopped trials first."""
        g.SCHEMA.ensure(store.engine)
        with store.transaction() as conn:
            rows = conn.execute(
                select(t.playbooks.c.id, t.playbooks.c.namespace, t.playbooks.c.name, t.playbooks.c.head)
                .join(g.gates, g.gates.c.playbook_id == t.playbooks.c.id)
                .where(g.gates.c.tasks.is_not(None))
            ).all()
        resumed, fresh = [], []
        for row in rows:
            ns, name, head = str(row.namespace), str(row.name), int(row.head)
            if not store.promotion(name, namespace=ns).startswith("gated"):
                continue
            if store.resolve(name, SERVING, namespace=ns) >= head:
                continue
            with store.transaction() as conn:
                current = g.open_trial(conn, int(row.id))
            if current is not None:
                resumed.append((ns, name))
                continue
            last = g.list_trials(store, name, namespace=ns, limit=1)
            if not last or head - last[0].candidate >= self.every:
                fresh.append((ns, name))
        return resumed + fresh

    def run_once(self, store: PlaybookStore, llm: LLM, *, config: LoopConfig, author: str) -> TrialReport | None:
        """Run the first due trial (None when none is due, or when the last look was less than ``poll_s`` ago)."""
        now = time.monotonic()
        if now - self._last < self.poll_s:
            return None
        self._last = now
        for ns, name in self.due(store):
            try:
                return run_trial(store, name, llm, namespace=ns, budget_tokens=self.budget_tokens, author=author,
                                 config=config)  # fmt: skip
            except (NothingToTrial, g.NoLane):
                continue  # decided or moved meanwhile
            except TrialInterrupted as e:  # the provider failed: kept, and the next go goes on
                log.warning("trial of %s/%s interrupted: %s", ns, name, e)
                return None
            except g.LaneError as e:  # the lane's file is gone or changed into something unusable: say so, go on
                log.error("trial of %s/%s cannot run: %s", ns, name, e)
            except CampaignSpent as e:  # no look left against this serving version: an admin starts a campaign
                log.info("no trial of %s/%s: %s", ns, name, e)
        return None


__all__ = ["TrialDuty"]
