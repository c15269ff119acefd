"""Matched trials: the candidate version and the serving version answer the same lane tasks through the generator,
with the same provider and sampling; the evaluator scores both; a paired test decides (:mod:`ace.governance.stats`)
at the alpha of this look of the campaign; and the policy says what follows:

- ``gated``: a candidate found better is served at once: ``serving`` moves to it, the move's evidence holding the
  per-task outcomes, the p-value and effect, the tokens and wall time, and the campaign's alpha spent;
- ``gated+review``: a candidate found better is marked *passed*: a reviewer approves it (``ace review approve``),
  and can approve only a version that passed against what is served now;
- any other policy: the trial is information (shown to a reviewer); nothing moves.

Each answer is kept as it is made (:func:`ace.governance.gate.record`), so a trial stopped by its token budget, by
a provider that went away or by a kill goes on where it was when it is run again, without answering a task twice.
A trial is one look of the campaign, spent when it starts (a trial that is resumed spends nothing more). A trial
whose serving version moved before it ended is *superseded*: its look tested against a version no longer served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ace.config import LoopConfig
from ace.errors import AceError
from ace.governance import gate as g
from ace.governance.stats import Decision, Pair, decide
from ace.llm import LLM
from ace.llm.types import BudgetExceeded, LLMError, StructuredOutputError
from ace.loop.roles import generate
from ace.playbook import Playbook
from ace.store import SERVING, ChannelMoved, PlaybookStore
from ace.tasks import Task

MAX_EVIDENCE_TASKS = 2000  # per-task outcomes kept in a move's evidence (the trial's rows keep them all)


class NothingToTrial(AceError):
    """Serving is the candidate (the head): there is nothing to compare."""


class TrialInterrupted(AceError):
    """The provider failed in the middle of a trial; its answers so far are kept and the next run goes on."""


@dataclass(frozen=True)
class TrialReport:
    """What one run of a trial did: the trial as it stands, whether it was resumed, what this run answered and
    spent, and the decision (None while the trial is open)."""

    trial: g.Trial
    resumed: bool
    answered_now: int
    tokens_now: int
    decision: Decision | None
    moved: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.trial.to_dict(), "resumed": self.resumed, "answered_now": self.answered_now,
                "tokens_now": self.tokens_now, "moved": self.moved}  # fmt: skip


def pairs_of(tasks: list[Task], answers: dict[tuple[str, str], g.Result]) -> list[Pair]:
    """The tasks both arms answered, in the lane's order."""
    found = []
    for t in tasks:
        c, s = answers.get((t.id, "candidate")), answers.get((t.id, "serving"))
        if c is not None and s is not None:
            found.append(Pair(t.id, c.correct, s.correct, c.score, s.score))
    return found


def answer(llm: LLM, task: Task, playbook: Playbook, arm: str, evaluator: Any, config: LoopConfig) -> g.Result:
    """One arm's answer to one task, scored. A reply that does not validate is a wrong answer (as in ``ace eval``);
    a provider that fails raises."""
    started = time.perf_counter()
    try:
        res = generate(llm, task, playbook, budget=config.playbook_budget, focus=config.focus, layout=config.layout,
                       copy=config.answers == "copy")  # fmt: skip
    except StructuredOutputError as e:
        wrong = False if task.target is not None else None
        return g.Result(task.id, arm, wrong, 0.0, None, f"{type(e).__name__}: {e}", 0,
                        time.perf_counter() - started)  # fmt: skip
    assert res.parsed is not None
    fb = evaluator(task, res.parsed.final_answer)
    score = fb.score if fb.score is not None else (None if fb.correct is None else float(fb.correct))
    return g.Result(task.id, arm, fb.correct, score, res.parsed.final_answer, None, res.usage.total_tokens,
                    time.perf_counter() - started)  # fmt: skip


