"""Runners over the loop: eval-only, offline (epochs, validation, best version), online (windows).

Every runner is resumable: its work is split into pieces with deterministic names under ``workdir`` (a loop run
checkpointed by run id, an evaluation whose per-task results are appended to a JSONL file), so running the same
call again after an interruption skips what is done and continues.

- :func:`evaluate`: answer each task with a fixed playbook version, with bounded concurrency; no learning.
- :func:`offline`: ``epochs`` passes of the loop over the train set; every ``eval_every`` steps the head is
  evaluated on the validation set; the best version is tagged ``best`` (ties: the earliest) and returned.
- :func:`online`: for each window of the stream, first evaluate the window with the current playbook, then adapt
  on it in order. With ``window=1`` the loop's own first answer *is* that evaluation (it is made before the step
  adapts), so no task is answered twice.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ace.config import UNSET, legacy_config
from ace.errors import ConfigError
from ace.llm import LLM, LLMError, Usage
from ace.loop import Generator, LoopConfig, RunResult, StepRecord
from ace.loop.roles import generate
from ace.playbook import Playbook
from ace.playbook.render import Layout
from ace.runs.factory import RunSetup, start
from ace.tasks import Evaluator, Task, share_correct


@dataclass
class Spend:
    """Tokens, cost and wall time of a piece of work (measured on the LLM's ledger around it)."""

    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.usage + other.usage,
            self.cost_usd + other.cost_usd,
            self.calls + other.calls,
            self.seconds + other.seconds,
        )


class _Meter:
    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def __enter__(self) -> Spend:
        ledger = self.llm.ledger
        self._start = (ledger.usage, ledger.cost_usd, ledger.calls, time.perf_counter())
        self.spend = Spend()
        return self.spend

    def __exit__(self, *exc: object) -> None:
        ledger = self.llm.ledger
        usage, cost, calls, t0 = self._start
        self.spend.usage = ledger.usage - usage
        self.spend.cost_usd = ledger.cost_usd - cost
        self.spend.calls = ledger.calls - calls
        self.spend.seconds = time.perf_counter() - t0


class Prediction(BaseModel):
    """One answer of an evaluation (no learning): a line of its results file."""

    task_id: str
    answer: str | None
    cited: list[str]
    error: str | None
    correct: bool | None
    score: float | None
    message: str


@dataclass
class Evaluation:
    records: list[Prediction]
    spend: Spend

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.records)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r.error)


def evaluate(
    tasks: Sequence[Task],
    *,
    llm: LLM,
    playbook: Playbook,
    evaluator: Evaluator,
    config: LoopConfig | None = None,
    generator: Generator | None = None,
    concurrency: int = 1,
    results: str | Path | None = None,
    on_result: Callable[[Prediction], None] | None = None,
    budget: int | None = UNSET,
    focus: int = UNSET,
    copy: bool = UNSET,
    layout: Layout = UNSET,
) -> Evaluation:
    """Answer every task with ``playbook`` (no learning) using at most ``concurrency`` calls at once; the built-in
    generator answers as the loop would with ``config`` (its ``playbook_budget``, ``focus``, ``answers`` and
    ``layout``). ``budget``, ``focus``, ``copy`` and ``layout`` are the deprecated way to pass them.

    ``results``: a JSONL file of per-task records; tasks already in it are not answered again (resume). A failed
    call is a record with ``error`` set and ``correct`` False (a wrong answer for the accuracy, as in a benchmark).
    """
    cfg = legacy_config(config, "evaluate", budget=budget, focus=focus, copy=copy, layout=layout)
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    path = Path(results) if results else None
    done: dict[str, Prediction] = {}
    if path and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rec = Prediction.model_validate_json(line)
                except ValueError:  # a line cut by a crash: that task is answered again
                    continue
                done[rec.task_id] = rec
    lock = threading.Lock()

    def one(task: Task) -> Prediction:
        try:
            if generator is None:
                out = generate(
                    llm, task, playbook, budget=cfg.playbook_budget, focus=cfg.focus, copy=cfg.answers == "copy",
                    layout=cfg.layout, relevance=cfg.relevance,
                ).parsed  # fmt: skip
            else:
                out = generator(task, playbook, None)
            assert out is not None
            fb = evaluator(task, out.final_answer)
            rec = Prediction(
                task_id=task.id, answer=out.final_answer, cited=list(out.bullet_ids), error=None,
                correct=fb.correct, score=fb.score, message=fb.message,
            )  # fmt: skip
        except Exception as e:  # an LLM failure, or a wrapped agent's: the task is scored, the run goes on
            if generator is None and not isinstance(e, LLMError):
                raise
            rec = Prediction(
                task_id=task.id, answer=None, cited=[], error=f"{type(e).__name__}: {e}",
                correct=False if task.target is not None else None, score=0.0, message="",
            )  # fmt: skip
        if path:
            with lock, path.open("a", encoding="utf-8") as f:
                f.write(rec.model_dump_json() + "\n")
        if on_result:
            on_result(rec)
        return rec

    todo = [t for t in tasks if t.id not in done]
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _Meter(llm) as spend:
        if concurrency == 1:
            fresh = [one(t) for t in todo]
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                fresh = list(pool.map(one, todo))
    by_id = {**done, **{r.task_id: r for r in fresh}}
    return Evaluation([by_id[t.id] for t in tasks], spend)


