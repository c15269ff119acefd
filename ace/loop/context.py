"""Everything the loop's nodes need besides the state: what runs learn with (:class:`RunSetup`: the loop's options,
the model, the store, the roles' collaborators) and one run of it (:class:`LoopContext`, which holds its setup).
The options themselves are :class:`~ace.config.LoopConfig`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, overload

from ace.config import LoopConfig
from ace.llm import LLM
from ace.loop.refine import Refiner
from ace.loop.state import Generator, Guard, LoopState, RunDescription, StepRecord, StepSink
from ace.memory import Memory
from ace.playbook import Playbook
from ace.store import PlaybookStore
from ace.tasks import Evaluator, Rebuildable, Task


@dataclass
class RunSetup:
    """What runs learn with: the loop's options and collaborators, shared by every run built from it (each run's
    :class:`LoopContext` holds it, not a copy)."""

    llm: LLM
    store: PlaybookStore
    playbook: str
    evaluator: Evaluator
    namespace: str = "default"
    config: LoopConfig = field(default_factory=LoopConfig)
    refiner: Refiner | None = None
    guard: Guard | None = None
    generator: Generator | None = None
    memory: Memory | None = None  # tiered memory: its context replaces the bare playbook for the built-in generator
    on_step: Callable[[StepRecord], None] | None = None  # called with each step's record (progress display)

    def head(self) -> int:
        return self.store.head_version(self.playbook, namespace=self.namespace)


T = TypeVar("T")


class _FromSetup(Generic[T]):
    """An attribute of the context that is its setup's (read and written through)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, ctx: None, owner: type) -> _FromSetup[T]: ...
    @overload
    def __get__(self, ctx: LoopContext, owner: type) -> T: ...
    def __get__(self, ctx: LoopContext | None, owner: type) -> T | _FromSetup[T]:
        return self if ctx is None else getattr(ctx.setup, self.name)

    def __set__(self, ctx: LoopContext, value: T) -> None:
        setattr(ctx.setup, self.name, value)


@dataclass
class LoopContext:
    """One run of the loop: its setup (held, not copied: ``ctx.llm``, ``ctx.config``, ... are the setup's), its
    tasks and run id, and where its steps are recorded. Build it with :func:`ace.runs.build` or
    :func:`ace.runs.start` (which also name the run's checkpoint and trajectory files), or by hand for a loop you
    drive yourself: ``LoopContext(RunSetup(llm, store, "p", evaluator), tasks, run_id="r")``."""

    setup: RunSetup
    tasks: list[Task]
    run_id: str
    trajectory: StepSink | None = None  # every step, its LLM calls and resulting version (ace.runs.trajectory)
    _versions: dict[int, Playbook] = field(default_factory=dict, init=False, repr=False)
    _down: tuple[int, list[tuple[str, str]]] | None = field(default=None, init=False, repr=False)

    llm = _FromSetup[LLM]()
    store = _FromSetup[PlaybookStore]()
    playbook = _FromSetup[str]()
    evaluator = _FromSetup[Evaluator]()
    namespace = _FromSetup[str]()
    config = _FromSetup[LoopConfig]()
    refiner = _FromSetup[Refiner | None]()
    guard = _FromSetup[Guard | None]()
    generator = _FromSetup[Generator | None]()
    memory = _FromSetup[Memory | None]()
    on_step = _FromSetup[Callable[[StepRecord], None] | None]()

    def describe(self) -> RunDescription:
        """What a re-execution needs to run the same tasks the same way (a trajectory's ``run`` line)."""
        if self.generator is None:
            generator: dict[str, object] | None = {"name": "llm"}
        else:
            generator = dict(self.generator.spec) if isinstance(self.generator, Rebuildable) else None
        refiner = None
        if self.refiner is not None:
            refiner = {"threshold": self.refiner.threshold, "prune_margin": self.refiner.prune_margin}
        return RunDescription(
            run_id=self.run_id,
            config=self.config.to_dict(),
            evaluator=dict(self.evaluator.spec) if isinstance(self.evaluator, Rebuildable) else None,
            generator=generator,
            sampling=self.llm.sampling.to_dict(),
            refiner=refiner,
            memory=self.memory is not None,
            guard=self.guard is not None,
            policy=self.store.policy.to_dict(),
        )

    def task(self, state: LoopState) -> Task:
        return self.tasks[state["index"]]

    def head_version(self) -> int:
        return self.setup.head()

    def turned_down(self) -> list[tuple[str, str]]:
        """The lessons reviewers turned down lately (``(text, reason)``), which the curator is shown and does not
        propose again; read once per head version (a review moves the head)."""
        head = self.head_version()
        if self._down is None or self._down[0] != head:
            self._down = (head, self.store.turned_down(self.playbook, namespace=self.namespace))
        return self._down[1]

    def playbook_at(self, version: int) -> Playbook:
        """Version ``version`` of the run's playbook, loaded once and kept for the nodes of the step."""
        pb = self._versions.get(version)
        if pb is None:
            pb = self.store.load(self.playbook, version, namespace=self.namespace)
            self._versions = {version: pb}  # a step reads one version; the next step reads the next
        return pb


__all__ = ["LoopConfig", "LoopContext", "RunSetup"]