def run_trial(
    store: PlaybookStore,
    name: str,
    llm: LLM,
    *,
    namespace: str,
    budget_tokens: int | None = None,
    author: str | None = None,
    provider: str | None = None,
    config: LoopConfig | None = None,
    on_answer: Callable[[g.Result], None] | None = None,
) -> TrialReport:
    """Run (or go on with) the playbook's trial of its candidate against its serving version, decide when every
    lane task has both answers, and act on the decision as the policy says (see the module doc).

    ``budget_tokens``: this run stops, the trial kept open, once it has spent that many tokens (run again to go
    on). Errors: :class:`~ace.governance.gate.NoLane`, :class:`~ace.governance.gate.LaneError` (the lane's file is
    gone or changed into something unusable), :class:`NothingToTrial`,
    :class:`~ace.governance.stats.CampaignSpent`, :class:`TrialInterrupted`; none of them spends a look."""
    cfg = config or LoopConfig()
    if budget_tokens is not None and budget_tokens < 1:
        raise g.LaneError(f"a token budget is at least 1, not {budget_tokens}")
    with store.transaction() as conn:
        pid = g.playbook_id(conn, namespace, name)
        settings = g.read(conn, pid)
    if settings is None or settings.tasks is None or settings.evaluator is None:
        raise g.NoLane(f"{namespace}/{name} has no evaluation lane: set one with ace playbook lane {name} --tasks "
                       "FILE --evaluator NAME")  # fmt: skip
    lane = g.load_lane(settings.tasks, settings.evaluator)
    policy = store.promotion(name, namespace=namespace)
    g.SCHEMA.ensure(store.engine)
    serving = store.resolve(name, SERVING, namespace=namespace)
    candidate = store.head_version(name, namespace=namespace)
    resumed = True
    with store.transaction(write=True) as conn:
        gate = g.read(conn, pid) or settings
        current = g.open_trial(conn, pid)
        if current is not None and (current.serving != serving or current.lane.get("digest") != lane.digest):
            why = (f"serving moved to v{serving}" if current.serving != serving
                   else "the lane's task file changed")  # fmt: skip
            g.close(conn, current.id, "superseded", note=f"{why} before the trial ended")
            current = None
        changed = gate.digest is not None and lane.digest != gate.digest
        if current is None and candidate != serving and not changed:
            current = g.start_trial(conn, pid, gate, candidate=candidate, serving=serving, lane=lane,
                                    provider=provider, author=author)  # fmt: skip
            resumed = False
    if changed:  # a look on other tasks than the campaign's: the lane is set again (a new campaign) first
        raise g.LaneError(f"{namespace}/{name}: the lane's task file {lane.path} changed since the lane was set: set "
                          f"it again (ace playbook lane {name} --tasks FILE --evaluator NAME) to start a campaign on "
                          "it")  # fmt: skip
    if current is None:
        raise NothingToTrial(f"{namespace}/{name}: serving is the candidate (v{candidate}): nothing to trial (policy "
                             f"{policy})")  # fmt: skip
    trial = current
    books = {"candidate": store.load(name, trial.candidate, namespace=namespace),
             "serving": store.load(name, trial.serving, namespace=namespace)}  # fmt: skip
    with store.transaction() as conn:
        done = g.answers(conn, trial.id)
    started = time.perf_counter()
    spent = answered = 0
    stop: str | None = None
    for task in lane.tasks:
        for arm in g.ARMS:  # the two arms of a task one after the other: a stop leaves few unpaired
            if (task.id, arm) in done:
                continue
            if budget_tokens is not None and spent >= budget_tokens:
                stop = f"token budget of {budget_tokens} spent ({spent} used in this run); run the trial again to go on"
                break
            try:
                result = answer(llm, task, books[arm], arm, lane.evaluator, cfg)
            except BudgetExceeded as e:
                stop = f"{e}; run the trial again to go on"
                break
            except LLMError as e:
                note = f"{type(e).__name__}: {e}"
                with store.transaction(write=True) as conn:
                    g.close(conn, trial.id, "stopped", note=note, wall_s=time.perf_counter() - started)
                raise TrialInterrupted(f"trial #{trial.id} stopped after {len(done)} of {2 * len(lane.tasks)} answers: "
                                       f"{note}; run it again to go on where it stopped") from e  # fmt: skip
            if g.record(store, trial.id, result):
                done[(task.id, arm)] = result
                spent += result.tokens
                answered += 1
                if on_answer is not None:
                    on_answer(result)
        if stop:
            break
    wall = time.perf_counter() - started
    if stop is not None:
        with store.transaction(write=True) as conn:
            g.close(conn, trial.id, "stopped", note=stop, wall_s=wall)
        return TrialReport(g.trial(store, trial.id), resumed, answered, spent, None, False)
    with store.transaction() as conn:
        done = g.answers(conn, trial.id)
    return _decide(store, name, namespace, trial, lane, gate, policy, done, author, resumed, answered, spent, wall)


