"""Relations between bullets that the subtle-collapse detectors read: near-duplicates (twins) and contradictions,
found from the fact and subject-stem indexes of :mod:`ace.collapse.index`, and the twin map carried from a version
to the next in O(delta).

Two bullets are **twins** when they state the same hard facts (ids, codes, quoted values, numbers, names; at least
one) about a subject that overlaps (stem Jaccard >= ``twin_hard``), or, stating no hard fact, when their subjects
overlap strongly (>= ``twin_plain``). A paraphrase keeps the facts and changes the words: the first rule is the one
that finds it. Two bullets **contradict** when they are about the same thing (every hard fact alike but one, and
overlapping subjects) and that one fact differs within its kind (a number for a number, a code for a code), or when
one says the opposite of the other (always/never) with the same facts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import immutables

from ace.collapse.facts import facts, flipped, jaccard, kind, still_in, subject, value_rx
from ace.collapse.facts import solid as hard
from ace.collapse.index import NO_IDS, fact_index, stem_index
from ace.playbook import Playbook


@dataclass(frozen=True)
class Rules:
    twin_hard: float = 0.3
    twin_plain: float = 0.6
    contra_subject: float = 0.5


def link(before: Playbook, after: Playbook) -> frozenset[str]:
    """The ids that differ between ``before`` and ``after``: from ``apply``'s link when there is one, else by a full
    comparison (O(n), once), after which ``after`` is linked to ``before`` so that what was derived from ``before``
    is carried to ``after`` in O(delta)."""
    touched = after.touched_since(before)
    if touched is not None:
        return touched
    b0, b1 = before.bullets_by_id, after.bullets_by_id
    found = {i for i, b in b1.items() if (old := b0.get(i)) is not b and old != b}
    found |= {i for i in b0 if i not in b1}
    after.link_parent(before, found)
    return frozenset(found)


COMMON = 1000  # a stem or fact held by more bullets than this says nothing about which bullet is meant


def _rarest(
    index: immutables.Map[str, tuple[str, ...] | immutables.Map[str, None]], keys: Iterable[str], k: int
) -> set[str]:
    ranked = sorted(keys, key=lambda x: len(index.get(x, NO_IDS)))
    return {i for key in ranked[:k] if len(held := index.get(key, NO_IDS)) <= COMMON for i in held}


def _stem_pool(pb: Playbook, s: frozenset[str], threshold: float) -> set[str]:
    """Prefix filtering: a bullet whose subject has stem Jaccard >= ``threshold`` with ``s`` holds one of the
    |s| - ceil(threshold |s|) + 1 rarest stems of ``s``."""
    if not s:
        return set()
    return _rarest(stem_index(pb), s, len(s) - math.ceil(threshold * len(s) - 1e-9) + 1)


def twin_candidates(pb: Playbook, content: str, rules: Rules) -> set[str]:
    """Ids that may be twins of ``content``: those stating its rarest hard fact (a twin states them all), or, when
    it states none, those that may overlap its subject enough."""
    h = hard(facts(content))
    if h:
        return _rarest(fact_index(pb), h, 1)
    return _stem_pool(pb, subject(content), rules.twin_plain)


def contradiction_candidates(pb: Playbook, content: str, rules: Rules) -> set[str]:
    """Ids that may contradict ``content``: a bullet that states all its hard facts but one holds one of any two of
    them; with fewer than two, those that may overlap its subject strongly."""
    h = hard(facts(content))
    if len(h) >= 2:
        return _rarest(fact_index(pb), h, 2)
    return _stem_pool(pb, subject(content), rules.twin_plain)


def twins_of(a: str, b: str, rules: Rules) -> bool:
    ha, hb = hard(facts(a)), hard(facts(b))
    if ha != hb or flipped(a, b) is not None:  # the same words saying the opposite are no twins
        return False
    j = jaccard(subject(a), subject(b))
    return j >= (rules.twin_hard if ha else rules.twin_plain)


_VALUES = frozenset({"num", "code", "quote"})


def _value(fact: str) -> str:
    return fact.split(":", 1)[1].split(" ")[0] if fact.startswith("num:") else fact.split(":", 1)[1]


def _one_change(old: str, gone: frozenset[str], added: frozenset[str], *, all_added: bool) -> tuple[str, str] | None:
    """``(was, now)`` when replacing one value of ``old`` by another of its kind explains every fact that went
    (and, with ``all_added``, every fact that came): one value changed, the rest said alike. Between two bullets
    (``all_added``) only a value can differ: a different id or name, or a number that labels ("rule 0", "step 2"),
    says which thing a bullet is about, so two such bullets are about different things."""
    folded = old.casefold()
    for was in sorted(gone):
        for now in sorted(added):
            if kind(now) != kind(was) or (all_added and kind(was) not in _VALUES):
                continue
            changed = value_rx(_value(was)).sub(_value(now).replace("\\", "\\\\"), folded)
            if changed == folded or any(still_in(g, changed) for g in gone):
                continue
            if not all_added or all(still_in(f, changed) for f in added):
                return was, now
    return None


def contradiction(old: str, new: str, rules: Rules) -> tuple[str, str] | None:
    """``(was, now)``: the fact or polarity word of ``old`` that ``new`` states otherwise, when both are about the
    same thing; None when they do not contradict. Same thing: subjects that overlap (>= ``contra_subject`` when
    they share a hard fact, >= ``twin_plain`` otherwise) and one value changed with the rest said alike (replacing
    it in ``old`` gives every hard fact of ``new``). Two bullets that differ in two independent facts (another
    supplier with another code) are about different things."""
    f0, f1 = hard(facts(old)), hard(facts(new))
    gone, added = f0 - f1, f1 - f0
    j = jaccard(subject(old), subject(new))
    if j < (rules.contra_subject if f0 & f1 else rules.twin_plain):
        return None
    if gone and added:
        return _one_change(old, gone, added, all_added=True)
    if not gone and not added:
        return flipped(old, new)
    return None


def swapped(old: str, new: str) -> tuple[str, str] | None:
    """``(was, now)`` when an UPDATE from ``old`` to ``new`` changes one hard fact into another of its kind (a value
    for another value, an id for another id, wherever it is said; details added beside it are fine), or a polarity
    word into its opposite."""
    f0, f1 = hard(facts(old)), hard(facts(new))
    gone, added = f0 - f1, f1 - f0
    if gone and added:
        return _one_change(old, gone, added, all_added=False)
    return flipped(old, new) if not gone else None


def twins(pb: Playbook, rules: Rules) -> immutables.Map[str, frozenset[str]]:
    """id -> the ids of its twins, for every bullet that has one; carried from the parent's map in O(delta)."""
    key = ("collapse-twins", rules)

    def compute() -> immutables.Map[str, frozenset[str]]:
        link_ = pb.lineage
        if link_ is not None and link_[0].has_derived(key):
            parent, touched = link_
            found: immutables.Map[str, frozenset[str]] = parent.peek_derived(key)
            m = found.mutate()
            for i in touched:
                for j in m.get(i, ()):
                    rest = m.get(j, frozenset()) - {i}
                    if rest:
                        m[j] = rest
                    elif j in m:
                        del m[j]
                if i in m:
                    del m[i]
            for i in touched:
                b = pb.get(i)
                if b is None:
                    continue
                mine = _twins_in(pb, i, b.content, rules)
                if mine:
                    m[i] = frozenset(mine)
                    for j in mine:
                        m[j] = m.get(j, frozenset()) | {i}
            done: immutables.Map[str, frozenset[str]] = m.finish()
            return done
        plain: dict[str, set[str]] = {}
        for b in pb.bullets_by_id.values():
            for j in _twins_in(pb, b.id, b.content, rules):
                plain.setdefault(b.id, set()).add(j)
                plain.setdefault(j, set()).add(b.id)
        return immutables.Map({i: frozenset(js) for i, js in plain.items()})

    return pb.derived(key, compute)  # type: ignore[no-any-return]


