"""Everything that drives the loop: the one run factory, the runners (eval-only, offline, online), learning from
agents' chat logs, trajectories and re-execution. (The demo, experiments from a TOML config and the reports are the
application's: :mod:`ace.app`.)

The names below are imported when first used (PEP 562), so that importing one submodule (a trajectory reader)
does not load the loop, LangGraph and the memory tiers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ace.runs.factory import RunFiles, RunSetup, build, start
    from ace.runs.runners import (
        Evaluation,
        Learner,
        OfflineResult,
        OnlineResult,
        Prediction,
        Spend,
        Window,
        evaluate,
        offline,
        online,
    )
    from ace.runs.workspace import bundled, data_dir, file_stem, runs_dir

_WHERE = {
    **dict.fromkeys(("RunFiles", "RunSetup", "build", "start"), "ace.runs.factory"),
    **dict.fromkeys(
        (
            "Evaluation",
            "Learner",
            "OfflineResult",
            "OnlineResult",
            "Prediction",
            "Spend",
            "Window",
            "evaluate",
            "offline",
            "online",
        ),
        "ace.runs.runners",
    ),
    **dict.fromkeys(("bundled", "data_dir", "file_stem", "runs_dir"), "ace.runs.workspace"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ace.runs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Evaluation",
    "Learner",
    "OfflineResult",
    "OnlineResult",
    "Prediction",
    "RunFiles",
    "RunSetup",
    "Spend",
    "Window",
    "build",
    "bundled",
    "data_dir",
    "evaluate",
    "file_stem",
    "offline",
    "online",
    "runs_dir",
    "start",
]