def _decide(
    store: PlaybookStore, name: str, namespace: str, trial: g.Trial, lane: g.Lane, gate: g.Gate, policy: str,
    done: dict[tuple[str, str], g.Result], author: str | None, resumed: bool, answered: int, spent: int, wall: float,
) -> TrialReport:  # fmt: skip
    if not g.trial(store, trial.id).open:  # decided meanwhile by another process running the same trial
        return TrialReport(g.trial(store, trial.id), resumed, answered, spent, None, False)
    pairs = pairs_of(lane.tasks, done)
    decision = decide(pairs, alpha=trial.alpha, min_effect=gate.min_effect, test=gate.test, seed=trial.id)  # type: ignore[arg-type]
    now = g.trial(store, trial.id)
    campaign = gate.campaign
    evidence = {
        "trial": trial.id, "candidate": trial.candidate, "serving": trial.serving, "policy": policy,
        "decision": decision.to_dict(), "tokens": now.tokens, "wall_s": round(now.wall_s + wall, 3),
        "provider": trial.provider, "lane": lane.to_dict(),
        "campaign": {"number": trial.campaign, "look": trial.look, "alpha_look": trial.alpha,
                     "alpha": None if campaign is None else campaign.alpha,
                     "spent": None if campaign is None else campaign.total_spent},
        "outcomes": [[p.task_id, p.candidate, p.serving, p.candidate_score, p.serving_score]
                     for p in pairs[:MAX_EVIDENCE_TASKS]],
    }  # fmt: skip
    status: g.Status = "not-better"
    moved, note = False, decision.reason
    if decision.better and policy == "gated":
        try:
            store.move_channel(name, SERVING, trial.candidate, namespace=namespace, author=author or "ace:gate",
                               reason=f"gated: trial #{trial.id} {decision.reason}", evidence=evidence,
                               expected=trial.serving)  # fmt: skip
        except ChannelMoved as e:
            if e.actual == trial.candidate:  # served already (the same trial, decided by another process)
                return TrialReport(g.trial(store, trial.id), resumed, answered, spent, decision, False)
            status, note = "superseded", f"{decision.reason}; not served: {e}"
        else:
            status, moved = "promoted", True
    elif decision.better:
        status = "passed"
        note = decision.reason + ("; a reviewer approves it (ace review approve)" if policy == "gated+review" else
                                  f"; the policy is {policy}: nothing moves")  # fmt: skip
    with store.transaction(write=True) as conn:
        if moved:
            pid = g.playbook_id(conn, namespace, name)
            current = g.read(conn, pid)
            if current is not None and current.campaign is not None and current.campaign.number == trial.campaign:
                current.campaign.promoted = trial.candidate
                g.write(conn, pid, current)
        g.close(conn, trial.id, status, note=note, decision=evidence, wall_s=wall)
    return TrialReport(g.trial(store, trial.id), resumed, answered, spent, decision, moved)


__all__ = ["NothingToTrial", "TrialInterrupted", "TrialReport", "answer", "pairs_of", "run_trial"]
