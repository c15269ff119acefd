"""The bullets relevant to a query, rendered beside a stable core under one token budget (pure, no I/O).

``render(pb, query=..., budget=N)`` (:func:`ace.playbook.render.render`) calls :func:`render_for_query`:

- **the core**: the budget-ranked render (:mod:`ace.playbook.render`) under a share of the budget
  (:data:`CORE_SHARE`, half): a function of the playbook alone, so every query of a version gets the same core, and in
  the stable layout it is the first part of the text byte for byte (a provider's prompt cache still reuses it);
- **the relevant bullets**: the bullets not in the core that the query is most about, taken greedily in that order
  while they fit the rest of the budget. In the ``sections`` layout they join their sections (the text is the
  playbook's own format, bullets in their order); in the ``stable`` layout they follow the core, grouped by section
  under ``## SECTION (relevant)`` headers, most relevant group first, counters inline when ``counters`` is on (the
  core's scores block lists only the core's bullets).

A bullet never appears twice; the query's own text is never rendered; ``count_tokens(text) <= budget`` always holds.
The text is the render without a query (byte for byte) when there is nothing to add: no budget, the whole playbook
fits it, the query has no informative word (empty, punctuation, only stop words), or no bullet outside the core
shares one.

**Relevance** is lexical, BM25 (k1 = 1.2, b = 0.75) over each bullet's *terms* (its content and its section's name):
words case-folded, English stop words left out, plain words lightly stemmed ("refunds", "refund"); codes and
numbers are whole terms ("lc-4471", "1,200") and their parts terms too ("lc", "4471"), so "code 4471" finds
"LC-4471". A query's terms count once each (repeating a word adds nothing) and at most :data:`MAX_QUERY_TERMS` of
them, the rarest in the playbook, are scored. Ties go to the more useful bullet (the budget's ranking: helpful −
harmful, helpful, recency, position). The inverted index is built once per playbook object (``Playbook.derived``),
so a read at 10k bullets scores in about a millisecond (``benchmarks/perf/bench_query_render.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ace.errors import ConfigError
from ace.playbook.focus import fact_value, specific, wordings
from ace.playbook.model import Bullet, Playbook
from ace.playbook.render import approx_tokens, bullet_line, rank, register_query_render, render

if TYPE_CHECKING:
    from ace.playbook.render import Layout, TokenCounter

CORE_SHARE = 0.5  # the share of the budget the stable core keeps
RELEVANT_SUFFIX = " (relevant)"  # after a section's name, on the stable layout's headers of relevant bullets
MAX_QUERY_TERMS = 64  # the rarest terms of a longer query are scored; the rest would add little and cost time
MAX_MISSES = 32  # the relevant bullets are taken while they fit, until this many in a row did not
K1, B = 1.2, 0.75

# a word: letters/digits, joined by inner hyphens, apostrophes, dots, slashes, colons or commas ("LC-4471",
# "don't", "v1.2", "1,200", "10:30"); the joiners also split it into parts
_WORD = re.compile(r"\w+(?:[-'./:,]\w+)*")
_JOINERS = re.compile(r"[-'./:,_]+")
_VOWEL = re.compile(r"[aeiouy]")
_LINE_ID = re.compile(r"^\[([A-Za-z0-9][A-Za-z0-9_.:-]*)\] ", re.M)  # a bullet's (or a score's) line

_STOP_WORDS = """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    else ever few for from further get gets got had hadn't has hasn't have haven't having he her here hers herself him
    himself his how i if in into is isn't it it's its itself just let me might more most must mustn't my myself no
    nor not now of off on once only or other ought our ours ourselves out over own please same shall shan't she should
    shouldn't so some such than that that's the their theirs them themselves then there there's these they this those
    through to too under until up upon us very was wasn't we were weren't what what's whatever when where whether
    which while who whom whose why will with within without won't would wouldn't yes yet you your yours yourself
    yourselves tell know"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def _stem(word: str) -> str:
    """A light suffix stripper for plain lower-case words (plurals, -ing, -ed): enough for "refunds"/"refund",
    "shipping"/"shipped"/"ship", "processes"/"process"; codes and numbers are never stemmed."""
    if len(word) < 4 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix, least in (("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= least and not word.endswith("eed"):
            stem = word[: -len(suffix)]
            if not _VOWEL.search(stem):  # "bring", "shed": no stem left
                return word
            if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":  # shipp -> ship
                stem = stem[:-1]
            return stem
    if (word.endswith("es") and word[-3:-2] in ("x", "z")) or word.endswith(("ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _word_terms(word: str, cache: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    got = cache.get(word)
    if got is not None:
        return got
    w = word.casefold()
    if w in STOP_WORDS:
        terms: tuple[str, ...] = ()
    elif _JOINERS.search(w):  # a code, a number with separators, a compound: whole, and its parts
        parts = [p for p in _JOINERS.split(w) if p and (len(p) > 1 or p.isdigit()) and p not in STOP_WORDS]
        terms = tuple(dict.fromkeys([w, *(_stem(p) for p in parts)]))
    else:
        terms = (_stem(w),)
    if len(cache) < 100_000:  # bounded: a hostile text cannot grow it without end
        cache[word] = terms
    return terms


_TERMS: dict[str, tuple[str, ...]] = {}  # word -> its terms, shared by every index and query of the process


def terms(text: str) -> list[str]:
    """The terms of ``text`` as relevance sees them, in reading order, repeats kept."""
    out: list[str] = []
    for word in _WORD.findall(text):
        out += _word_terms(word, _TERMS)
    return out


@dataclass(frozen=True, slots=True)
class QueryIndex:
    """The inverted index of one playbook: for each term, the bullets holding it and their BM25 weights."""

    bullets: tuple[Bullet, ...]  # in playbook order; the index of a bullet below is its place here
    vocab: Mapping[str, int]  # term -> its number
    starts: np.ndarray  # term t's postings are docs[starts[t]:starts[t + 1]]
    docs: np.ndarray
    weights: np.ndarray  # BM25's term-frequency part, per posting
    idf: np.ndarray  # per term
    usefulness: np.ndarray  # each bullet's place in the budget's ranking (the tie-breaker)
    position: Mapping[str, int]  # bullet id -> its place in the playbook

    def scores(self, asked: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """The bullets sharing a term with a query's terms ``asked`` (their places) and their scores, most relevant
        first; None when the query has no term the playbook holds."""
        found = {t: i for t in dict.fromkeys(asked) if (i := self.vocab.get(t)) is not None}
        if not found:
            return None
        ids = list(found.values())
        if len(ids) > MAX_QUERY_TERMS:  # the rarest (most informative) terms; their order is the query's
            keep = set(sorted(ids, key=lambda t: (-self.idf[t], t))[:MAX_QUERY_TERMS])
            ids = [t for t in ids if t in keep]
        score = np.zeros(len(self.bullets))
        for t in ids:  # in the query's order: the same query always sums in the same order
            s, e = self.starts[t], self.starts[t + 1]
            score[self.docs[s:e]] += self.idf[t] * self.weights[s:e]  # a term's docs are distinct
        hit = np.flatnonzero(score > 0)
        order = np.lexsort((self.usefulness[hit], -score[hit]))
        return hit[order], score[hit[order]]


def index(playbook: Playbook) -> QueryIndex:
    """The playbook's relevance index, built on first use and kept on the playbook object."""
    return playbook.derived("query-index", lambda: _build(playbook))  # type: ignore[no-any-return]


def indexed(playbook: Playbook) -> bool:
    """Whether the playbook's index is built already (a query render then costs about a millisecond)."""
    return playbook.has_derived("query-index")


def _build(playbook: Playbook) -> QueryIndex:

    bullets = tuple(playbook)
    vocab: dict[str, int] = {}
    term_of: list[int] = []
    doc_of: list[int] = []
    tf_of: list[int] = []
    lengths = np.zeros(max(1, len(bullets)))
    section_terms = {name: terms(name) for name in playbook.sections}
    for n, b in enumerate(bullets):
        bag = Counter(terms(b.content))
        bag.update(set(section_terms[b.section]))  # the section's name counts once
        lengths[n] = sum(bag.values())
        for term, tf in bag.items():
            term_of.append(vocab.setdefault(term, len(vocab)))
            doc_of.append(n)
            tf_of.append(tf)
    tids = np.asarray(term_of, dtype=np.int64)
    order = np.argsort(tids, kind="stable")
    docs = np.asarray(doc_of, dtype=np.int64)[order]
    freq = np.asarray(tf_of, dtype=np.float64)[order]
    df = np.bincount(tids, minlength=len(vocab))
    starts = np.concatenate(([0], np.cumsum(df))).astype(np.int64)
    avg = float(lengths.mean()) or 1.0
    weights = freq * (K1 + 1) / (freq + K1 * (1 - B + B * lengths[docs] / avg))
    count = len(bullets)
    idf = np.log1p((count - df + 0.5) / (df + 0.5))
    place = {b.id: n for n, b in enumerate(bullets)}
    usefulness = np.zeros(len(bullets), dtype=np.int64)
    for r, b in enumerate(rank(playbook)):
        usefulness[place[b.id]] = r
    return QueryIndex(bullets, vocab, starts, docs, weights, idf, usefulness, place)


def relevant(playbook: Playbook, query: str) -> list[tuple[Bullet, float]]:
    """Every bullet sharing a term with ``query``, most relevant first, with its score."""
    ix = index(playbook)
    got = ix.scores(terms(query))
    if got is None:
        return []
    places, score = got
    return [(ix.bullets[p], s) for p, s in zip(places.tolist(), score.tolist(), strict=True)]


def paraphrase_terms(playbook: Playbook) -> frozenset[str]:
    """The terms the playbook has learned say *how* a question is asked, not *what* it asks: those in some but not
    all wordings of a fact bullet (:func:`ace.playbook.focus.wordings`: "which billing code does ..." and "what do we
    bill ... under" ask for one value, so their words other than "knee MRI" and "Harrow" are phrasing). Kept on the
    playbook."""

    def compute() -> frozenset[str]:
        found: set[str] = set()
        for b in playbook:
            asked = wordings(b.content)
            # a code or number names one fact: its wordings are one question; a plain name may be shared by facts
            if len(asked) > 1 and specific(fact_value(b.content) or ""):
                bags = [set(terms(w)) for w in asked]
                found |= set().union(*bags) - bags[0].intersection(*bags[1:])
        return frozenset(found)

    return playbook.derived("query.paraphrase-terms", compute)  # type: ignore[no-any-return]


def focused(playbook: Playbook, query: str, k: int) -> list[tuple[Bullet, float]]:
    """The ``k`` bullets most relevant to ``query`` with their scores (BM25 over the playbook, as
    :func:`relevant`), the query's phrasing left out: its terms the playbook learned are phrasing
    (:func:`paraphrase_terms`) do not count, unless nothing else would. What the loop shows beside a question
    (``LoopConfig.relevance = "bm25"``)."""
    if k <= 0 or not len(playbook):
        return []
    ix, asked = index(playbook), terms(query)
    phrasing = paraphrase_terms(playbook)
    kept = [t for t in asked if t not in phrasing]
    got = (ix.scores(kept) if kept else None) or ix.scores(asked)
    if got is None:
        return []
    places, score = got
    return [(ix.bullets[p], s) for p, s in zip(places[:k].tolist(), score[:k].tolist(), strict=True)]


def render_for_query(
    playbook: Playbook,
    query: str,
    *,
    budget: int,
    counters: bool,
    count_tokens: TokenCounter,
    layout: Layout,
    share: float = CORE_SHARE,
) -> str:
    """The core under ``share`` of ``budget`` and the bullets most relevant to ``query`` under the rest (module
    doc). Called by ``render(..., query=...)``, which checked its arguments."""

    def plain() -> str:
        return render(playbook, counters=counters, budget=budget, count_tokens=count_tokens, layout=layout)

    if not (0.0 <= share <= 1.0):
        raise ConfigError("share must be between 0 and 1")
    whole = render(playbook, counters=counters, layout=layout)
    if count_tokens(whole) <= budget:  # everything is shown already
        return whole
    asked = terms(query)
    if not asked:  # nothing informative: no index to build
        return plain()
    ix = index(playbook)
    got = ix.scores(asked)
    if got is None:
        return plain()
    core_budget = int(budget * share)
    core = render(playbook, counters=counters, budget=core_budget, count_tokens=count_tokens, layout=layout)
    shown = _shown(playbook, core, counters, core_budget, layout, count_tokens)
    stable = layout == "stable"
    line_counters = counters  # in the stable layout, the relevant block is after the cached prefix: counters inline
    room = budget - count_tokens(core) - (count_tokens("\n") if stable and core else 0)
    suffix = RELEVANT_SUFFIX if stable else ""
    opened: set[str] = set() if stable else {playbook[i].section for i in shown}
    chosen: list[Bullet] = []
    misses = 0
    for place in got[0].tolist():
        if room <= 0 or misses >= MAX_MISSES:
            break
        b = ix.bullets[place]
        if b.id in shown:
            continue
        cost = count_tokens(bullet_line(b, counters=line_counters) + "\n")
        if b.section not in opened:
            cost += count_tokens(f"## {b.section}{suffix}\n") + count_tokens("\n")
        if cost <= room:
            chosen.append(b)
            opened.add(b.section)
            room -= cost
            misses = 0
        else:
            misses += 1
    while chosen:  # the per-line counts are an estimate for other tokenizers: drop the least relevant until it fits
        text = _with_block(core, chosen, line_counters) if stable else _union(playbook, shown, chosen, counters)
        if count_tokens(text) <= budget:
            return text
        chosen.pop()
    return plain()


def _shown(
    playbook: Playbook, core: str, counters: bool, core_budget: int, layout: Layout, count_tokens: TokenCounter
) -> frozenset[str]:
    """The ids of the bullets the core's text shows (every line that starts with ``[`` is a bullet's or a score's:
    a content's own lines are indented)."""

    def compute() -> frozenset[str]:
        return frozenset(i for i in _LINE_ID.findall(core) if i in playbook)

    if count_tokens is not approx_tokens:
        return compute()
    kept: dict[tuple[bool, int, str], frozenset[str]] = playbook.derived("query-core", dict)
    key = (counters, core_budget, layout)
    got = kept.get(key)
    if got is None:
        got = compute()
        if len(kept) >= 8:  # bounded, like the render's own budgets
            kept.pop(next(iter(kept)), None)
        kept[key] = got
    return got


def _union(playbook: Playbook, shown: frozenset[str], chosen: list[Bullet], counters: bool) -> str:
    """The ``sections`` layout of the core's bullets and the chosen ones: every bullet in its section, in the
    playbook's order (what the budgeted render prints for a kept set, in O(kept) rather than O(playbook))."""

    place = index(playbook).position
    ids = sorted([*shown, *(b.id for b in chosen)], key=place.__getitem__)
    by_id = playbook.bullets_by_id
    parts: list[str] = []
    section: str | None = None
    lines: list[str] = []
    for i in ids:
        b = by_id[i]
        if b.section != section:
            if lines:
                parts.append("\n".join(lines) + "\n")
            section, lines = b.section, [f"## {b.section}"]
        lines.append(bullet_line(b, counters=counters))
    if lines:
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _with_block(core: str, chosen: list[Bullet], counters: bool) -> str:
    """The stable layout: the core, then the chosen bullets grouped by section (the group of the most relevant
    first), each group under ``## SECTION (relevant)``."""

    groups: dict[str, list[Bullet]] = {}
    for b in chosen:
        groups.setdefault(b.section, []).append(b)
    out: list[str] = []
    for name, members in groups.items():
        out += ["", f"## {name}{RELEVANT_SUFFIX}", *(bullet_line(b, counters=counters) for b in members)]
    block = "\n".join(out[1:]) + "\n"
    return f"{core}\n{block}" if core else block


__all__ = [
    "CORE_SHARE",
    "MAX_QUERY_TERMS",
    "RELEVANT_SUFFIX",
    "STOP_WORDS",
    "QueryIndex",
    "focused",
    "index",
    "indexed",
    "paraphrase_terms",
    "relevant",
    "render_for_query",
    "terms",
]


register_query_render(render_for_query)
