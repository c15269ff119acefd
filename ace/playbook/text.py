"""Text comparisons shared by grow-and-refine and the collapse detectors (pure)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:[.,:/-][a-z0-9]+)*")


def words(text: str) -> frozenset[str]:
    """Lower-cased word tokens; numbers and codes stay whole (``1,200``, ``k12-4f2a``, ``3.5``)."""
    return frozenset(_WORD.findall(text.casefold()))


def specifics(text: str) -> frozenset[str]:
    """The tokens that carry a number or a code: two bullets that differ in these state different facts, however
    similar the rest of their wording (and their embeddings) is."""
    return frozenset(w for w in words(text) if any(c.isdigit() for c in w))
