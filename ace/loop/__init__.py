"""The ACE loop: one step as typed data (:mod:`~ace.loop.state`), plain node functions (:mod:`~ace.loop.nodes`)
wired by LangGraph (:mod:`~ace.loop.graph`), the three roles (:mod:`~ace.loop.roles`), grow-and-refine
(:mod:`~ace.loop.refine`), wrapped agents (:mod:`~ace.loop.agents`) and the registry of rebuildable evaluators and
generators (:mod:`~ace.loop.registry`)."""

from ace.loop.context import LoopConfig, LoopContext, RunSetup
from ace.loop.graph import RunResult, build_graph, run
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
from ace.loop.state import Candidate, Generator, Guard, LoopState, RunDescription, StepRecord, StepSink

__all__ = [
    "Candidate",
    "Generator",
    "Guard",
    "LoopConfig",
    "LoopContext",
    "LoopState",
    "RunDescription",
    "RunResult",
    "RunSetup",
    "StepRecord",
    "StepSink",
    "build_graph",
    "commit_node",
    "curate_node",
    "evaluate_node",
    "generate_node",
    "guard_node",
    "record_node",
    "refine_node",
    "reflect_node",
    "run",
]
