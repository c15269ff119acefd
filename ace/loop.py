"""The ACE loop on LangGraph: for each task, generate → evaluate → reflect (→ generate again, up to ``max_rounds``)
→ curate → refine → guard → commit, then the next task.

Each node is a plain function ``node(state, ctx) -> update`` that can be called and tested without the graph; the
graph only wires them. A checkpointer (SQLite, keyed by the run id) saves the state after every node, so a run
that is interrupted resumes where it was; each step commits with the idempotency key ``"<run id>:<task index>"``,
so a step that had committed before the crash is not applied twice.

What is committed per step is one delta: the reflector's tags on *cited* bullets (plain code, :func:`tag_delta`)
plus the curator's operations, plus the refiner's merges and prunes when a :class:`~ace.refine.Refiner` is set.
It is checked by applying it in memory first: an invalid delta, a failed LLM call or a guard's veto records the
step as failed with the reason, and the playbook is untouched.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from ace.llm import LLM, LLMError
from ace.memory import Episode, Memory
from ace.playbook import Delta, DeltaError, Playbook, Source, apply, merge_deltas
from ace.refine import Refiner
from ace.roles import GeneratorOutput, Reflection, curate, generate, reflect, tag_delta
from ace.store import PlaybookStore
from ace.tasks import Evaluator, Feedback, Task, evaluator_spec, share_correct
from ace.trajectory import TrajectoryWriter

# (before, after) -> a reason to reject the candidate version, or None. The collapse detectors plug in here.
Guard = Callable[[Playbook, Playbook], str | None]
# (task, playbook, hint from a failed round) -> the answer with the bullets it cites. The default calls the LLM
# with the generator prompt; ``ace.agents`` wraps an existing agent (a callable or a compiled LangGraph graph).
Generator = Callable[[Task, Playbook, str | None], GeneratorOutput]


@dataclass
class LoopConfig:
    max_rounds: int = 3  # generation attempts per task: a wrong answer is reflected on and retried
    playbook_budget: int | None = 2000  # tokens of playbook shown to the generator and the curator
    learn: bool = True  # False: eval-only, nothing is committed
    ground_truth: bool = True  # False: the reflector sees execution feedback only, never the target
    batch_size: int = 1  # >1: the deltas of a batch of tasks are proposed against one version and merged

    def __post_init__(self) -> None:
        if self.max_rounds < 1 or self.batch_size < 1:
            raise ValueError("max_rounds and batch_size must be at least 1")


@dataclass
class LoopContext:
    """Everything the nodes need besides the state."""

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
    trajectory: TrajectoryWriter | None = None  # every step, its LLM calls and resulting version, as JSONL
    on_step: Callable[[dict[str, Any]], None] | None = None  # called with each step's record (progress display)

    def __post_init__(self) -> None:
        if self.trajectory is not None:
            if self.trajectory.recorder not in self.llm.observers:
                self.llm.observers.append(self.trajectory.recorder)
            self.trajectory.describe_run(self.describe())

    def describe(self) -> dict[str, Any]:
        """What a re-execution needs to run the same tasks the same way (the trajectory's ``run`` line)."""
        generator: dict[str, Any] | None = {"name": "llm"}
        if self.generator is not None:
            spec = getattr(self.generator, "spec", None)
            generator = dict(spec) if isinstance(spec, dict) else None
        refiner = None
        if self.refiner is not None:
            refiner = {"threshold": self.refiner.threshold, "prune_margin": self.refiner.prune_margin}
        return {
            "run_id": self.run_id,
            "config": asdict(self.config),
            "evaluator": evaluator_spec(self.evaluator),
            "generator": generator,
            "sampling": self.llm.sampling.to_dict(),
            "refiner": refiner,
            "memory": self.memory is not None,
            "guard": self.guard is not None,
        }

    def task(self, state: LoopState) -> Task:
        return self.tasks[state["index"]]

    def load(self) -> Playbook:
        return self.store.load(self.playbook, namespace=self.namespace)


class LoopState(TypedDict, total=False):
    index: int  # the task being worked on
    round: int
    first_correct: bool | None  # correctness of the first answer: the accuracy a run reports
    answer: dict[str, Any] | None
    feedback: dict[str, Any] | None
    reflection: dict[str, Any] | None
    hint: str | None
    delta: str | None  # the step's delta (JSON), once curated
    pending: list[str]  # valid deltas of the current batch, not committed yet (batch_size > 1)
    committed: bool | None  # whether this step's delta is in the store now
    buffer: list[dict[str, Any]]  # the short-term memory tier, checkpointed with the run
    error: str | None
    results: Annotated[list[dict[str, Any]], operator.add]


# -- nodes: plain functions ------------------------------------------------------------------------------------
def generate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task, pb, hint = ctx.task(state), ctx.load(), state.get("hint")
    try:
        if ctx.generator is None:
            context = None
            if ctx.memory is not None:
                buffer = ctx.memory.buffer(state.get("buffer"))
                context = ctx.memory.context(task, pb, buffer=buffer, budget=ctx.config.playbook_budget).text
            out = generate(ctx.llm, task, pb, budget=ctx.config.playbook_budget, hint=hint, context=context).parsed
        else:
            out = ctx.generator(task, pb, hint)
            out = GeneratorOutput.model_validate(out.model_dump() if isinstance(out, GeneratorOutput) else out)
    except LLMError as e:
        return {"error": f"generator: {e}"}
    except Exception as e:  # a wrapped agent is user code: its failure fails the step, not the run
        if ctx.generator is None:
            raise
        return {"error": f"generator (agent): {type(e).__name__}: {e}"}
    return {"answer": out.model_dump(), "round": state.get("round", 0) + 1}  # type: ignore[union-attr]


def evaluate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task = ctx.task(state)
    answer = GeneratorOutput.model_validate(state["answer"]).final_answer
    fb = ctx.evaluator(task, answer)
    update: LoopState = {"feedback": fb.model_dump()}
    if state.get("round", 1) == 1:
        update["first_correct"] = fb.correct
    return update


def reflect_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task = ctx.task(state)
    fb = Feedback.model_validate(state["feedback"])
    if not ctx.config.ground_truth:  # execution feedback only: judge the answer without the target
        fb = ctx.evaluator(task.model_copy(update={"target": None}), state["answer"]["final_answer"])
    try:
        r = reflect(ctx.llm, task, ctx.load(), GeneratorOutput.model_validate(state["answer"]), fb)
    except LLMError as e:
        return {"error": f"reflector: {e}"}
    refl: Reflection = r.parsed  # type: ignore[assignment]
    return {"reflection": refl.model_dump(), "hint": f"{refl.key_insight} {refl.correct_approach}".strip()}


def curate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task = ctx.task(state)
    pb = ctx.load()
    source = Source(task_id=task.id, step=state["index"] + 1, run_id=ctx.run_id, role="curator")
    refl = Reflection.model_validate(state["reflection"])
    try:
        proposal = curate(ctx.llm, pb, refl, budget=ctx.config.playbook_budget).parsed
    except LLMError as e:
        return {"error": f"curator: {e}"}
    tags = tag_delta(pb, GeneratorOutput.model_validate(state["answer"]), refl, source)
    ops = [*tags.operations, *proposal.to_delta(source).operations]  # type: ignore[union-attr]
    delta = Delta(operations=ops, reasoning=proposal.reasoning, source=source)  # type: ignore[union-attr]
    return _checked(pb, delta, ctx, "curator")


def _checked(pb: Playbook, delta: Delta, ctx: LoopContext, who: str) -> LoopState:
    """The candidate delta as the step's state, or the step's error if it does not apply to the playbook."""
    try:
        apply(pb, delta, policy=ctx.store.policy)
    except DeltaError as e:
        return {"error": f"{who}: {e}"}
    return {"delta": delta.to_json()}


def refine_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Grow-and-refine on the candidate: merge near-duplicates and prune harmful bullets, in the same delta."""
    if ctx.refiner is None:
        return {}
    pb = ctx.load()
    delta = Delta.model_validate_json(state["delta"])  # type: ignore[arg-type]
    extra = ctx.refiner.refine(apply(pb, delta, policy=ctx.store.policy).playbook, source=delta.source)
    if not extra.operations:
        return {}
    combined = Delta(operations=[*delta.operations, *extra.operations], reasoning=delta.reasoning, source=delta.source)
    return _checked(pb, combined, ctx, "refine")


def guard_node(state: LoopState, ctx: LoopContext) -> LoopState:
    if ctx.guard is None:
        return {}
    pb = ctx.load()
    candidate = apply(pb, Delta.model_validate_json(state["delta"]), policy=ctx.store.policy)  # type: ignore[arg-type]
    reason = ctx.guard(pb, candidate.playbook)
    return {"error": f"guard: {reason}"} if reason else {}


def commit_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Commit the step's delta, or with ``batch_size > 1`` hold it until the batch is complete and then commit the
    batch's deltas merged into one version (a delta that no longer applies after the others is dropped, with why).

    Every step passes here, failed ones too, so that the last step of a batch flushes it either way. The commit key
    is ``"<run id>:<first task index of the batch>"``: repeated after a crash, it finds the version it made.
    """
    index, size = state["index"], ctx.config.batch_size
    # an empty delta (nothing tagged, nothing curated) changes nothing: it is not worth a version
    step_ok = bool(state.get("delta")) and not state.get("error") and _has_ops(state["delta"])  # type: ignore[arg-type]
    pending = [*(state.get("pending") or []), *([state["delta"]] if step_ok else [])]
    if (index + 1) % size and index + 1 < len(ctx.tasks):
        return {"pending": pending, "committed": False}
    update: LoopState = {"pending": [], "committed": False}
    if not pending:
        return update
    deltas = [Delta.model_validate_json(d) for d in pending]
    if len(deltas) == 1:
        delta, dropped = deltas[0], []
    else:
        merged = merge_deltas(ctx.load(), deltas, policy=ctx.store.policy)
        delta = merged.delta.model_copy(update={"source": Source(run_id=ctx.run_id, step=index + 1, role="batch")})
        dropped = merged.rejected
    try:
        ctx.store.commit(
            ctx.playbook,
            delta,
            namespace=ctx.namespace,
            key=f"{ctx.run_id}:{index - index % size}",
            author=f"ace run {ctx.run_id}",
            message=delta.reasoning,
        )
    except DeltaError as e:  # the head moved under us (another writer) and the delta no longer applies
        reason = f"commit: {e}"
        return {**update, "error": f"{state['error']}; {reason}" if state.get("error") else reason}
    update["committed"] = step_ok and len(deltas) - 1 not in {i for i, _ in dropped}  # this step's is the last
    if dropped:
        reason = "batch: " + "; ".join(f"delta {i + 1} of {len(deltas)} dropped ({why})" for i, why in dropped)
        update["error"] = f"{state['error']}; {reason}" if state.get("error") else reason
    return update


def _remember(
    state: LoopState, ctx: LoopContext, task: Task, record: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write the finished step to the memory tiers: an episode, facts from its reflection, a short-term entry.
    Runs after the commit, so a memory failure never touches the playbook; it is noted in the step's record."""
    assert ctx.memory is not None
    answer = (state.get("answer") or {}).get("final_answer")
    fb = state.get("feedback") or {}
    refl = state.get("reflection") or {}
    outcome = {True: "success", False: "failure"}.get(fb.get("correct"), "unknown")  # type: ignore[call-overload]
    lessons = " ".join(x for x in (refl.get("key_insight"), refl.get("correct_approach")) if x)
    episode = Episode(
        id=f"{ctx.run_id}:{state['index']}",
        task=task.input,
        summary=f"answered {answer!r}; {fb.get('message', '')}" if answer is not None else f"failed: {record['error']}",
        outcome=outcome,
        reflection=lessons,
        playbook=ctx.playbook,
        version=record["version"],
        task_id=task.id,
        run_id=ctx.run_id,
    )
    buffer = ctx.memory.buffer(state.get("buffer"))
    try:
        problems = ctx.memory.remember(episode, step=state["index"] + 1, llm=ctx.llm, lessons=lessons, buffer=buffer)
    except Exception as e:
        problems = [f"memory: {type(e).__name__}: {e}"]
    return (buffer.to_list() if buffer is not None else []), problems


def _has_ops(delta_json: str) -> bool:
    return bool(Delta.model_validate_json(delta_json).operations)


def record_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Close the step: one result record, then reset the per-task fields and move to the next task."""
    task = ctx.task(state)
    fb = state.get("feedback") or {}
    committed = bool(state.get("committed"))
    correct = state.get("first_correct")
    if correct is None and state.get("error") and not state.get("round") and task.target is not None:
        correct = False  # no answer could be produced: scored as a wrong answer, as an evaluation scores it
    record = {
        "index": state["index"],
        "task_id": task.id,
        "correct": correct,
        "final_correct": fb.get("correct"),
        "score": fb.get("score"),  # the last round's feedback: partial credit and what the environment said
        "feedback": fb.get("message"),
        "rounds": state.get("round", 0),
        "error": state.get("error"),
        "version": ctx.store.head(ctx.playbook, namespace=ctx.namespace).version,
        "committed": committed,
        "pending": bool(state.get("pending")),
        "delta": state["delta"] if state.get("delta") and not state.get("error") and _has_ops(state["delta"]) else None,
    }
    update: LoopState = {}
    if ctx.memory is not None and ctx.config.learn:
        update["buffer"], record["memory"] = _remember(state, ctx, task, record)
    if ctx.trajectory is not None:
        ctx.trajectory.step(record, task=task.model_dump())
    if ctx.on_step:
        ctx.on_step(record)
    return {
        **update,
        "results": [record],
        "index": state["index"] + 1,
        "round": 0,
        "first_correct": None,
        "answer": None,
        "feedback": None,
        "reflection": None,
        "hint": None,
        "delta": None,
        "committed": None,
        "error": None,
    }


# -- routing and wiring ----------------------------------------------------------------------------------------
def _after(ok: str) -> Callable[[LoopState], str]:
    # a failed step still passes through commit: it may be the last of a batch whose other deltas must land
    return lambda state: "commit" if state.get("error") else ok


def _after_generate(ctx: LoopContext) -> Callable[[LoopState], str]:
    return lambda state: "evaluate" if not state.get("error") else "commit" if ctx.config.learn else "record"


def _after_evaluate(ctx: LoopContext) -> Callable[[LoopState], str]:
    return lambda state: "reflect" if ctx.config.learn else "record"


def _after_reflect(ctx: LoopContext) -> Callable[[LoopState], str]:
    def route(state: LoopState) -> str:
        if state.get("error"):
            return "commit"
        wrong = (state.get("feedback") or {}).get("correct") is False
        return "generate" if wrong and state.get("round", 1) < ctx.config.max_rounds else "curate"

    return route


def _next_task(ctx: LoopContext) -> Callable[[LoopState], str]:
    return lambda state: "generate" if state.get("index", 0) < len(ctx.tasks) else END


def build_graph(ctx: LoopContext) -> StateGraph:
    """The loop as an (uncompiled) StateGraph; compile it with a checkpointer, or embed it as a subgraph."""
    g = StateGraph(LoopState)
    nodes = {
        "generate": generate_node,
        "evaluate": evaluate_node,
        "reflect": reflect_node,
        "curate": curate_node,
        "refine": refine_node,
        "guard": guard_node,
        "commit": commit_node,
        "record": record_node,
    }
    for name, fn in nodes.items():
        g.add_node(name, lambda state, fn=fn: fn(state, ctx))
    g.add_conditional_edges(START, _next_task(ctx), ["generate", END])
    g.add_conditional_edges("generate", _after_generate(ctx), ["evaluate", "commit", "record"])
    g.add_conditional_edges("evaluate", _after_evaluate(ctx), ["reflect", "record"])
    g.add_conditional_edges("reflect", _after_reflect(ctx), ["generate", "curate", "commit"])
    g.add_conditional_edges("curate", _after("refine"), ["refine", "commit"])
    g.add_conditional_edges("refine", _after("guard"), ["guard", "commit"])
    g.add_conditional_edges("guard", _after("commit"), ["commit"])
    g.add_edge("commit", "record")
    g.add_conditional_edges("record", _next_task(ctx), ["generate", END])
    return g


@dataclass
class RunResult:
    run_id: str
    results: list[dict[str, Any]]
    resumed: bool

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.results)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["error"]]


def run(ctx: LoopContext, checkpoints: str | Path) -> RunResult:
    """Run (or resume) ``ctx.run_id`` over ``ctx.tasks``; state is checkpointed in the SQLite file ``checkpoints``."""
    Path(checkpoints).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(checkpoints), check_same_thread=False)
    try:
        graph = build_graph(ctx).compile(checkpointer=SqliteSaver(conn))
        config: dict[str, Any] = {
            "configurable": {"thread_id": ctx.run_id},
            "recursion_limit": 10 + len(ctx.tasks) * (3 * ctx.config.max_rounds + 7),
        }
        saved = graph.get_state(config)
        resumed = bool(saved.values)
        # "sync": each checkpoint is on disk before the next node runs, so a crash loses at most the node it hit
        if resumed and saved.next:
            final = graph.invoke(None, config, durability="sync")
        elif resumed and saved.values.get("index", 0) >= len(ctx.tasks):
            final = saved.values  # the run had finished
        else:
            # a fresh run, or a saved state between tasks: start from it (results are kept by the channel)
            start = {k: v for k, v in saved.values.items() if k != "results"} or {"index": 0, "round": 0}
            final = graph.invoke(start, config, durability="sync")
        return RunResult(ctx.run_id, list(final.get("results", [])), resumed)
    finally:
        conn.close()
