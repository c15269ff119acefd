"""The one place a loop run is built: :class:`RunSetup` holds what runs learn with, :func:`build` turns it and a
list of tasks into a :class:`~ace.loop.LoopContext` with the run's files named, and :func:`start` runs it.

Every run built here leaves, under its work directory, ``<run id>.checkpoints.db`` (LangGraph's checkpoints, for
resuming) and ``<run id>.trajectory.jsonl`` (every step, its LLM calls and resulting version, which
``ace replay`` verifies and re-executes); :func:`~ace.runs.workspace.file_stem` makes the run id a safe file name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ace.llm import LLM
from ace.loop import Generator, Guard, LoopConfig, LoopContext, RunResult, StepRecord, run
from ace.loop.refine import Refiner
from ace.memory import Memory
from ace.names import check_name
from ace.runs.trajectory import TrajectoryWriter
from ace.runs.workspace import file_stem
from ace.store import PlaybookStore
from ace.tasks import Evaluator, Task


@dataclass
class RunSetup:
    """What runs learn with: the loop's collaborators, shared by every run built from it."""

    llm: LLM
    store: PlaybookStore
    playbook: str
    evaluator: Evaluator
    namespace: str = "default"
    config: LoopConfig = field(default_factory=LoopConfig)
    refiner: Refiner | None = None
    guard: Guard | None = None
    generator: Generator | None = None
    memory: Memory | None = None
    on_step: Callable[[StepRecord], None] | None = None

    def head(self) -> int:
        return self.store.head_version(self.playbook, namespace=self.namespace)


@dataclass(frozen=True)
class RunFiles:
    """The files of one run, named after its id, inside ``workdir``."""

    workdir: Path
    run_id: str

    @property
    def trajectory(self) -> Path:
        return self.workdir / f"{file_stem(self.run_id)}.trajectory.jsonl"

    @property
    def calls(self) -> Path:
        """Where a run that records its LLM calls on a cassette keeps them."""
        return self.workdir / f"{file_stem(self.run_id)}.calls.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.workdir / f"{file_stem(self.run_id)}.checkpoints.db"


def build(
    setup: RunSetup, tasks: Sequence[Task], *, run_id: str, workdir: str | Path, **config: Any
) -> tuple[LoopContext, RunFiles]:
    """The loop context of run ``run_id`` over ``tasks`` (``config`` overrides fields of ``setup.config``), with
    its trajectory opened (the header is written when the file is new)."""
    files = RunFiles(Path(workdir), check_name(run_id, "run id"))
    ctx = LoopContext(
        tasks=list(tasks),
        llm=setup.llm,
        store=setup.store,
        playbook=setup.playbook,
        evaluator=setup.evaluator,
        run_id=run_id,
        namespace=setup.namespace,
        config=replace(setup.config, **config),
        refiner=setup.refiner,
        guard=setup.guard,
        generator=setup.generator,
        memory=setup.memory,
        trajectory=TrajectoryWriter(files.trajectory, setup.store, setup.playbook, namespace=setup.namespace),
        on_step=setup.on_step,
    )
    return ctx, files


def start(setup: RunSetup, tasks: Sequence[Task], *, run_id: str, workdir: str | Path, **config: Any) -> RunResult:
    """Run (or resume: the same ``run_id`` and ``workdir``) the loop over ``tasks``; see :func:`build`."""
    ctx, files = build(setup, tasks, run_id=run_id, workdir=workdir, **config)
    return run(ctx, files.checkpoints)


__all__ = ["RunFiles", "RunSetup", "build", "start"]
