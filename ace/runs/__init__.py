"""Everything that drives the loop: the one run factory, the runners (eval-only, offline, online), experiments
(``ace run``), the demo, learning from agents' chat logs, trajectories, re-execution and reports."""

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
