"""The ACE loop on LangGraph: for each task, generate → evaluate → reflect (→ generate again, up to ``max_rounds``)
→ curate → refine → guard → commit → record, then the next task.

The nodes are plain functions (:mod:`ace.loop.nodes`); this module only wires them and runs the graph. A
checkpointer (SQLite, keyed by the run id) saves the typed state after every node, so a run that is interrupted
resumes where it was; each step commits with the idempotency key ``"<run id>:<task index>"``, so a step that had
committed before the crash is not applied twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from ace.loop.context import LoopContext
from ace.loop.nodes import (
    commit_node,
    curate_node,
    evaluate_node,
    generate_node,
    guard_node,
    record_node,
    refine_node,
    reflect_node,
)
from ace.loop.state import CHECKPOINT_TYPES, LoopState, StepRecord
from ace.tasks import share_correct
from ace.telemetry import loop_node, traced_run

NODES = {
    "generate": generate_node,
    "evaluate": evaluate_node,
    "reflect": reflect_node,
    "curate": curate_node,
    "refine": refine_node,
    "guard": guard_node,
    "commit": commit_node,
    "record": record_node,
}


# -- routing: where a step goes after each node ------------------------------------------------------------------
def after_generate(state: LoopState, ctx: LoopContext) -> str:
    if not state.get("error"):
        return "evaluate"
    # a failed step still passes through commit when learning: it may be the last of a batch that must land
    return "commit" if ctx.config.learn else "record"


def after_evaluate(state: LoopState, ctx: LoopContext) -> str:
    return "reflect" if ctx.config.learn else "record"


def after_reflect(state: LoopState, ctx: LoopContext) -> str:
    if state.get("error"):
        return "commit"
    feedback = state.get("feedback")
    wrong = feedback is not None and feedback.correct is False
    return "generate" if wrong and state.get("round", 1) < ctx.config.max_rounds else "curate"


def on_success(next_node: str, state: LoopState) -> str:
    return "commit" if state.get("error") else next_node


def next_task(state: LoopState, ctx: LoopContext) -> str:
    return "generate" if state.get("index", 0) < len(ctx.tasks) else END


def build_graph(ctx: LoopContext) -> StateGraph[LoopState]:
    """The loop as an (uncompiled) StateGraph; compile it with a checkpointer, or embed it as a subgraph."""
    g = StateGraph(LoopState)
    for name, fn in NODES.items():
        g.add_node(name, partial(_call, fn, ctx=ctx))
    g.add_conditional_edges(START, partial(next_task, ctx=ctx), ["generate", END])
    g.add_conditional_edges("generate", partial(after_generate, ctx=ctx), ["evaluate", "commit", "record"])
    g.add_conditional_edges("evaluate", partial(after_evaluate, ctx=ctx), ["reflect", "record"])
    g.add_conditional_edges("reflect", partial(after_reflect, ctx=ctx), ["generate", "curate", "commit"])
    g.add_conditional_edges("curate", partial(on_success, "refine"), ["refine", "commit"])
    g.add_conditional_edges("refine", partial(on_success, "guard"), ["guard", "commit"])
    g.add_edge("guard", "commit")
    g.add_edge("commit", "record")
    g.add_conditional_edges("record", partial(next_task, ctx=ctx), ["generate", END])
    return g


def _call(fn: Any, state: LoopState, *, ctx: LoopContext) -> LoopState:
    return loop_node(fn, state, ctx)  # type: ignore[no-any-return]  # in its step's span when OpenTelemetry is on


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer, allowed to restore the loop state's own types (and only those of ours)."""
    return JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in CHECKPOINT_TYPES])


@dataclass
class RunResult:
    run_id: str
    results: list[StepRecord]
    resumed: bool

    @property
    def accuracy(self) -> float | None:
        return share_correct(self.results)

    @property
    def failed(self) -> list[StepRecord]:
        return [r for r in self.results if r.error]


@traced_run  # a span per run, its steps and nodes inside, when OpenTelemetry is on (ace.telemetry)
def run(ctx: LoopContext, checkpoints: str | Path) -> RunResult:
    """Run (or resume) ``ctx.run_id`` over ``ctx.tasks``; state is checkpointed in the SQLite file ``checkpoints``."""
    Path(checkpoints).parent.mkdir(parents=True, exist_ok=True)
    if ctx.trajectory is not None:
        ctx.trajectory.start(ctx.describe(), ctx.llm)
    conn = sqlite3.connect(str(checkpoints), check_same_thread=False)
    try:
        graph = build_graph(ctx).compile(checkpointer=SqliteSaver(conn, serde=checkpoint_serializer()))
        config: RunnableConfig = {
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
            kept = {k: v for k, v in saved.values.items() if k != "results"}
            start = cast(LoopState, kept or {"index": 0, "round": 0})
            final = graph.invoke(start, config, durability="sync")
        if ctx.trajectory is not None:
            ctx.trajectory.finish()
        return RunResult(ctx.run_id, list(final.get("results", [])), resumed)
    finally:
        conn.close()


__all__ = ["NODES", "RunResult", "build_graph", "checkpoint_serializer", "run"]
