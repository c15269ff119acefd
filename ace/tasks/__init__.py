"""Tasks and their evaluation: the ``Task`` an agent answers, the ``Feedback`` an evaluator gives, the evaluators
with ground truth, and loaders for the ACE paper's finance benchmarks (Formula, FiNER).

A task may carry ground truth (``target``) or not; an evaluator turns an answer into feedback either way (without
ground truth it can still report execution feedback, e.g. "not a number").
"""

from ace.tasks.evaluators import EVALUATORS, Exact, FinanceKind, Numeric, Tags, exact, numeric, parse_number, tags
from ace.tasks.loaders import load_finance, load_tasks
from ace.tasks.model import Evaluator, Feedback, Judged, Rebuildable, Task, accuracy, share_correct, share_of

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "Exact",
    "Feedback",
    "FinanceKind",
    "Judged",
    "Numeric",
    "Rebuildable",
    "Tags",
    "Task",
    "accuracy",
    "exact",
    "load_finance",
    "load_tasks",
    "numeric",
    "parse_number",
    "share_correct",
    "share_of",
    "tags",
]
