"""The collapse detectors' incremental index: what they derive from a version, kept on the playbook and carried from
a version to the next in O(delta).

When ``after`` was made from ``before`` by ``apply`` (the loop's guard, a replay: see
:attr:`~ace.playbook.Playbook.lineage`), the per-version aggregates (rendered size, mean length, share of specific
bullets, probe counts) are carried from the parent and updated for the bullets the delta touched, per-bullet
features are cached by content, and the token indexes (word -> ids, number or code -> ids) are carried the same
way. Playbooks with no such link are computed in full, with the same results. Everything is kept with
:meth:`~ace.playbook.Playbook.derived` under keys starting with ``collapse-``. What the detectors conclude from it
is :mod:`ace.collapse.detectors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import immutables

from ace.collapse.facts import facts as facts_of
from ace.collapse.facts import subject
from ace.playbook import Bullet, Playbook
from ace.playbook.render import bullet_line
from ace.playbook.text import specifics_in, words

SPECIFIC = re.compile(r"\d|[=+*/^%$]|`|\"[^\"]+\"|\b[A-Z]{2,}\b")


@lru_cache(maxsize=1 << 14)  # bounded: a few tens of MB of word sets at most for typical bullets
def features(content: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """Per-content features, computed once per distinct text: word set, specifics, carries a specific."""
    w = words(content)
    return w, specifics_in(w), bool(SPECIFIC.search(content))


@dataclass(frozen=True, slots=True)
class Stats:
    """Aggregates of one version that the detectors compare, carried from version to version in O(delta)."""

    bullets: int
    line_chars: int  # sum over bullets of len(bullet line without counters) + 1
    content_chars: int
    specific: int  # bullets carrying a number, formula, code or quoted name

    @staticmethod
    def of_bullet(b: Bullet) -> tuple[int, int, int]:
        # the specific flag alone (one regex search): tokenizing every bullet is for the few a step touches
        return len(bullet_line(b, counters=False)) + 1, len(b.content), int(SPECIFIC.search(b.content) is not None)

    def plus(self, sign: int, b: Bullet) -> Stats:
        line, chars, spec = self.of_bullet(b)
        return Stats(
            self.bullets + sign,
            self.line_chars + sign * line,
            self.content_chars + sign * chars,
            self.specific + sign * spec,
        )


def _carried_from(pb: Playbook, key: Any, max_steps: int = 64) -> tuple[Playbook, frozenset[str]] | None:
    """The nearest ancestor of ``pb`` (through ``apply``'s parent links, still in memory) that has ``key``
    memoized, with the ids touched since; None if there is none within ``max_steps``."""
    node, touched = pb, frozenset[str]()
    for _ in range(max_steps):
        link = node.lineage
        if link is None:
            return None
        parent = link[0]
        touched |= link[1]
        if parent.has_derived(key):
            return parent, touched
        node = parent
    return None


def stats(pb: Playbook) -> Stats:
    """The playbook's aggregates: from its parent's and the ids the delta touched when that is known, else all."""

    def compute() -> Stats:
        if (found := _carried_from(pb, "collapse-stats")) is not None:
            parent, touched = found
            st: Stats = parent.peek_derived("collapse-stats")
            for i in touched:
                if (old := parent.get(i)) is not None:
                    st = st.plus(-1, old)
                if (new := pb.get(i)) is not None:
                    st = st.plus(+1, new)
            return st
        line = chars = spec = 0
        for b in pb.bullets_by_id.values():
            a, c, sp = Stats.of_bullet(b)
            line, chars, spec = line + a, chars + c, spec + sp
        return Stats(len(pb), line, chars, spec)

    return pb.derived("collapse-stats", compute)  # type: ignore[no-any-return]


def tokens(pb: Playbook) -> int:
    """``approx_tokens(render(pb, counters=False))``, from the carried aggregates (no render)."""
    if not len(pb.sections):
        return 0
    headers = sum(len(name) + 3 for name in pb.sections)  # "## NAME"
    chars = headers + stats(pb).line_chars + 2 * len(pb.sections) - 1
    return (chars + 3) // 4


# The ids of the bullets holding a word: a tuple while they are few (most words: a number, a name), a persistent map
# once they are many (common words), so that adding or removing one id is cheap either way.
Posting = tuple[str, ...] | immutables.Map[str, None]
_SMALL = 16
NO_IDS: tuple[str, ...] = ()


def _posting(ids: list[str]) -> Posting:
    return tuple(ids) if len(ids) <= _SMALL else immutables.Map(dict.fromkeys(ids))


def _with_id(posting: Posting | None, i: str) -> Posting:
    if posting is None:
        return (i,)
    if isinstance(posting, tuple):
        return (*posting, i) if len(posting) < _SMALL else immutables.Map(dict.fromkeys(posting)).set(i, None)
    return posting.set(i, None)


def _without_id(posting: Posting, i: str) -> Posting:
    if isinstance(posting, tuple):
        return tuple(x for x in posting if x != i)
    return posting.delete(i) if i in posting else posting


# which of a content's features an index maps: every word, its numbers and codes, its facts, its subject's stems
_WORDS, _SPECIFICS, _FACTS, _STEMS = 0, 1, 2, 3
INDEX_KEYS = {
    _WORDS: "collapse-words",
    _SPECIFICS: "collapse-specifics",
    _FACTS: "collapse-facts",
    _STEMS: "collapse-stems",
}


def word_index(pb: Playbook) -> immutables.Map[str, Posting]:
    """word -> the ids of the bullets whose content holds it: a persistent map carried from the parent's."""
    return token_index(pb, _WORDS)


def specific_index(pb: Playbook) -> immutables.Map[str, Posting]:
    """number or code -> the ids of the bullets that state it (a few per bullet: far smaller than the word index)."""
    return token_index(pb, _SPECIFICS)


def fact_index(pb: Playbook) -> immutables.Map[str, Posting]:
    """fact -> the ids of the bullets that state it (:func:`ace.collapse.facts.facts`)."""
    return token_index(pb, _FACTS)


def stem_index(pb: Playbook) -> immutables.Map[str, Posting]:
    """subject stem -> the ids of the bullets about it (:func:`ace.collapse.facts.subject`)."""
    return token_index(pb, _STEMS)


def _tokens_of(content: str, which: int) -> frozenset[str]:
    if which == _FACTS:
        return facts_of(content)
    if which == _STEMS:
        return subject(content)
    words_, specifics_, _ = features(content)
    return specifics_ if which == _SPECIFICS else words_


def token_index(pb: Playbook, which: int) -> immutables.Map[str, Posting]:
    key = INDEX_KEYS[which]

    def compute() -> immutables.Map[str, Posting]:
        if (found := _carried_from(pb, key)) is not None:
            parent, touched = found
            index = parent.peek_derived(key).mutate()
            for i in touched:
                old, new = parent.get(i), pb.get(i)
                if old is not None and new is not None and old.content == new.content:
                    continue
                if old is not None:
                    for w in _tokens_of(old.content, which):
                        ids = _without_id(index[w], i)
                        if len(ids):
                            index[w] = ids
                        else:
                            del index[w]
                if new is not None:
                    for w in _tokens_of(new.content, which):
                        index[w] = _with_id(index.get(w), i)
            new_index: immutables.Map[str, Posting] = index.finish()
            return new_index
        plain: dict[str, list[str]] = {}
        for b in pb.bullets_by_id.values():
            for w in _tokens_of(b.content, which):
                if (holding := plain.get(w)) is None:
                    plain[w] = [b.id]
                else:
                    holding.append(b.id)
        return immutables.Map({w: _posting(ids) for w, ids in plain.items()})

    return pb.derived(key, compute)  # type: ignore[no-any-return]


def probe_count(pb: Playbook, needle: str) -> int:
    """How many bullets state ``needle`` (case-folded substring), carried from the parent's count in O(delta)."""

    def compute() -> int:
        if (found := _carried_from(pb, ("collapse-probe", needle))) is not None:
            parent, touched = found
            n: int = parent.peek_derived(("collapse-probe", needle))
            for i in touched:
                old, new = parent.get(i), pb.get(i)
                n += (new is not None and needle in new.content.casefold()) - (
                    old is not None and needle in old.content.casefold()
                )
            return n
        return sum(needle in b.content.casefold() for b in pb.bullets_by_id.values())

    return pb.derived(("collapse-probe", needle), compute)  # type: ignore[no-any-return]


def carry_indexes(before: Playbook, after: Playbook) -> None:
    """Bring to ``after`` the token indexes ``before`` has built, when ``after`` was made from it (O(delta) each):
    an index built once (when a step first needed it) is kept up to date every step, so the next step can carry it
    too; one never needed is never built."""
    if after.touched_since(before) is None:
        return
    for which, key in INDEX_KEYS.items():
        if before.has_derived(key):
            token_index(after, which)
