"""JSON in and out (pure): read with bounds, written as lines that survive any content.

- :func:`load_json` has a size limit and a nesting limit, so hostile input is a clear error, never a
  ``RecursionError`` or an unbounded allocation. Everything ACE reads as JSON from outside (curator replies and
  delta files, playbook JSON and skillbooks, trajectory and cassette lines, agent logs) goes through it.
- :func:`json_line` writes one JSON Lines record with U+2028 and U+2029 escaped, and :func:`split_lines` splits a
  JSON Lines text on ``\n`` only: a bullet or a model reply holding a Unicode line separator never breaks a file.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ace.errors import AceError

MAX_DEPTH = 64  # the deepest legitimate structure (a trajectory's playbook state) is about 10 levels
MAX_JSON_CHARS = 64 * 1024 * 1024


class JSONLimitError(AceError, ValueError):
    """JSON that is too large, too deeply nested, or not JSON at all."""


def load_json(
    text: str | bytes, *, what: str = "JSON", max_chars: int = MAX_JSON_CHARS, max_depth: int = MAX_DEPTH
) -> Any:
    """``json.loads`` with a size limit and a nesting limit; raises :class:`JSONLimitError` saying which."""
    if len(text) > max_chars:
        raise JSONLimitError(f"{what} is {len(text):,} characters, over the limit of {max_chars:,}")
    try:
        data = json.loads(text)
    except RecursionError:
        raise JSONLimitError(f"{what} is nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JSONLimitError(f"not valid JSON ({e})") from None
    except ValueError as e:  # an integer of more than 4,300 digits (Python's limit on converting one)
        raise JSONLimitError(f"{what} holds a number too large to read ({str(e)[:80]})") from None
    deep = text_depth(text, stop=max_depth) if isinstance(text, str) else depth(data, stop=max_depth)
    if deep > max_depth:
        raise JSONLimitError(f"{what} is nested deeper than {max_depth} levels")
    return data


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def text_depth(text: str, *, stop: int = MAX_DEPTH) -> int:
    """:func:`depth` of the value a *valid* JSON text holds, read off the text: strings and scalars dropped, then
    the innermost pairs of brackets removed, one level per pass (each pass one regex substitution in C: a large
    document costs a few passes over its brackets, not a Python step per value). Counts no further than
    ``stop + 1``."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    deepest = 0
    while brackets and deepest <= stop:
        brackets, pairs = _INNERMOST.subn("", brackets)
        if not pairs:  # not balanced: not valid JSON (json.loads said it was)
            break
        deepest += 1
    return deepest


def depth(value: Any, *, stop: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), counting no further than ``stop + 1``."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, d = level.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item  # type: ignore[assignment]
        else:
            continue
        d += 1
        deepest = max(deepest, d)
        if deepest > stop:
            return deepest
        level.extend((child, d) for child in children)
    return deepest


__all__ = [
    "MAX_DEPTH",
    "MAX_JSON_CHARS",
    "JSONLimitError",
    "depth",
    "json_line",
    "load_json",
    "split_lines",
    "text_depth",
]


def json_line(obj: Any) -> str:
    """``obj`` as one JSON Lines record (no newline at the end): non-ASCII kept, U+2028 and U+2029 escaped (JSON
    allows them raw, but line-oriented readers split on them)."""
    return json.dumps(obj, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def split_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text, split on ``\n`` only (``str.splitlines`` also splits on U+2028, U+0085...)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines
