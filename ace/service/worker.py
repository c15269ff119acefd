"""Workers: take episodes from the queue and learn from them through the loop (``ace worker``, or threads of
``ace serve``).

A worker claims an episode (:meth:`~ace.service.queue.EpisodeQueue.claim`), renews its lease from a thread while it
works, and runs it as a one-task ``ace learn`` run (:func:`ace.runs.from_logs.learn`): reflect, curate, guard
(:class:`~ace.collapse.CollapseGuard`), commit, with LangGraph checkpoints and a trajectory under ``workdir``. The
run id is ``episode-<row>``, so the commit's idempotency key is fixed by the episode: a worker that takes over an
episode whose first worker died after committing gets that version back instead of committing again, and one
that died before committing simply does the work. Then the episode is marked done with the head after it.

``done`` means the episode was learned from, or deliberately not (nothing to learn; the quality gate or the guard
refused the delta). A try that could not learn fails instead: a passing failure (:data:`PASSING_FAILURES`: the
provider
unreachable, timing out, answering 5xx or 429, writers racing past the rebase limit, the database away) puts
the episode back in the queue with backoff, to be ``failed`` with the reason once its attempts are used; anything
else (the model's replies never validated, a configuration error, a bug such as an ``AttributeError``) fails it at
once, with the reason. The list is stated, never inferred: a new kind of passing failure is added to it.

Several workers, in one process or many (or on many hosts, on PostgreSQL), share a queue safely; each loads its
own LLM lazily, on its first episode.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ace.collapse import CollapseGuard
from ace.config import UNSET, legacy_config
from ace.governance.duty import TrialDuty
from ace.governance.trials import TrialReport
from ace.llm import LLM, ProviderError
from ace.loop import LoopConfig, StepRecord
from ace.memory import Memory
from ace.runs.factory import RunFiles
from ace.runs.from_logs import learn, to_task
from ace.service.queue import Episode, EpisodeQueue
from ace.store import PlaybookStore, StaleVersionError
from ace.telemetry import traced_episode

log = logging.getLogger("ace.worker")

# The failures that pass: the episode goes back to the queue (with backoff) and is tried again. The LLM provider
# failing (ProviderError: unreachable, timed out, HTTP 5xx, 429, and the rest of what a provider raises), writers
# racing past the rebase limit (StaleVersionError), the database away or busy (SQLAlchemy's OperationalError, its
# pool's timeout). Anything else fails the episode at once with its reason: trying again would fail again (a bad
# configuration) or hide a bug (an AttributeError).
PASSING_FAILURES: tuple[type[Exception], ...] = (ProviderError, StaleVersionError, OperationalError, PoolTimeout)
PASSING = PASSING_FAILURES  # the earlier name
# the kinds of step failure (see ace.loop.state.Failure) that pass the same way
PASSING_STEPS = frozenset({"provider", "commit"})


def worker_name(suffix: str = "") -> str:
    """``host:pid[:suffix]``: who holds a lease, as shown in an episode's status."""
    return f"{socket.gethostname()}:{os.getpid()}{':' + suffix if suffix else ''}"


