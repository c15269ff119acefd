"""The one root of every error ACE raises on purpose, and the errors that belong to no single layer.

Each layer defines its own specific errors (``DeltaError`` in :mod:`ace.playbook`, ``StoreError`` in
:mod:`ace.store`, ``LLMError`` in :mod:`ace.llm`, ...), all derived from :class:`AceError`, so a front end catches
``AceError`` to show one clear line and lets anything else (a bug) surface with its traceback. Errors about bad
input also derive from ``ValueError``, as a caller that validates input would expect.
"""

from __future__ import annotations


class AceError(Exception):
    """Base class of every error ACE raises on purpose; its message says what to do next."""


class ConfigError(AceError, ValueError):
    """A setting, argument or configuration file is invalid, or names something that is not known."""


class InputFileError(AceError, ValueError):
    """A file given to ACE (tasks, logs, a trajectory, a report source) cannot be read; the message names it and
    the line."""


__all__ = ["AceError", "ConfigError", "InputFileError"]