_CAUSES = {
    "provider": "the provider failed",
    "llm": "the model's replies were unusable",
    "agent": "the agent failed",
    "commit": "the commit failed",
}


def could_not_learn(steps: Sequence[StepRecord | Prediction]) -> list[StepRecord]:
    """The loop steps among ``steps`` that could not learn (see :attr:`StepRecord.could_not_learn`)."""
    return [s for s in steps if isinstance(s, StepRecord) and s.could_not_learn]


def learning_summary(steps: Sequence[StepRecord | Prediction]) -> str | None:
    """One sentence for a run's summary when some of its steps could not learn, saying how many and why, e.g.
    ``"3 of 10 steps could not learn: the provider failed (reflector: openai: APIConnectionError: Connection
    error.)"``; None when every step learned or decided not to."""
    records = [s for s in steps if isinstance(s, StepRecord)]
    failed = could_not_learn(records)
    if not failed:
        return None
    by_cause: dict[str, list[StepRecord]] = {}
    for r in failed:
        by_cause.setdefault(r.failure or "unknown", []).append(r)
    parts = []
    for cause, rs in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        what = _CAUSES.get(cause, "they failed")
        first = (rs[0].error or "")[:160]
        parts.append(f"{what} ({first})" if len(by_cause) == 1 else f"{len(rs)}: {what} ({first})")
    every = " (every step)" if len(failed) == len(records) else ""
    return f"{len(failed)} of {len(records)} steps could not learn{every}: {'; '.join(parts)}"


@dataclass(frozen=True)
class FactsHeld:
    """How many bullets state the facts a stream taught: of the distinct answers (targets) of ``tasks``, ``facts``
    are stated by at least one bullet (the target's text in the bullet, as words), by ``bullets`` bullets in all.
    ``per_fact`` is 1.0 when each fact is stated once; more means the same fact was learned again as new bullets."""

    facts: int
    bullets: int

    @property
    def per_fact(self) -> float | None:
        return self.bullets / self.facts if self.facts else None

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "bullets": self.bullets, "per_fact": self.per_fact}

    def __str__(self) -> str:
        per = "—" if self.per_fact is None else f"{self.per_fact:.2f}"
        return f"{self.bullets} bullet(s) state {self.facts} distinct fact(s) of the stream: {per} per fact"


