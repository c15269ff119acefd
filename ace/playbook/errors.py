"""Exceptions of the pure core; like every ACE error they derive from :class:`ace.errors.AceError`."""

from __future__ import annotations

from ace.errors import AceError


class DeltaError(AceError, ValueError):
    """A delta was rejected; the playbook it was applied to is unchanged.

    ``op_index`` is the 0-based position of the offending operation (``None`` when the delta as a whole is
    malformed, e.g. not JSON), ``op_type`` its type when known.
    """

    def __init__(self, reason: str, *, op_index: int | None = None, op_type: str | None = None) -> None:
        self.reason = reason
        self.op_index = op_index
        self.op_type = op_type
        where = "delta" if op_index is None else f"operation {op_index}" + (f" ({op_type})" if op_type else "")
        super().__init__(f"{where}: {reason}")


class PlaybookFormatError(AceError, ValueError):
    """Text given to a parser is not in the format it expects; ``line`` is 1-based when known."""

    def __init__(self, reason: str, *, line: int | None = None, fmt: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.fmt = fmt
        where = ", ".join(p for p in (f"{fmt} playbook" if fmt else "", f"line {line}" if line else "") if p)
        super().__init__(f"{where}: {reason}" if where else reason)
