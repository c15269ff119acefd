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

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ace.llm import LLM, LLMError, Usage
from ace.loop import Generator, Guard, LoopConfig, LoopContext, RunResult, run
from ace.playbook import Playbook
from ace.refine import Refiner
from ace.roles import GeneratorOutput, generate
from ace.store import PlaybookStore
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


@dataclass
class Evaluation:
    records: list[dict[str, Any]]
    spend: Spend

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.records)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r["error"])


def evaluate(
    tasks: Sequence[Task],
    *,
    llm: LLM,
    playbook: Playbook,
    evaluator: Evaluator,
    budget: int | None = 2000,
    generator: Generator | None = None,
    concurrency: int = 1,
    results: str | Path | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Evaluation:
    """Answer every task with ``playbook`` (no learning) using at most ``concurrency`` calls at once.

    ``results``: a JSONL file of per-task records; tasks already in it are not answered again (resume). A failed
    call is a record with ``error`` set and ``correct`` False (a wrong answer for the accuracy, as in a benchmark).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    path = Path(results) if results else None
    done: dict[str, dict[str, Any]] = {}
    if path and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that task is answered again
                    continue
                done[rec["task_id"]] = rec
    lock = threading.Lock()

    def one(task: Task) -> dict[str, Any]:
        try:
            if generator is None:
                out = generate(llm, task, playbook, budget=budget).parsed
            else:
                out = GeneratorOutput.model_validate(generator(task, playbook, None).model_dump())
            fb = evaluator(task, out.final_answer)  # type: ignore[union-attr]
            rec = {"task_id": task.id, "answer": out.final_answer, "cited": out.bullet_ids, "error": None}  # type: ignore[union-attr]
            rec |= {"correct": fb.correct, "score": fb.score, "message": fb.message}
        except Exception as e:  # an LLM failure, or a wrapped agent's: the task is scored, the run goes on
            if generator is None and not isinstance(e, LLMError):
                raise
            rec = {"task_id": task.id, "answer": None, "cited": [], "error": f"{type(e).__name__}: {e}"}
            rec |= {"correct": False if task.target is not None else None, "score": 0.0, "message": ""}
        if path:
            with lock, path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
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
    by_id = {**done, **{r["task_id"]: r for r in fresh}}
    return Evaluation([by_id[t.id] for t in tasks], spend)


@dataclass
class Learner:
    """What the learning runners share: the loop's collaborators and where to keep resumable state."""

    llm: LLM
    store: PlaybookStore
    playbook: str
    evaluator: Evaluator
    workdir: Path
    run_id: str
    namespace: str = "default"
    config: LoopConfig = field(default_factory=LoopConfig)
    refiner: Refiner | None = None
    guard: Guard | None = None
    generator: Generator | None = None
    concurrency: int = 1
    on_step: Callable[[dict[str, Any]], None] | None = None

    def loop(self, tasks: Sequence[Task], piece: str, **config: Any) -> RunResult:
        ctx = LoopContext(
            tasks=list(tasks),
            llm=self.llm,
            store=self.store,
            playbook=self.playbook,
            evaluator=self.evaluator,
            run_id=f"{self.run_id}:{piece}",
            namespace=self.namespace,
            config=replace(self.config, **config),
            refiner=self.refiner,
            guard=self.guard,
            generator=self.generator,
            on_step=self.on_step,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        return run(ctx, self.workdir / "checkpoints.db")

    def evaluate(self, tasks: Sequence[Task], version: int, piece: str) -> Evaluation:
        return evaluate(
            tasks,
            llm=self.llm,
            playbook=self.store.load(self.playbook, version, namespace=self.namespace),
            evaluator=self.evaluator,
            budget=self.config.playbook_budget,
            generator=self.generator,
            concurrency=self.concurrency,
            results=self.workdir / f"{piece}.jsonl",
        )

    def head(self) -> int:
        return self.store.head(self.playbook, namespace=self.namespace).version


@dataclass
class Checkpoint:
    epoch: int
    step: int  # train steps done so far, over all epochs
    version: int
    accuracy: float | None


@dataclass
class OfflineResult:
    steps: list[dict[str, Any]]  # the loop's records, all epochs
    checkpoints: list[Checkpoint]  # validation results
    best_version: int
    spend: Spend

    @property
    def train_accuracy(self) -> float | None:
        return share_correct(self.steps)


def offline(
    learner: Learner, train: Sequence[Task], val: Sequence[Task] = (), *, epochs: int = 1, eval_every: int | None = None
) -> OfflineResult:
    """Train on ``train`` for ``epochs``; validate on ``val`` every ``eval_every`` steps (default: once per epoch)
    and at the start; tag the best version ``best`` (the head when there is no validation set)."""
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    every = eval_every or len(train) or 1
    steps: list[dict[str, Any]] = []
    checkpoints: list[Checkpoint] = []

    def validate(epoch: int, step: int) -> None:
        version = learner.head()
        if any(c.version == version for c in checkpoints):
            acc = next(c.accuracy for c in checkpoints if c.version == version)
        else:
            acc = learner.evaluate(val, version, f"val-v{version}").accuracy
        checkpoints.append(Checkpoint(epoch, step, version, acc))

    with _Meter(learner.llm) as spend:
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
    learner.store.tag(learner.playbook, "best", best_version, namespace=learner.namespace)
    return OfflineResult(steps, checkpoints, best_version, spend)


@dataclass
class OnlineResult:
    windows: list[dict[str, Any]]  # per window: first index, size, accuracy, version before/after
    predictions: list[dict[str, Any]]  # one record per task: the answer made before adapting on it
    spend: Spend

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.predictions)


def _window(w: int, start: int, preds: list[dict[str, Any]], before: int, after: int) -> dict[str, Any]:
    acc = share_correct(preds)
    return {
        "window": w,
        "start": start,
        "size": len(preds),
        "accuracy": acc,
        "version_before": before,
        "version_after": after,
    }


def online(learner: Learner, tasks: Sequence[Task], *, window: int = 1) -> OnlineResult:
    """Evaluate each window with the current playbook, then adapt on it in order."""
    if window < 1:
        raise ValueError("window must be at least 1")
    windows: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    with _Meter(learner.llm) as spend:
        if window == 1:  # one loop over the stream: each first answer is made before its step adapts
            before = learner.head()
            res = learner.loop(tasks, "stream")
            predictions = res.results
            for w, r in enumerate(res.results):
                windows.append(_window(w, w, [r], before if w == 0 else res.results[w - 1]["version"], r["version"]))
        else:
            for w, start in enumerate(range(0, len(tasks), window)):
                chunk = tasks[start : start + window]
                before = learner.head()
                preds = learner.evaluate(chunk, before, f"online-w{w}").records
                learner.loop(chunk, f"w{w}")
                predictions.extend(preds)
                windows.append(_window(w, start, preds, before, learner.head()))
    return OnlineResult(windows, predictions, spend)


__all__ = [
    "Checkpoint",
    "Evaluation",
    "Learner",
    "OfflineResult",
    "OnlineResult",
    "Spend",
    "evaluate",
    "offline",
    "online",
]