def facts_held(playbook: Playbook, tasks: Sequence[Task]) -> FactsHeld:
    """:class:`FactsHeld` for ``playbook`` after learning from ``tasks`` (their targets are the facts)."""
    targets = {" ".join(t.target.casefold().split()) for t in tasks if t.target and t.target.strip()}
    if not targets:
        return FactsHeld(0, 0)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(x) for x in sorted(targets, key=len, reverse=True))
                         + r")(?!\w)")  # fmt: skip
    stated: set[str] = set()
    bullets = 0
    for b in playbook:
        found = set(pattern.findall(" ".join(b.content.casefold().split())))
        if found:
            bullets += 1
            stated |= found
    return FactsHeld(len(stated), bullets)


@dataclass(frozen=True)
class Curation:
    """How a run's curator deltas fared with the playbook's rules: of the steps that asked the curator for a delta,
    how many had one refused, how many of those the curator repaired when shown the reason, how many stayed
    refused."""

    curated: int  # steps whose curator delta was applied or refused
    refused: int  # steps with at least one refused proposal
    repaired: int  # of those, steps whose repaired proposal went on
    proposals_refused: int  # refused proposals in all (a step may be refused again after a repair)

    @property
    def still_refused(self) -> int:
        return self.refused - self.repaired

    def to_dict(self) -> dict[str, int]:
        return {"curated": self.curated, "refused": self.refused, "repaired": self.repaired,
                "still_refused": self.still_refused, "proposals_refused": self.proposals_refused}  # fmt: skip

    def __str__(self) -> str:
        share = f" ({self.refused / self.curated:.0%})" if self.curated else ""
        still = f" ({self.still_refused / self.curated:.0%})" if self.curated else ""
        return (
            f"curator deltas refused by the playbook's rules in {self.refused} of {self.curated} steps{share}; "
            f"{self.repaired} repaired when shown why, {self.still_refused} still refused{still}"
        )


def curation(steps: Sequence[StepRecord | Prediction]) -> Curation:
    """:class:`Curation` of a run's steps."""
    records = [s for s in steps if isinstance(s, StepRecord)]
    curated = [r for r in records if r.refused or r.delta is not None]
    refused = [r for r in curated if r.refused]
    return Curation(len(curated), len(refused), sum(r.repaired for r in refused), sum(r.refused for r in records))


def curation_summary(steps: Sequence[StepRecord | Prediction]) -> str | None:
    """One sentence on the curator deltas the playbook's rules refused and the repairs, with their shares of the
    curated steps (None when no step had a delta to apply or refuse)."""
    c = curation(steps)
    return str(c) if c.curated else None


@dataclass
class Learner:
    """A learning runner's state: the setup its loop runs share and where their files and results go. Each piece
    of work is a loop run ``<run id>:<piece>`` built by :func:`ace.runs.factory.start` (checkpointed, with a
    trajectory), or an evaluation whose results are ``<workdir>/<piece>.jsonl``."""

    setup: RunSetup
    workdir: Path
    run_id: str
    concurrency: int = 1

    def loop(self, tasks: Sequence[Task], piece: str, **config: Any) -> RunResult:
        return start(self.setup, tasks, run_id=f"{self.run_id}:{piece}", workdir=self.workdir, **config)

    def evaluate(self, tasks: Sequence[Task], version: int, piece: str) -> Evaluation:
        s = self.setup
        return evaluate(
            tasks,
            llm=s.llm,
            playbook=s.store.load(s.playbook, version, namespace=s.namespace),
            evaluator=s.evaluator,
            config=s.config,
            generator=s.generator,
            concurrency=self.concurrency,
            results=self.workdir / f"{piece}.jsonl",
        )

    def head(self) -> int:
        return self.setup.head()


@dataclass
class Checkpoint:
    epoch: int
    step: int  # train steps done so far, over all epochs
    version: int
    accuracy: float | None


@dataclass
class OfflineResult:
    steps: list[StepRecord]  # the loop's records, all epochs
    checkpoints: list[Checkpoint]  # validation results
    best_version: int
    spend: Spend

    @property
    def train_accuracy(self) -> float | None:
        return share_correct(self.steps)

    @property
    def not_learned(self) -> str | None:
        """How many training steps could not learn, and why (:func:`learning_summary`); None if none."""
        return learning_summary(self.steps)


