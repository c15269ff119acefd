"""Which bullets a question is about, and the spans an answer may be copied from (pure, no I/O).

- :func:`relevant`: the ``k`` bullets that share the most *informative* words with a query: each shared word
  weighs its inverse document frequency over the playbook (a word in every bullet, like "office", counts little;
  "Bergen" counts a lot), ties broken by the playbook's own ranking. The loop shows them next to the question,
  after the stable playbook text, so a small model sees the bullet that answers right beside the question while
  the prompt's prefix stays the same from one task to the next.
- :func:`spans`: the word n-grams of a text, in reading order: the options of a *copied* answer or lesson field
  (a model constrained to them cannot invent a value, only choose one it was shown).
- :func:`answer_options`: what a copied answer may be: the value of each focused *fact* bullet (content
  ``"<subject> → <value>"``, the form copy-friendly curation writes), then spans of the other bullets.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from ace.playbook.model import Bullet, Playbook
from ace.playbook.render import rank

# a word: letters/digits, joined by inner hyphens, apostrophes, dots or slashes ("LC-4471", "don't", "v1.2")
_WORD = re.compile(r"\w+(?:[-'./]\w+)*")
_CLAUSE = re.compile(r"[;,:!?()\n\u2192]|\.(?:\s|$)")  # a span never crosses these


def words(text: str) -> list[str]:
    """The words of ``text`` as :func:`spans` and :func:`relevant` see them (case kept)."""
    return _WORD.findall(text)


def _keys(text: str) -> set[str]:
    return {w.casefold() for w in words(text)}


def relevant(playbook: Playbook, query: str, k: int) -> list[Bullet]:
    """Up to ``k`` bullets sharing informative words with ``query``, most relevant first (none if none share)."""
    if k <= 0 or not len(playbook):
        return []
    bags = {b.id: _keys(b.content) for b in playbook}
    df = Counter(w for bag in bags.values() for w in bag)
    n = len(bags)
    q = _keys(query)
    order = {b.id: i for i, b in enumerate(rank(playbook))}
    scored = []
    for b in playbook:
        # fsum: the exactly rounded sum, whatever order the set yields its words in (string hashes differ from
        # process to process, and a last-bit difference would break a tie differently on re-execution)
        score = math.fsum(math.log(1 + n / df[w]) for w in q & bags[b.id])
        if score > 0:
            scored.append((-score, order[b.id], b))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [b for _, _, b in scored[:k]]


def spans(text: str, *, max_words: int = 4, exclude: str = "", limit: int = 400) -> list[str]:
    """Word n-grams of ``text`` (1 to ``max_words`` words, never across a clause's punctuation), in reading
    order, longest first at each position, each once; spans sharing a word with ``exclude`` are left out (an answer
    adds what the question lacks). At most ``limit`` spans."""
    banned = _keys(exclude)
    out: dict[str, None] = {}
    for clause in _CLAUSE.split(text):
        ws = words(clause)
        for i in range(len(ws)):
            for j in range(min(len(ws), i + max_words), i, -1):
                piece = ws[i:j]
                if any(w.casefold() in banned for w in piece):
                    continue
                out.setdefault(" ".join(piece))
                if len(out) >= limit:
                    return list(out)
    return list(out)


ARROW = " \u2192 "  # between a fact bullet's subject and its value


def fact(subject: str, value: str) -> str:
    """A fact bullet's text: ``"<subject> → <value>"`` (a question's final "?" dropped)."""
    return f"{subject.strip().rstrip('?').strip()}{ARROW}{value.strip()}"


WORDING_SEP = " | "  # between the wordings of a fact bullet's subject: the questions that asked for its value
MAX_WORDINGS = 3  # wordings a fact bullet keeps (a fourth adds little: a question in it is matched by the others)


def wordings(content: str) -> list[str]:
    """The wordings of a fact bullet's subject (the questions it was learned from), or [] for another bullet."""
    if ARROW not in content:
        return []
    subject = content.rsplit(ARROW, 1)[0]
    return [w.strip() for w in subject.split(WORDING_SEP) if w.strip()]


def with_wording(content: str, asked: str, limit: int = MAX_WORDINGS) -> str | None:
    """``content`` (a fact bullet) with ``asked``, another question answered by its value, as one more wording of
    its subject: ``"<wording> | <wording> → <value>"``. None when the bullet is not a fact, holds ``limit`` wordings
    already, or ``asked`` says no word its wordings do not (nothing to learn about how the fact is asked)."""
    held = wordings(content)
    value = fact_value(content)
    new = " ".join(asked.replace(WORDING_SEP, " ").split()).rstrip("?").strip()
    if not held or value is None or len(held) >= limit or not new:
        return None
    if _keys(new) <= set().union(*(_keys(w) for w in held)):
        return None
    return f"{WORDING_SEP.join([*held, new])}{ARROW}{value}"


def fact_value(content: str) -> str | None:
    """The value of a fact bullet (the text after its last arrow), or None for another bullet."""
    if ARROW not in content:
        return None
    value = content.rsplit(ARROW, 1)[1].strip()
    return value or None


def specific(value: str) -> bool:
    """Whether a value names one thing (a code, a number, a quoted value), unlike a plain name several facts may
    share (a carrier, a doctor)."""
    return any(c.isdigit() for c in value) or value.strip()[:1] in "\"'`"


def looks_like_value(span: str) -> bool:
    """Whether ``span`` reads as a fact's value: a code, number or name (each word capitalised or with a digit)."""
    ws = words(span)
    return bool(ws) and all(w[0].isupper() or any(c.isdigit() for c in w) for w in ws)


def answer_options(bullets: list[Bullet], question: str) -> list[str]:
    """A copied answer's options: the values of the fact bullets among ``bullets`` (in their order), then spans
    of the other bullets that share no word with the question."""
    values = [v for b in bullets if (v := fact_value(b.content))]
    other = "\n".join(b.content for b in bullets if fact_value(b.content) is None)
    return list(dict.fromkeys([*values, *(spans(other, exclude=question) if other else [])]))


__all__ = [
    "ARROW",
    "MAX_WORDINGS",
    "WORDING_SEP",
    "answer_options",
    "fact",
    "fact_value",
    "looks_like_value",
    "relevant",
    "spans",
    "specific",
    "with_wording",
    "wordings",
    "words",
]
