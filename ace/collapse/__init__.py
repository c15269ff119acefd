"""Collapse detectors: catch a context losing what it knew, one candidate version at a time or over a history.

:mod:`ace.collapse.detectors` holds the detectors and their thresholds (the policy), :mod:`ace.collapse.index` the
incremental index they read (aggregates and token indexes carried from a version to the next in O(delta)).
"""

from ace.collapse.detectors import Alert, CollapseGuard, Detectors, Severity, regression
from ace.collapse.detectors import _jaccard as _jaccard
from ace.collapse.index import features, tokens

# the names tests and benchmarks have imported from here since before the split
_features = features
_tokens = tokens

__all__ = ["Alert", "CollapseGuard", "Detectors", "Severity", "regression"]
