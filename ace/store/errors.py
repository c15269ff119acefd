"""Store errors: each says what happened and what to do about it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ace.errors import AceError

_T = TypeVar("_T")


class StoreError(AceError):
    """Base class of the errors a :class:`~ace.store.PlaybookStore` raises."""


class PlaybookNotFound(StoreError, KeyError):
    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        super().__init__(f"no playbook {name!r} in namespace {namespace!r}; import or create it first")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PlaybookExists(StoreError):
    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"playbook {name!r} already exists in namespace {namespace!r}; pick another name")


class VersionNotFound(StoreError, KeyError):
    def __init__(self, name: str, version: int, head: int) -> None:
        self.version, self.head = version, head
        super().__init__(f"playbook {name!r} has no version {version} (versions run from 1 to {head})")

    def __str__(self) -> str:
        return str(self.args[0])


class StaleVersionError(StoreError):
    """Optimistic concurrency: the writer's parent is no longer the head. Reload (or rebase) and commit again."""

    def __init__(self, name: str, expected: int, actual: int) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(
            f"playbook {name!r} is at version {actual}, not {expected}: another writer committed first; "
            f"reload version {actual} and commit again (or pass expected_version=None to apply on the head)"
        )


class StoreIntegrityError(StoreError):
    """A rebuilt version does not match the digest recorded when it was committed."""


class CorruptRow(StoreIntegrityError):
    """Internal: a stored row (a snapshot, a delta of the log, a row of the materialized head) does not decode, does
    not apply, or does not hold what was recorded for it (edited by hand, bit rot). The store reports it as
    :class:`StoreIntegrityError` (or reads the version another way); any other exception raised while reading is a
    bug, and propagates as itself. ``kind`` names what was raised while decoding (``JSONDecodeError``,
    ``DeltaError``, ...)."""

    def __init__(self, reason: str | BaseException) -> None:
        super().__init__(str(reason))
        self.kind = type(reason).__name__ if isinstance(reason, BaseException) else "CorruptRow"

    @staticmethod
    def decoding(parse: Callable[[], _T]) -> _T:
        """``parse()`` (a decoder of stored text: ``json.loads``, a model's ``from_dict``, a delta's parser), what
        it raises on bad data (ValueError, TypeError, KeyError) raised as :class:`CorruptRow`."""
        try:
            return parse()
        except (ValueError, TypeError, KeyError) as e:
            raise CorruptRow(e) from e


class ImportRefused(StoreError):
    """A playbook offered for import fails the quality gate every delta meets (:mod:`ace.playbook.quality`): an
    injected instruction in a bullet or a section name, hidden characters, junk. Nothing was written. ``problems``
    lists ``(where, why)``: ``where`` is ``bullet <id>`` or ``section <name>``."""

    SHOWN = 3

    def __init__(self, namespace: str, name: str, problems: list[tuple[str, str]]) -> None:
        self.namespace, self.name, self.problems = namespace, name, problems
        shown = "; ".join(f"{where}: {why}" for where, why in problems[: self.SHOWN])
        more = f" (and {len(problems) - self.SHOWN} more)" if len(problems) > self.SHOWN else ""
        n = len(problems)
        super().__init__(
            f"playbook {name!r} was not imported into namespace {namespace!r}: {n} problem{'s' * (n != 1)} with "
            f"the quality gate every delta meets: {shown}{more}. Fix the playbook, or pass force "
            "(`ace playbook import --force`) to import it anyway; the version records who forced it"
        )
