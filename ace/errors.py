"""The one root of every error ACE raises on purpose, and the errors that belong to no single layer.

Each layer defines its own specific errors (``DeltaError`` in :mod:`ace.playbook`, ``StoreError`` in
:mod:`ace.store`, ``LLMError`` in :mod:`ace.llm`, ...), all derived from :class:`AceError`, so a front end catches
``AceError`` to show one clear line and lets anything else (a bug) surface with its traceback. Errors about bad
input also derive from ``ValueError``, as a caller that validates input would expect.
"""

from __future__ import annotations

from pathlib import Path


class AceError(Exception):
    """Base class of every error ACE raises on purpose; its message says what to do next."""


class ConfigError(AceError, ValueError):
    """A setting, argument or configuration file is invalid, or names something that is not known."""


class InvalidInput(AceError, ValueError):
    """A value handed to ACE breaks a rule: a logged conversation without messages, an agent's answer without a
    final answer, a cassette line that was edited, text a playbook cannot hold. The message says which rule."""


class WrongType(InvalidInput, TypeError):
    """A value handed to ACE is of the wrong type (a message's content neither text nor blocks, an agent's answer
    neither text nor a mapping); also a ``TypeError``, as it was before it was an :class:`AceError`."""


class UsageError(AceError, RuntimeError):
    """An object was used in a state that does not allow it (a game already over, a candidate restored from a
    checkpoint, a report asked for before the run) or with a dependency that lacks what it needs."""


class InputFileError(AceError, ValueError):
    """A file given to ACE (tasks, logs, a trajectory, a report source) cannot be read; the message names it and
    the line."""


MAX_INPUT_BYTES = 256 * 1024 * 1024  # the most ACE reads whole from one input file (a task file, logs, a trajectory)


def read_input(path: str | Path, *, what: str = "file", limit: int = MAX_INPUT_BYTES) -> str:
    """The text of ``path``, read no further than ``limit`` bytes and decoded as UTF-8: a file with no end
    (``/dev/zero``) or a huge one is an :class:`InputFileError`, not an exhausted memory."""
    with Path(path).open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"{path}: the {what} is over the limit of {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


__all__ = [
    "MAX_INPUT_BYTES",
    "AceError",
    "ConfigError",
    "InputFileError",
    "InvalidInput",
    "UsageError",
    "WrongType",
    "read_input",
]
