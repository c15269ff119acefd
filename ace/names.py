"""The one rule for the names people and programs give things: playbooks, namespaces, run ids, authors, tags.

A name is stored as given after Unicode NFC normalization, and must be

- 1 to 128 characters, with no leading or trailing whitespace;
- printable: no control, format (bidi overrides, zero-width), separator-line, surrogate or unassigned characters;
- free of path tricks: no ``/`` or ``\\``, and no ``..``.

Names end up in file names (a run's checkpoints and trajectory), in database keys (SQLite and PostgreSQL take
the same names) and on terminals, so one rule applies everywhere: :func:`check_name` is called by the store, the
run factory and the CLI alike.
"""

from __future__ import annotations

import unicodedata

from ace.errors import ConfigError

MAX_NAME_CHARS = 128
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class InvalidName(ConfigError):
    """A name that breaks the rule in :mod:`ace.names`; the message says which part."""


def check_name(value: str, what: str = "name") -> str:
    """``value`` NFC-normalized, or :class:`InvalidName` saying what is wrong with it (shown escaped)."""
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be text, not {type(value).__name__}")
    name = unicodedata.normalize("NFC", value)
    shown = ascii(name) if len(name) <= 60 else ascii(name[:60]) + "..."
    if not name:
        raise InvalidName(f"{what} is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(f"{what} is {len(name)} characters, over the limit of {MAX_NAME_CHARS}: {shown}")
    if name != name.strip():
        raise InvalidName(f"{what} {shown} starts or ends with whitespace")
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise InvalidName(f"{what} {shown} contains the unprintable character U+{ord(ch):04X}")
    if "/" in name or "\\" in name:
        raise InvalidName(f"{what} {shown} contains a path separator")
    if ".." in name:
        raise InvalidName(f"{what} {shown} contains '..'")
    return name


def check_optional(value: str | None, what: str) -> str | None:
    return None if value is None else check_name(value, what)


__all__ = ["MAX_NAME_CHARS", "InvalidName", "check_name", "check_optional"]
