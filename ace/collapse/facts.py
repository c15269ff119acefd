"""Facts: what a bullet states that must not silently disappear, and the words that say what it is about (pure).

A *fact* is a short string ``kind:value``; two bullets that hold the same fact state the same thing about it. Kinds:

- ``id``: identifiers and API or field names: ``snake_case``, ``dotted.names``, ``camelCase``/``CamelCase``, calls
  (``show_api_doc()``), backticked spans;
- ``code``: tokens mixing letters and digits (``LC-9999``, ``k12``), upper-case acronyms (``PDF``, ``HTTP``);
- ``quote``: short quoted values (``'this year'``, ``"done"``);
- ``num``: numbers, with their unit when one follows (``30 days``, ``5 %``, ``$20``);
- ``name``: capitalized words inside a sentence (``Spotify``, ``Python``), taken together when consecutive;
- ``cond``: conditions and qualifiers with the word they bind (``only when:paginat``, ``unless:empty``,
  ``before:call``, ``never:hardcod``); qualifiers that say the same are one (``rather than`` is ``instead of``).
  ``always`` is not one: "always check" and "make sure to check" say the same (it counts as a polarity word).

:func:`subject` is what a bullet is about, stripped of its facts: stemmed content words, no stop words. Two bullets
about the same subject that state different facts of one kind contradict each other; two that state the same facts
about the same subject say the same thing twice. :func:`polarity` gives the polarity words (always/never,
before/after, must/must not...) whose swap turns a rule into its opposite.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _split(text: str) -> frozenset[str]:
    return frozenset(text.split())


HARD_KINDS = frozenset({"id", "code", "quote", "num", "name"})  # what a fact *is*; "cond" is how it applies

_BACKTICK = re.compile(r"`([^`\n]{1,80})`")
_QUOTE = re.compile(r"(?<![\w'])'([^'\n]{1,60})'(?![\w])|\"([^\"\n]{1,60})\"|“([^”\n]{1,60})”")
_SNAKE = re.compile(r"\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+\b")
_DOTTED = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?")
_CAMEL = re.compile(r"\b(?:[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b")
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(\)")
_MIXED = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Za-z])(?=[A-Za-z0-9-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")
_ACRONYM = re.compile(r"(?<![\w-])[A-Z]{2,}s?(?![\w-])")
_NUMBER = re.compile(r"(?<![\w.-])([$€£]?)(\d+(?:[.,]\d+)*)(?:\s?(%|[A-Za-z]+))?")
_LABEL = re.compile(
    r"\b(number|no\.|rule|item)\s*#?$",
    re.IGNORECASE,
)
_CAPITAL = re.compile(r"(?<![\w'])([A-Z][a-z][a-z'A-Z]*(?:[ -][A-Z][a-z][a-z'A-Z]*)*)")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[-*•]\s+|\(\s*|(?:^|\s)(?:\d{1,3}|[a-zA-Z])[.)]\s+)$")
_WORD = re.compile(r"[a-z][a-z']*[a-z]")

UNITS = _split(
    """% ms s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks month months
    year years kb mb gb tb b bytes byte k items item times retries retry attempts attempt characters chars
    tokens token pages page requests request rows row records record results result steps step calls call
    users user files file digits digit decimal decimals places percent usd eur dollars"""
)

# qualifiers that bind the next content word: dropping "only when paginating" changes when a rule applies
_QUALIFIERS = re.compile(
    r"\b(only when|only if|only for|only after|only before|unless|except when|except for|except|before|after|until|"
    r"never|at least|at most|no more than|no later than|no earlier than|instead of|rather than|"
    r"must not|do not|don't|should not|if and only if)\b\s+([\w'-]+(?:\s+[\w'-]+){0,4})",
    re.IGNORECASE,
)

STOP = _split(
    """a an the and or but if then else of to in on at by for with without from into onto over under as is are was
    were be been being it its this that these those there here their them they you your we our us i me my he she his
    her not no nor so such than too very can could should would will shall may might must do does did done doing
    have has had having also just only any all each every some more most other another which who whom whose what
    when where why how while until before after always never use using used e g eg ie i.e etc via per via both
    either neither one ones make sure ensure"""
)

# pairs whose swap turns a rule into its opposite
_POLAR = (
    ("always", "never"),
    ("before", "after"),
    ("must", "must not"),
    ("should", "should not"),
    ("include", "exclude"),
    ("enable", "disable"),
    ("ascending", "descending"),
    ("first", "last"),
    ("minimum", "maximum"),
    ("increase", "decrease"),
    ("earliest", "latest"),
    ("allow", "forbid"),
    ("with", "without"),
    ("inclusive", "exclusive"),
    ("true", "false"),
    ("required", "optional"),
    ("newest", "oldest"),
    ("newer", "older"),
    ("largest", "smallest"),
    ("larger", "smaller"),
    ("highest", "lowest"),
    ("higher", "lower"),
    ("min", "max"),
    ("above", "below"),
    ("earlier", "later"),
    ("accept", "reject"),
    ("valid", "invalid"),
)
_POLAR_WORDS = re.compile(
    r"\b(" + "|".join(sorted({w for p in _POLAR for w in p}, key=len, reverse=True)) + r")\b", re.IGNORECASE
)
_OPPOSITE = {a: b for a, b in _POLAR} | {b: a for a, b in _POLAR}

_SUFFIXES = ("ations", "ation", "ingly", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s")


# qualifiers that say the same: a condition reworded from one to the other is kept
_SAME_QUALIFIER = {
    "rather than": "instead of",
    "only if": "only when",
    "except when": "unless",
    "no more than": "at most",
    "don't": "do not",
    "should not": "must not",
    "if and only if": "only when",
}


def qualifier_rx(qualifier: str) -> re.Pattern[str]:
    """What finds ``qualifier`` (canonical, as in a ``cond:`` fact) in case-folded text, in any of its forms."""
    forms = [qualifier, *(k for k, v in _SAME_QUALIFIER.items() if v == qualifier)]
    return re.compile(r"\b(?:" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + r")\b")


def stem(word: str) -> str:
    """A crude stem (enough to match ``paginating`` with ``pagination`` and ``calls`` with ``call``)."""
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 4:
            word = word[: -len(suf)]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if len(w) > 2 and w not in STOP]


@lru_cache(maxsize=1 << 16)
def facts(content: str) -> frozenset[str]:
    """The facts ``content`` states (see the module's doc for the kinds)."""
    found: set[str] = set()
    masked = content
    for m in _BACKTICK.finditer(content):
        found.add("id:" + " ".join(m.group(1).split()).casefold())
    for m in _QUOTE.finditer(content):
        value = next(g for g in m.groups() if g is not None)
        found.add("quote:" + " ".join(value.split()).casefold())
    for rx in (_DOTTED, _SNAKE, _CAMEL):
        for m in rx.finditer(masked):
            token = m.group(0).removesuffix("()")
            if rx is _DOTTED and (min(len(p) for p in token.split(".")) < 2 or token.count(".") == 0):
                continue
            found.add("id:" + token.casefold())
    for m in _CALL.finditer(content):
        found.add("id:" + m.group(1).casefold())
    for m in _MIXED.finditer(content):
        found.add("code:" + m.group(0).casefold())
    for m in _ACRONYM.finditer(content):
        found.add("code:" + m.group(0).removesuffix("s").casefold())
    for m in _NUMBER.finditer(content):
        cur, number, unit = m.group(1), m.group(2), m.group(3)
        if (label := _LABEL.search(content[: m.start()])) is not None and not cur:
            found.add(f"id:{label.group(1).casefold()} {number}")  # "rule 0", "step 2": which one, not how much
            continue
        unit = (unit or "").casefold()
        value = number.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", number) else number
        if cur:
            found.add(f"num:{cur}{value}")
        elif unit in UNITS:
            found.add(f"num:{value} {unit}")
        else:
            found.add(f"num:{value}")
    for m in _CAPITAL.finditer(content):
        if _SENTENCE_START.search(content[: m.start()]):
            words = m.group(1).split()
            if len(words) == 1:
                continue  # the first word of a sentence: capitalized because it comes first
            name = " ".join(words[1:])
        else:
            name = m.group(1)
        name = name.removesuffix("'s").casefold()
        if name and name not in STOP:
            found.add("name:" + name)
    for m in _QUALIFIERS.finditer(content):
        bound = _content_words(m.group(2))
        if bound:
            qualifier = " ".join(m.group(1).casefold().split())
            found.add(f"cond:{_SAME_QUALIFIER.get(qualifier, qualifier)}:{stem(bound[0])}")
    return frozenset(found)


def hard(found: frozenset[str]) -> frozenset[str]:
    """The facts of a kind in :data:`HARD_KINDS` (what is stated, not how it applies)."""
    return frozenset(f for f in found if f.split(":", 1)[0] in HARD_KINDS)


def solid(found: frozenset[str]) -> frozenset[str]:
    """The hard facts whose reading does not depend on where they stand (names are read from capital letters,
    which a sentence's first word also has): what twins and contradictions compare."""
    return frozenset(f for f in found if f.split(":", 1)[0] in HARD_KINDS and not f.startswith("name:"))


@lru_cache(maxsize=1 << 14)
def value_rx(value: str) -> re.Pattern[str]:
    """What finds ``value`` (case-folded) as a whole token: ``3`` is not in ``30`` nor in ``v3``, ``lc-44`` not in
    ``lc-4471``."""
    return re.compile(r"(?<![\w.-])" + re.escape(value) + r"(?![\w]|[.,-]\w)")


def still_in(fact: str, text: str) -> bool:
    """Whether ``text`` still says ``fact`` in some form: its value as a whole token anywhere in it
    (case-insensitive), for a condition its qualifier."""
    k, _, value = fact.partition(":")
    folded = text.casefold()
    if k == "cond":  # the qualifier still there: the word it binds may have been reworded
        return qualifier_rx(value.partition(":")[0]).search(folded) is not None
    if k == "num":
        value = value.split(" ")[0]
    return value in folded and value_rx(value).search(folded) is not None


def kind(fact: str) -> str:
    return fact.split(":", 1)[0]


@lru_cache(maxsize=1 << 16)
def subject(content: str) -> frozenset[str]:
    """What ``content`` is about: its stemmed content words (no stop words, no polarity words, no numbers)."""
    return frozenset(stem(w) for w in _content_words(content) if w not in _OPPOSITE)


@lru_cache(maxsize=1 << 16)
def polarity(content: str) -> frozenset[str]:
    """The polarity words ``content`` uses (``must not`` counts as one word, and hides ``must``)."""
    found = {m.group(1).casefold() for m in _POLAR_WORDS.finditer(content)}
    for neg in ("must not", "should not"):
        if neg in found:
            found.discard(neg.split()[0])
    return frozenset(found)


def flipped(old: str, new: str) -> tuple[str, str] | None:
    """``(was, now)`` when ``new`` uses the opposite of a polarity word ``old`` used (and no longer the word
    itself), e.g. ``always`` → ``never``; None otherwise."""
    p0, p1 = polarity(old), polarity(new)
    for word in sorted(p0 - p1):
        if _OPPOSITE[word] in p1 - p0:
            return word, _OPPOSITE[word]
    return None


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


__all__ = [
    "HARD_KINDS",
    "facts",
    "flipped",
    "hard",
    "jaccard",
    "kind",
    "polarity",
    "solid",
    "stem",
    "still_in",
    "subject",
    "value_rx",
]
