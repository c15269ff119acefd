"""What one loop step carries, as typed data: the graph's state, the step's one :class:`Candidate`, the
:class:`StepRecord` a finished step leaves, and the :class:`RunDescription` a trajectory keeps to re-execute a run.

Every value in :class:`LoopState` is a pydantic model or plain data, so LangGraph's checkpointer stores and
restores it as it is (the types are on its msgpack allow-list: :data:`CHECKPOINT_TYPES`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, PrivateAttr

from ace.errors import UsageError
from ace.llm import LLM
from ace.loop.roles import FactReflection, GeneratorOutput, Reflection
from ace.playbook import Applied, ApplyPolicy, Delta, Playbook, apply
from ace.tasks import Feedback, Task

# (before, after) -> a reason to reject the candidate version, or None. The collapse detectors plug in here.
Guard = Callable[[Playbook, Playbook], str | None]
# (task, playbook, hint from a failed round) -> the answer with the bullets it cites. The default calls the LLM
# with the generator prompt; ``ace.loop.agents`` wraps an existing agent (a callable or a compiled LangGraph graph).
Generator = Callable[[Task, Playbook, str | None], GeneratorOutput]

# Why a step failed, by kind, so that callers can tell an outage from a decision:
#   "provider": the LLM provider could not be reached or answered with an error (connection, timeout, 5xx, 429,
#               a refused request): the step could not learn, and trying again later may;
#   "llm":      the model's replies never validated, or the run's budget was spent, or a cassette had no reply:
#               the step could not learn;
#   "agent":    the wrapped agent (the generator) failed;
#   "commit":   the delta could not be committed (the head moved and it no longer fits);
#   "gate":     the quality gate refused the delta, or a batch's merge dropped it (a decision: nothing to retry);
#   "guard":    the guard (collapse detectors) refused the version (a deliberate decision).
Failure = Literal["provider", "llm", "agent", "commit", "gate", "guard"]
# the kinds of failure that are decisions about what was learned, not a failure to learn
DECIDED: frozenset[str] = frozenset({"gate", "guard"})


class Candidate(BaseModel):
    """One step's proposed change: the delta as proposed (ADD ids not yet assigned), the version it was built on,
    and, in memory, the result of applying it there once (:attr:`playbook`, :attr:`resolved`).

    Refine and guard work on this one object; commit sends :attr:`delta` with ``expected_version=base_version``.
    The applied result is not checkpointed: after a resume it is rebuilt by :meth:`on` (one more ``apply``).
    """

    model_config = ConfigDict(frozen=True)
    base_version: int
    delta: Delta
    _applied: Applied | None = PrivateAttr(default=None)

    @classmethod
    def build(cls, base: Playbook, base_version: int, delta: Delta, policy: ApplyPolicy) -> Candidate:
        """Apply ``delta`` to ``base`` (version ``base_version``); raises :class:`~ace.playbook.DeltaError`."""
        candidate = cls(base_version=base_version, delta=delta)
        candidate._applied = apply(base, delta, policy=policy)
        return candidate

    @property
    def applied(self) -> bool:
        return self._applied is not None

    @property
    def playbook(self) -> Playbook:
        """The playbook this candidate produces."""
        if self._applied is None:
            raise UsageError("candidate restored from a checkpoint: rebuild it with Candidate.on(base, policy)")
        return self._applied.playbook

    @property
    def resolved(self) -> Delta:
        """The delta as ``apply`` resolved it (ADD ops carry their assigned ids)."""
        if self._applied is None:
            raise UsageError("candidate restored from a checkpoint: rebuild it with Candidate.on(base, policy)")
        return self._applied.delta

    def on(self, base: Playbook, policy: ApplyPolicy) -> Candidate:
        """This candidate with its applied result (itself when it has one)."""
        return self if self.applied else Candidate.build(base, self.base_version, self.delta, policy)

    def extend(self, extra: Delta, policy: ApplyPolicy) -> Candidate:
        """This candidate followed by ``extra``'s operations (the refiner's merges and prunes), applied to the
        candidate's playbook only: the operations already applied are not applied again."""
        step = apply(self.playbook, extra, policy=policy)
        delta = self.delta.model_copy(update={"operations": [*self.delta.operations, *extra.operations]})
        resolved = self.resolved.model_copy(update={"operations": [*self.resolved.operations, *step.delta.operations]})
        candidate = Candidate(base_version=self.base_version, delta=delta)
        candidate._applied = Applied(step.playbook, resolved)
        return candidate