def offline(
    learner: Learner, train: Sequence[Task], val: Sequence[Task] = (), *, epochs: int = 1, eval_every: int | None = None
) -> OfflineResult:
    """Train on ``train`` for ``epochs``; validate on ``val`` every ``eval_every`` steps (default: once per epoch)
    and at the start; tag the best version ``best`` (the head when there is no validation set)."""
    if epochs < 1:
        raise ConfigError("epochs must be at least 1")
    every = eval_every or len(train) or 1
    steps: list[StepRecord] = []
    checkpoints: list[Checkpoint] = []

    def validate(epoch: int, step: int) -> None:
        version = learner.head()
        if any(c.version == version for c in checkpoints):
            acc = next(c.accuracy for c in checkpoints if c.version == version)
        else:
            acc = learner.evaluate(val, version, f"val-v{version}").accuracy
        checkpoints.append(Checkpoint(epoch, step, version, acc))

    with _Meter(learner.setup.llm) as spend:
        if val:
            validate(0, 0)
        for epoch in range(1, epochs + 1):
            for start in range(0, len(train), every):
                res = learner.loop(train[start : start + every], f"e{epoch}-s{start}")
                steps.extend(res.results)
                if val:
                    validate(epoch, (epoch - 1) * len(train) + start + len(res.results))
    if checkpoints:
        best = max(checkpoints, key=lambda c: (c.accuracy if c.accuracy is not None else -1.0, -c.version))
        best_version = best.version
    else:
        best_version = learner.head()
    s = learner.setup
    s.store.tag(s.playbook, "best", best_version, namespace=s.namespace)
    return OfflineResult(steps, checkpoints, best_version, spend)


@dataclass(frozen=True)
class Window:
    """One window of an online run: its tasks were answered with ``version_before``, then learned from."""

    window: int
    start: int
    size: int
    accuracy: float | None
    version_before: int
    version_after: int


@dataclass
class OnlineResult:
    windows: list[Window]
    predictions: list[StepRecord | Prediction]  # one per task: the answer made before adapting on it
    spend: Spend
    steps: list[StepRecord] = field(default_factory=list)  # the loop's records (adapting on each window)

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.predictions)

    @property
    def not_learned(self) -> str | None:
        """How many steps could not learn, and why (:func:`learning_summary`); None if none."""
        return learning_summary(self.steps)


def _window(w: int, start: int, preds: Sequence[StepRecord | Prediction], before: int, after: int) -> Window:
    return Window(w, start, len(preds), share_correct(preds), before, after)


def online(learner: Learner, tasks: Sequence[Task], *, window: int = 1) -> OnlineResult:
    """Evaluate each window with the current playbook, then adapt on it in order."""
    if window < 1:
        raise ConfigError("window must be at least 1")
    windows: list[Window] = []
    predictions: list[StepRecord | Prediction] = []
    steps: list[StepRecord] = []
    with _Meter(learner.setup.llm) as spend:
        if window == 1:  # one loop over the stream: each first answer is made before its step adapts
            before = learner.head()
            res = learner.loop(tasks, "stream")
            predictions, steps = list(res.results), list(res.results)
            for w, r in enumerate(res.results):
                windows.append(_window(w, w, [r], before if w == 0 else res.results[w - 1].version, r.version))
        else:
            for w, start in enumerate(range(0, len(tasks), window)):
                chunk = tasks[start : start + window]
                before = learner.head()
                preds = learner.evaluate(chunk, before, f"online-w{w}").records
                steps.extend(learner.loop(chunk, f"w{w}").results)
                predictions.extend(preds)
                windows.append(_window(w, start, preds, before, learner.head()))
    return OnlineResult(windows, predictions, spend, steps)


__all__ = [
    "Checkpoint",
    "Curation",
    "Evaluation",
    "Learner",
    "OfflineResult",
    "OnlineResult",
    "Prediction",
    "Spend",
    "Window",
    "could_not_learn",
    "curation",
    "curation_summary",
    "evaluate",
    "facts_held",
    "learning_summary",
    "offline",
    "online",
]
