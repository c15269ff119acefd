"""Text rules and comparisons (pure): what text may enter a playbook (:func:`clean_text`), and the word and
number tokens grow-and-refine and the collapse detectors compare."""

from __future__ import annotations

import re
import unicodedata
from itertools import filterfalse

from ace.errors import InvalidInput

IMPORT_MAX_CHARS = 100_000  # a bullet's content on import (what a delta may add is ApplyPolicy.max_content_chars)
SECTION_MAX_CHARS = 200  # a section name, on import as in a delta (ApplyPolicy.max_section_chars)

_WORD = re.compile(r"[a-z0-9]+(?:[.,:/-][a-z0-9]+)*")
# ASCII control characters other than \t and \n; every other character to look at more closely is non-ASCII
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def unusual_char(text: str, categories: frozenset[str]) -> str | None:
    """The first character of ``text`` whose Unicode category is in ``categories`` (U+200D, the joiner inside
    emoji, excepted), looking up categories only for non-ASCII characters; ASCII control characters other than
    \t and \n count as ``Cc``."""
    if "Cc" in categories and (m := _ASCII_CONTROL.search(text)):
        return m.group(0)
    if text.isascii():
        return None
    found: list[str] = _NON_ASCII.findall(text)
    for ch in found:
        if ch != "\u200d" and unicodedata.category(ch) in categories:
            return ch
    return None


_CONTROL = frozenset({"Cc", "Cf", "Cs"})


def words(text: str) -> frozenset[str]:
    """Lower-cased word tokens; numbers and codes stay whole (``1,200``, ``k12-4f2a``, ``3.5``)."""
    return frozenset(_WORD.findall(text.casefold()))


def specifics(text: str) -> frozenset[str]:
    """The tokens that carry a number or a code: two bullets that differ in these state different facts, however
    similar the rest of their wording (and their embeddings) is."""
    return specifics_in(words(text))


def specifics_in(tokens: frozenset[str]) -> frozenset[str]:
    """:func:`specifics` from the :func:`words` of a text already split (most tokens are letters only: skipped by
    one C call each)."""
    return frozenset(filter(_HAS_DIGIT, filterfalse(str.isalpha, tokens)))


_HAS_DIGIT = re.compile(r"\d").search


def clean_text(text: str, *, limit: int, what: str = "content", single_line: bool = False) -> str:
    """Normalize and check text that goes into a playbook; raises :class:`~ace.errors.InvalidInput` (a
    ``ValueError``) saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string")
    # line endings (and the Unicode line and paragraph separators, which split lines in some readers) become \n
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n").strip()
    if not text:
        raise InvalidInput(f"{what} is empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} is {len(text)} characters, over the limit of {limit}")
    # Control characters (NUL, escapes, bidi overrides) corrupt prompts and terminals; \n and \t are fine.
    if (ch := unusual_char(text, _CONTROL)) is not None:
        raise InvalidInput(f"{what} contains the control character U+{ord(ch):04X}")
    if single_line and "\n" in text:
        raise InvalidInput(f"{what} must be a single line")
    return text


def check_stored_text(text: object, *, limit: int, what: str, single_line: bool = False) -> str:
    """``text`` if it already is what :func:`clean_text` makes of it (imports keep text byte for byte, so they
    check rather than normalize); raises :class:`~ace.errors.InvalidInput` (a ``ValueError``) saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string, not {type(text).__name__}")
    cleaned = clean_text(text, limit=limit, what=what, single_line=single_line)
    if cleaned != text:
        raise InvalidInput(f"{what} {text[:40]!r} has surrounding whitespace or stray line separators")
    return text