@dataclass
class Worker:
    """Learns from queued episodes, one at a time; :meth:`run` until stopped, :meth:`run_once` for one."""

    store: PlaybookStore
    queue: EpisodeQueue
    llm: Callable[[], LLM]  # made on the first episode (loading a local model takes a while)
    workdir: Path
    name: str = field(default_factory=worker_name)
    poll_s: float = 0.5
    guard: bool = True
    keep_checkpoints: bool = False
    config: LoopConfig = field(default_factory=LoopConfig)  # the loop's options (curation "facts" suits small models)
    memory: Callable[[str], Memory] | None = None  # the memory tiers of a namespace, written after each episode
    trials: TrialDuty | None = None  # when no episode waits: run the matched trials gated playbooks are due
    # deprecated: the loop options one by one (use config)
    playbook_budget: InitVar[int | None] = UNSET
    curation: InitVar[Literal["free", "facts"]] = UNSET
    _llm: LLM | None = field(default=None, init=False, repr=False)

    def __post_init__(self, playbook_budget: int | None, curation: Literal["free", "facts"]) -> None:
        self.config = legacy_config(self.config, "Worker", playbook_budget=playbook_budget, curation=curation)

    def run(self, stop: threading.Event | None = None, *, max_episodes: int | None = None) -> int:
        """Work until ``stop`` is set (or ``max_episodes`` are done); returns how many episodes it handled."""
        stop = stop or threading.Event()
        handled = 0
        while not stop.is_set() and (max_episodes is None or handled < max_episodes):
            try:
                done = self.run_once()
            except Exception:  # the queue itself failed (the database is away): wait and try again, never die
                log.exception("%s could not reach the episode queue; retrying", self.name)
                done = None
                stop.wait(max(self.poll_s, 5.0))
            if done is not None:
                handled += 1
            else:
                stop.wait(self.poll_s)
        return handled

    def run_once(self) -> Episode | None:
        """Claim one episode and learn from it; None when the queue had nothing ready (then, with ``trials``, a
        due trial may have run: :meth:`run_trial`)."""
        episode = self.queue.claim(self.name)
        if episode is None:
            if self.trials is not None:
                self.run_trial()
            return None
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(episode, renewing), daemon=True)
        renewer.start()
        try:
            return self._learn(episode)
        finally:
            renewing.set()
            renewer.join()

    def run_trial(self) -> TrialReport | None:
        """Run (or go on with) one due trial of a gated playbook (:class:`~ace.governance.duty.TrialDuty`); None
        when none was due. A failure is logged, never raised: the worker goes on with episodes."""
        if self.trials is None:
            return None
        try:
            if self._llm is None:
                self._llm = self.llm()
            return self.trials.run_once(self.store, self._llm, config=self.config, author=f"ace:worker {self.name}")
        except Exception:
            log.exception("%s: a trial failed", self.name)
            return None

    def _renew(self, episode: Episode, done: threading.Event) -> None:
        while not done.wait(self.queue.lease_s / 3):
            try:
                if not self.queue.renew(episode, self.name):
                    log.warning("%s lost its lease on episode %s", self.name, episode.episode_id)
                    return
            except Exception as e:  # the database is away for a moment: the next renewal may succeed
                log.warning("renewing the lease on episode %s failed: %s", episode.episode_id, e)

    @traced_episode  # an ace.episode span, the episode counter and the queue's depth, when OpenTelemetry is on
    def _learn(self, episode: Episode) -> Episode:
        run_id = f"episode-{episode.row}"
        files = RunFiles(self.workdir, run_id)
        try:
            task = to_task(episode.log, episode.episode_id)
            if self._llm is None:
                self._llm = self.llm()
            result = learn(
                [task],
                self._llm,
                self.store,
                episode.playbook,
                run_id=run_id,
                workdir=self.workdir,
                namespace=episode.namespace,
                config=self.config,
                guard=CollapseGuard() if self.guard else None,
                memory=self.memory(episode.namespace) if self.memory is not None else None,
            )
        except Exception as e:
            # raised out of the run (the run's checkpoint is kept: the next try resumes where this one stopped)
            passing = isinstance(e, PASSING_FAILURES)
            if passing:
                log.warning("episode %s: try %d failed (%s: %s); %s", episode.episode_id, episode.attempts,
                            type(e).__name__, e, self._next(episode))  # fmt: skip
            else:
                log.exception("episode %s failed", episode.episode_id)
            retry_after = e.retry_after if isinstance(e, ProviderError) else None
            self.queue.fail(episode, self.name, f"{type(e).__name__}: {e}", retry=passing, retry_after_s=retry_after)
        else:
            step = result.results[-1]
            if step.could_not_learn:
                self._failed(episode, step, files)
            else:
                note = step.error or (None if step.committed or step.delta else "nothing to learn: the delta was empty")
                if step.memory:  # learned, but memory refused the episode (a NUL in PostgreSQL text, a dead server)
                    said = "memory refused the episode: " + "; ".join(step.memory)
                    note = f"{note}; {said}" if note else said
                self.queue.finish(episode, self.name, version=step.version, committed=step.committed, note=note)
                if not self.keep_checkpoints:
                    files.checkpoints.unlink(missing_ok=True)
        return self.queue.get(episode.playbook, episode.episode_id, namespace=episode.namespace)

    def _next(self, episode: Episode) -> str:
        """What becomes of an episode whose try failed with a passing failure (for the log)."""
        if episode.attempts < self.queue.max_attempts:
            return "it goes back to the queue"
        return f"that was the last of {self.queue.max_attempts} tries: it fails"

    def _failed(self, episode: Episode, step: StepRecord, files: RunFiles) -> None:
        """The run ended but its step could not learn (the provider failed, say): the episode fails this try.
        The finished run is set aside, so that the next try runs it again instead of resuming to the same end:
        its checkpoints are dropped and its trajectory kept as ``<run id>.try-<n>.trajectory.jsonl``."""
        passing = step.failure in PASSING_STEPS
        error = f"could not learn: {step.error}"
        if passing:
            log.warning("episode %s: try %d %s; %s", episode.episode_id, episode.attempts, error, self._next(episode))
        else:
            log.error("episode %s %s", episode.episode_id, error)
        files.checkpoints.unlink(missing_ok=True)
        if files.trajectory.exists():
            files.trajectory.replace(files.trajectory.with_name(
                files.trajectory.name.replace(".trajectory.", f".try-{episode.attempts}.trajectory.")
            ))  # fmt: skip
        self.queue.fail(episode, self.name, error, retry=passing)


class WorkerPool:
    """``n`` worker threads in this process (``ace serve --workers N``), stopped together."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=w.run, args=(self._stop,), name=f"ace-worker-{i}", daemon=True)
            for i, w in enumerate(workers)
        ]

    def start(self) -> WorkerPool:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)


__all__ = ["PASSING_FAILURES", "PASSING_STEPS", "Worker", "WorkerPool", "worker_name"]
