"""Everything the loop's nodes need besides the state: the tasks, the model, the store, the roles' collaborators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from ace.errors import ConfigError
from ace.llm import LLM
from ace.loop.refine import Refiner
from ace.loop.state import Generator, Guard, LoopState, RunDescription, StepRecord, StepSink
from ace.memory import Memory
from ace.playbook import Playbook
from ace.playbook.render import LAYOUTS, Layout
from ace.store import PlaybookStore
from ace.tasks import Evaluator, Rebuildable, Task


@dataclass
class LoopConfig:
    max_rounds: int = 3  # generation attempts per task: a wrong answer is reflected on and retried
    playbook_budget: int | None = 2000  # tokens of playbook shown to the generator and the curator
    learn: bool = True  # False: eval-only, nothing is committed
    ground_truth: bool = True  # False: the reflector sees execution feedback only, never the target
    batch_size: int = 1  # >1: the deltas of a batch of tasks are proposed against one version and merged
    # the bullets most relevant to the question, shown again right before it (0: off; see roles.generate)
    focus: int = 0
    # "copy": the answer is chosen among spans of the focused bullets (families whose answers are in the context)
    answers: Literal["free", "copy"] = "free"
    # "facts": copy-friendly curation (the lesson as spans copied from question and feedback, an ADD / UPDATE /
    # NONE choice, bullet text written by code); "free": the paper's free-text reflection and curator delta
    curation: Literal["free", "facts"] = "free"
    # how the playbook is laid out in the roles' prompts: "stable" keeps the prompt before the first real edit
    # byte-identical from step to step (a provider's prompt cache reuses it; ace.playbook.render); "sections" is
    # the paper's text with counters inline (what runs recorded before the stable layout existed used)
    layout: Layout = "stable"

    def __post_init__(self) -> None:
        if self.max_rounds < 1 or self.batch_size < 1:
            raise ConfigError("max_rounds and batch_size must be at least 1")
        if self.focus < 0:
            raise ConfigError("focus must be >= 0")
        if self.answers == "copy" and self.focus < 1:
            raise ConfigError("answers = 'copy' copies from the focused bullets: set focus >= 1")
        if self.answers not in ("free", "copy") or self.curation not in ("free", "facts"):
            raise ConfigError("answers is 'free' or 'copy'; curation is 'free' or 'facts'")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout is one of {', '.join(LAYOUTS)}, not {self.layout!r}")


@dataclass
class LoopContext:
    """What a run of the loop works with. Build it with :func:`ace.runs.start` (which also names the run's
    checkpoint and trajectory files), or by hand for a loop you drive yourself."""

    tasks: list[Task]
    llm: LLM
    store: PlaybookStore
    playbook: str
    evaluator: Evaluator
    run_id: str
    namespace: str = "default"
    config: LoopConfig = field(default_factory=LoopConfig)
    refiner: Refiner | None = None
    guard: Guard | None = None
    generator: Generator | None = None
    memory: Memory | None = None  # tiered memory: its context replaces the bare playbook for the built-in generator
    trajectory: StepSink | None = None  # every step, its LLM calls and resulting version (ace.runs.trajectory)
    on_step: Callable[[StepRecord], None] | None = None  # called with each step's record (progress display)
    _versions: dict[int, Playbook] = field(default_factory=dict, init=False, repr=False)

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
            config=asdict(self.config),
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
        return self.store.head_version(self.playbook, namespace=self.namespace)

    def playbook_at(self, version: int) -> Playbook:
        """Version ``version`` of the run's playbook, loaded once and kept for the nodes of the step."""
        pb = self._versions.get(version)
        if pb is None:
            pb = self.store.load(self.playbook, version, namespace=self.namespace)
            self._versions = {version: pb}  # a step reads one version; the next step reads the next
        return pb


__all__ = ["LoopConfig", "LoopContext"]
