"""The one place a loop run is built: :class:`RunSetup` (defined in :mod:`ace.loop.context`) holds what runs learn
with, :func:`build` turns it and a list of tasks into a :class:`~ace.loop.LoopContext` (which holds the setup)
with the run's files named, and :func:`start` runs it.

Every run built here leaves, under its work directory, ``<run id>.checkpoints.db`` (LangGraph's checkpoints, for
resuming) and ``<run id>.trajectory.jsonl`` (every step, its LLM calls and resulting version, which
``ace replay`` verifies and re-executes); :func:`~ace.runs.workspace.file_stem` makes the run id a safe file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ace.loop import LoopContext, RunResult, RunSetup, run
from ace.names import check_name
from ace.runs.trajectory import TrajectoryWriter
from ace.runs.workspace import file_stem
from ace.tasks import Task


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
    if config:  # this run's options differ: a setup of its own, with the same collaborators
        setup = replace(setup, config=replace(setup.config, **config))
    trajectory = TrajectoryWriter(files.trajectory, setup.store, setup.playbook, namespace=setup.namespace)
    ctx = LoopContext(setup, list(tasks), run_id, trajectory=trajectory)
    return ctx, files


def start(setup: RunSetup, tasks: Sequence[Task], *, run_id: str, workdir: str | Path, **config: Any) -> RunResult:
    """Run (or resume: the same ``run_id`` and ``workdir``) the loop over ``tasks``; see :func:`build`."""
    ctx, files = build(setup, tasks, run_id=run_id, workdir=workdir, **config)
    return run(ctx, files.checkpoints)


__all__ = ["RunFiles", "RunSetup", "build", "start"]