def _twins_in(pb: Playbook, own: str, content: str, rules: Rules) -> list[str]:
    by_id = pb.bullets_by_id
    return [j for j in twin_candidates(pb, content, rules) if j != own and twins_of(content, by_id[j].content, rules)]


def twin_in(pb: Playbook, content: str, rules: Rules, *, besides: str | None = None) -> str | None:
    """The id of a bullet of ``pb`` (other than ``besides``) that says what ``content`` says, if any."""
    found = _twins_in(pb, besides or "", content, rules)
    return min(found) if found else None


def contradicted_in(
    pb: Playbook, content: str, rules: Rules, *, besides: str | None = None
) -> tuple[str, str, str] | None:
    """``(id, was, now)``: a bullet of ``pb`` (other than ``besides``) that ``content`` contradicts, if any."""
    by_id = pb.bullets_by_id
    for j in sorted(contradiction_candidates(pb, content, rules)):
        if j == besides:
            continue
        if (found := contradiction(by_id[j].content, content, rules)) is not None:
            return j, found[0], found[1]
        # an ADD that restates one sentence of a longer bullet with a value changed contradicts that sentence
        for sentence in sentences(by_id[j].content):
            if (found := contradiction(sentence, content, rules)) is not None:
                return j, found[0], found[1]
    return None


_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=\S)|\n+")


def sentences(content: str) -> list[str]:
    """The sentences of a bullet that has more than one (none for a bullet of one sentence)."""
    parts = [p.strip() for p in _SENTENCE.split(content) if p and p.strip()]
    return parts if len(parts) > 1 else []


__all__ = [
    "Rules",
    "contradicted_in",
    "contradiction",
    "contradiction_candidates",
    "link",
    "swapped",
    "twin_candidates",
    "twin_in",
    "twins",
    "twins_of",
]