class StepRecord(BaseModel):
    """What a finished step leaves: its outcome, the version after it and the delta it proposed."""

    model_config = ConfigDict(frozen=True)
    index: int
    task_id: str
    correct: bool | None  # the first answer's verdict: what a run's accuracy counts
    final_correct: bool | None = None  # the last round's verdict
    score: float | None = None  # the last round's feedback: partial credit
    feedback: str | None = None  # and what the environment said
    rounds: int = 0
    error: str | None = None
    failure: Failure | None = None  # what kind of failure ``error`` is (see :data:`Failure`); None: no failure
    version: int  # the head after the step
    committed: bool = False  # whether this step's delta is in the store now
    pending: bool = False  # held for the rest of its batch
    delta: Delta | None = None  # the delta the step proposed (None when it failed or changed nothing)
    memory: list[str] | None = None  # problems met writing the memory tiers (None: memory off)
    refused: int = 0  # curator proposals the playbook's rules refused in this step (each one sent back, if allowed)
    repaired: bool = False  # a refused proposal was fixed by the curator and went on

    @property
    def could_not_learn(self) -> bool:
        """True when the step failed short of a decision (the provider, the model, the agent or the commit failed:
        see :data:`Failure`); False when it learned, or deliberately did not (nothing to learn, the quality gate
        or the guard refused the delta)."""
        return self.error is not None and self.failure not in DECIDED and not self.committed


class RunDescription(BaseModel):
    """How a run was set up: what a re-execution needs to run the same tasks the same way."""

    run_id: str
    config: dict[str, Any]
    evaluator: dict[str, Any] | None  # the evaluator's spec; None for one of your own
    generator: dict[str, Any] | None  # {"name": "llm"} for the built-in generator; None for your own agent
    sampling: dict[str, Any]
    refiner: dict[str, Any] | None = None
    memory: bool = False
    guard: bool = False
    # the ApplyPolicy deltas were held to (None in files written before it was recorded: no quality gate then)
    policy: dict[str, Any] | None = None


class StepSink(Protocol):
    """Where a run's steps are written as they finish (a trajectory): told how the run is set up when it starts,
    then given each step."""

    def start(self, run: RunDescription, llm: LLM) -> None: ...

    def step(self, record: StepRecord, task: Task) -> None: ...

    def finish(self) -> None: ...


class LoopState(TypedDict, total=False):
    index: int  # the task being worked on
    round: int  # generation attempts made for it
    base_version: int | None  # the version the step reads and proposes against
    first_correct: bool | None  # correctness of the first answer: the accuracy a run reports
    answer: GeneratorOutput | None
    feedback: Feedback | None
    reflection: Reflection | FactReflection | None  # its lessons are the hint of the next round
    candidate: Candidate | None
    pending: list[Candidate]  # valid candidates of the current batch, not committed yet (batch_size > 1)
    committed: bool | None  # whether this step's delta is in the store now
    buffer: list[dict[str, Any]]  # the short-term memory tier, checkpointed with the run
    error: str | None
    failure: Failure | None  # the kind of ``error`` (see :data:`Failure`)
    refused: int  # curator proposals refused in this step
    repaired: bool  # whether a refused proposal was fixed
    results: Annotated[list[StepRecord], operator.add]


# The state's own types, for the checkpointer's msgpack allow-list.
CHECKPOINT_TYPES: tuple[type[BaseModel], ...] = (
    Candidate,
    StepRecord,
    GeneratorOutput,
    Feedback,
    Reflection,
    FactReflection,
)

__all__ = [
    "CHECKPOINT_TYPES",
    "DECIDED",
    "Candidate",
    "Failure",
    "Generator",
    "Guard",
    "LoopState",
    "RunDescription",
    "StepRecord",
    "StepSink",
]
