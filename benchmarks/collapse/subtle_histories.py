"""Held-out subtle collapse histories: long, labelled playbook histories built from the released playbooks.

Each history starts from the largest released playbook in ``../shared/data/playbooks`` (read from there, never
copied), given counters as if it had been in use, and runs one small delta per step through the real ``apply``.
Most steps are what a good curator does (``healthy``): ADD a bullet with new specific facts, UPDATE a bullet into a
rewording that keeps every specific and adds a detail, TAG bullets helpful/harmful from several reflector runs,
REMOVE a bullet whose harmful count exceeds its helpful count, MERGE two true duplicates keeping every specific of
both. Now and then a ``correction``: an UPDATE that changes one fact's value on a bullet the reflectors tagged
harmful, with the old value in its record (the operation's ``reason`` and the ``note`` of its source, which the
bullet keeps in its ``sources``). Between them, collapse episodes, every step small:

=================  ====================================================================================
kind               what its steps do
=================  ====================================================================================
reworded    (a)    one UPDATE rewords a bullet and drops one specific no other bullet states
erosion     (b)    50-100 steps, one bullet a step shortened or made vaguer, until >= 30 % of the
                   specifics of the bullets it wore down are stated nowhere
lossy_merge (c)    one MERGE of two similar bullets whose text drops a specific of one of them
contradiction (d)  one UPDATE that swaps a fact's value for another plausible one (a number, a name,
                   always/never, before/after, a quoted value), or one ADD that restates a bullet with a
                   different value
creeping_removal   8-20 steps, each removing one well-rated bullet (helpful > harmful, helpful >= 3)
(e)
bloat       (f)    paraphrased near-duplicates ADDed (2-4 a step) until a fifth of the bullets have a twin
counter_burst (g)  1-3 steps of harmful TAGs from one source on the most helpful bullets, until each of
                   them has more harmful than helpful tags
cut                the control: one REMOVE of 40 % of the bullets in one step
=================  ====================================================================================

A "specific" (:func:`specifics`) is what a bullet states that must not silently disappear, as this benchmark
defines it (on its own, from the issue's description, not from any detector): identifiers and API or field names
(snake_case, dotted, CamelCase, calls), quoted and code values, numbers with their unit, the formats (``HH:MM``),
the named apps, and conditions ("only when ...", "unless ...", "before ...", "never ...": the qualifier and up to
five words after it). Rewordings (:func:`paraphrase`) keep every specific verbatim and change the rest (synonyms,
clause order, sentence templates, sentence order), chosen by the seed.

Step ``t`` makes version ``t`` (version 0 is the base); every step is labelled with its kind and episode, and an
episode with its version range. ``python benchmarks/collapse/subtle_histories.py --seed 7 --show 30`` prints a
history's steps to read.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

from ace.playbook import (
    AddOp,
    Bullet,
    Delta,
    MergeOp,
    Operation,
    Playbook,
    RemoveOp,
    Source,
    TagOp,
    UpdateOp,
    apply,
    injection,
    loads,
)

ROOT = Path(__file__).resolve().parents[2]
GRACE = 5  # steps after an episode in which an alert still counts as catching it (and no correction is placed)
KINDS = ("reworded", "erosion", "lossy_merge", "contradiction", "creeping_removal", "bloat", "counter_burst", "cut")
LETTER = dict(zip(KINDS, ["a", "b", "c", "d", "e", "f", "g", "cut"], strict=True))
LABELS = ("healthy", "correction", *KINDS)
TWIN_SHARE = 0.2  # bloat runs until this share of the bullets has a twin
EROSION_LOSS = 0.3  # erosion runs until this share of its bullets' specifics is stated nowhere
CUT_SHARE = 0.4


def playbooks_dir() -> Path:
    """``$ACE_SHARED_DIR/data/playbooks``, by default ``../shared/data/playbooks`` beside the repository."""
    return Path(os.environ.get("ACE_SHARED_DIR", ROOT.parent / "shared")) / "data" / "playbooks"


def load_base(path: Path | None = None) -> tuple[str, Playbook]:
    """The released playbook a history starts from: ``path``, or the largest under :func:`playbooks_dir`."""
    if path is None:
        files = sorted(playbooks_dir().glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"no released playbooks in {playbooks_dir()} (set ACE_SHARED_DIR)")
        books = [(f.name, loads(f.read_text(), "ace")) for f in files]
        return max(books, key=lambda nb: len(nb[1]))
    return path.name, loads(path.read_text(), "ace")


# -- specifics ----------------------------------------------------------------------------------------------------
APPS = ("Spotify", "Venmo", "Simple Note", "File System", "Gmail", "Amazon", "Splitwise", "Todoist", "Phone")
FORMATS = ("PDF", "CSV", "TXT", "JSON", "Python", "Decimal")
_UNITS = (
    r"%|ms\b|seconds?\b|minutes?\b|hours?\b|days?\b|weeks?\b|months?\b|years?\b|attempts?\b|retries\b|times\b|"
    r"decimal places?\b|pages?\b|items?\b|results?\b|songs?\b|stars?\b|-star\b|-hour\b|characters?\b|errors?\b|"
    r"requests?\b|calls?\b|entries\b|records?\b"
)
_WORD = r"(?:[\w'/-]+(?:\([^()\n]{0,40}\))?)"
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("code", r"`[^`\n]{1,300}`"),
    ("quoted", r"(?<![\w'])'[^'\n]{1,60}'(?![\w])|\"[^\"\n]{1,60}\""),
    ("call", r"\b[A-Za-z_]\w+(?:\([^()\n]{0,40}\))?(?:\.[A-Za-z_]\w*(?:\([^()\n]{0,40}\))?)+"
             r"|\b[A-Za-z_]\w*\([^()\n]{0,40}\)"),
    ("ident", r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b"),
    ("format", r"\b[A-Z]{2,4}(?:[:/-][A-Z]{2,4}){1,2}\b"),
    ("number", rf"(?<![\w.$-])\d+(?:[.:]\d+)*(?![\w)])(?:\s?(?:{_UNITS}))?"),
    ("condition", rf"(?i:\b(?:only (?:when|if)|unless|except (?:when|if)|never|must not|do not|don't|before|after)\b)"
     rf"(?:[ \t]+{_WORD}){{1,5}}"),
    ("entity", r"\b(?:" + "|".join(re.escape(a) for a in (*APPS, *FORMATS)) + r")\b"),
)  # fmt: skip
_COMPILED = tuple((kind, re.compile(p)) for kind, p in _PATTERNS)
_API_VERB = re.compile(
    r"^(?:apis\.|show|search|create|update|delete|like|follow|unfollow|add|remove|review|approve|compress|send|"
    r"login|complete|play|get|set|move|mark|reject|download|upload)"
)


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str
    key: str


def _key(kind: str, text: str) -> str:
    if kind == "call":
        return re.sub(r"\([^()]*\)", "", text)
    if kind == "quoted":
        return text[1:-1]
    if kind in ("condition", "number"):
        return " ".join(text.lower().split())
    return text


def spans(text: str) -> list[Span]:
    """Every specific's span in ``text``, by kind (spans of different kinds may nest: a call in a condition)."""
    out = [Span(m.start(), m.end(), kind, _key(kind, m.group(0))) for kind, rx in _COMPILED for m in rx.finditer(text)]
    return sorted(out, key=lambda s: (s.start, -s.end))


def specifics(text: str) -> frozenset[str]:
    """The specifics ``text`` states (normalized: a call without its arguments, a quoted value without quotes, a
    number or condition lowercased)."""
    return frozenset(s.key for s in spans(text))


def _regions(ss: Sequence[Span]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s in sorted(ss, key=lambda s: s.start):
        if out and s.start < out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end)
        else:
            out.append([s.start, s.end])
    return [(a, b) for a, b in out]


# -- rewording ----------------------------------------------------------------------------------------------------
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "make sure to": ("be sure to", "take care to"),
    "ensure": ("make sure", "guarantee"),
    "ensures": ("guarantees", "makes sure"),
    "retrieve": ("fetch", "obtain", "get"),
    "retrieving": ("fetching", "obtaining", "getting"),
    "retrieved": ("fetched", "obtained"),
    "unnecessary": ("needless", "redundant"),
    "efficiently": ("economically", "cheaply"),
    "efficient": ("economical",),
    "efficiency": ("performance",),
    "accurate": ("correct", "precise"),
    "accurately": ("correctly", "precisely"),
    "identify": ("determine", "pin down", "find"),
    "additional": ("extra", "further"),
    "individual": ("separate", "per-item"),
    "check": ("verify", "confirm"),
    "verify": ("confirm", "double-check"),
    "implement": ("add", "build in", "put in place"),
    "proper": ("correct", "appropriate"),
    "properly": ("correctly", "appropriately"),
    "minimize": ("reduce", "keep down"),
    "reduces": ("cuts", "lowers"),
    "prevents": ("avoids", "stops"),
    "relevant": ("pertinent", "applicable"),
    "information": ("data", "details"),
    "multiple": ("several",),
    "specific": ("particular",),
    "important": ("crucial", "key"),
    "essential": ("vital", "crucial"),
    "approach": ("method", "strategy"),
    "correctly": ("properly", "accurately"),
    "needed": ("required",),
    "handle": ("deal with", "manage"),
    "returns": ("gives back", "yields"),
    "contains": ("includes", "holds"),
    "provides": ("supplies", "offers"),
    "use": ("rely on", "employ"),
    "using": ("with", "via"),
    "rather than": ("instead of",),
    "instead of": ("rather than",),
    "to avoid": ("so as to avoid", "to prevent"),
    "comprehensive": ("thorough", "exhaustive"),
    "significantly": ("considerably", "substantially"),
    "reliable": ("dependable", "trustworthy"),
    "large": ("big",),
    "calls": ("requests",),
    "operations": ("actions",),
    "gracefully": ("cleanly",),
    "attempting": ("trying",),
    "determine": ("work out", "establish"),
    "consider": ("think about",),
    "in order to": ("to",),
}
_SYN_RX = re.compile(
    r"(?<![\w-])(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")(?![\w-])", re.I
)
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\u27ea])")
_ANAPHORIC = re.compile(r"^(?:This|That|These|It|Doing so|Such|Otherwise|If not|Then|Also)\b")


def _mask(text: str) -> tuple[str, list[str]]:
    saved: list[str] = []
    out: list[str] = []
    last = 0
    for a, b in _regions(spans(text)):
        out.append(text[last:a])
        out.append(f"\u27ea{len(saved)}\u27eb")
        saved.append(text[a:b])
        last = b
    out.append(text[last:])
    return "".join(out), saved


def _unmask(text: str, saved: Sequence[str]) -> str:
    return re.sub(r"\u27ea(\d+)\u27eb", lambda m: saved[int(m.group(1))], text)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s[:1].isalpha() else s


def _low(s: str) -> str:
    return s[:1].lower() + s[1:] if s[:1].isupper() and not s[1:2].isupper() else s


def _like(word: str, repl: str) -> str:
    return _cap(repl) if word[:1].isupper() else repl


def _synonyms(s: str, rng: random.Random, p: float) -> tuple[str, int]:
    n = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal n
        if rng.random() >= p:
            return m.group(0)
        n += 1
        return _like(m.group(0), rng.choice(_SYNONYMS[m.group(0).lower()]))

    return _SYN_RX.sub(sub, s), n


def _lead(s: str, rng: random.Random) -> str | None:
    """The first sentence with its clauses in another order or another template, or None if none fits."""
    body, end = (s[:-1], s[-1]) if s[-1:] in ".!?" else (s, ".")
    if m := re.fullmatch(r"For (?P<x>[^:]{3,160}): (?:[Aa]lways )?(?P<y>.+)", body):
        x, y, always = m["x"], m["y"], bool(re.match(r"For [^:]+: [Aa]lways ", body))
        adv = "always " if always else ""
        return rng.choice([
            f"In {x}, {adv}{_low(y)}{end}",
            f"{_cap(adv + _low(y))} in {x}{end}" if not y.endswith("\u27eb") else f"In {x}, {adv}{_low(y)}{end}",
            f"When dealing with {x}: {adv}{_low(y)}{end}",
            f"{_cap(x)}: {'make sure to ' if always else ''}{_low(y)}{end}",
        ])  # fmt: skip
    if m := re.fullmatch(r"When (?P<x>[^:,]{3,160})[:,] (?P<y>.+)", body):
        x, y = m["x"], m["y"]
        options = [f"If {x}, {_low(y)}{end}", f"While {x}, {_low(y)}{end}", f"Whenever {x}: {_low(y)}{end}"]
        if not y.endswith("\u27eb"):
            options.append(f"{_cap(y)} when {x}{end}")
        return rng.choice(options)
    if m := re.fullmatch(r"(?P<app>[\u27ea\w][\w \u27ea\u27eb]{0,30}?) API (?P<what>[a-z][^:]{2,60}): (?P<y>.+)", body):
        return rng.choice([
            f"{_cap(m['what'])} for the {m['app']} API: {m['y']}{end}",
            f"{m['app']} API ({m['what']}): {m['y']}{end}",
        ])  # fmt: skip
    if m := re.fullmatch(r"Always (?P<y>.+)", body):
        return rng.choice(
            [f"Make sure to {m['y']}{end}", f"Be sure to always {m['y']}{end}", f"As a rule, {m['y']}{end}"]
        )
    if m := re.fullmatch(r"Verify (?:that )?(?P<y>.+)", body):
        return rng.choice([f"Check that {m['y']}{end}", f"Confirm that {m['y']}{end}", f"Make sure {m['y']}{end}"])
    return None


_RATIONALE = re.compile(
    r"This (?=(?:ensures|prevents|reduces|improves|avoids|confirms|accounts|creates|allows|guarantees|optimizes|"
    r"helps|minimizes|maintains|makes|means|keeps|saves)\b)"
)


def _rationale(s: str, rng: random.Random) -> str | None:
    if _RATIONALE.match(s):
        return rng.choice(["Doing so ", "That "]) + s[5:]
    if re.match(r"This (approach|optimization|strategy|method)\b", s):
        return "That " + s[5:]
    return None


def fits(text: str) -> bool:
    """Whether ``apply``'s quality rules let ``text`` in (its injection check misreads a few generated lessons)."""
    return injection(text) is None


def _changed_enough(a: str, b: str) -> bool:
    wa, wb = a.split(), b.split()
    return wa != wb and SequenceMatcher(None, wa, wb, autojunk=False).ratio() <= 0.93


def paraphrase(text: str, rng: random.Random, *, tries: int = 8) -> str | None:
    """A real rewording of ``text`` that states every specific it states (verbatim), or None if none was found:
    clause order and sentence templates on the first sentence, synonyms, "This ..." rationales reworded, and
    sentences after the first reordered."""
    masked, saved = _mask(text)
    before = specifics(text)
    for _ in range(tries):
        sents = _SENT_SPLIT.split(masked)
        if rng.random() < 0.75 and (lead := _lead(sents[0], rng)):
            sents[0] = lead
        for i in range(1, len(sents)):
            if rng.random() < 0.6 and (r := _rationale(sents[i], rng)):
                sents[i] = r
        if len(sents) >= 3 and rng.random() < 0.5:
            movable = [i for i in range(1, len(sents)) if not _ANAPHORIC.match(sents[i])]
            if len(movable) >= 2:
                i, j = rng.sample(movable, 2)
                sents[i], sents[j] = sents[j], sents[i]
        out, _n = _synonyms(" ".join(sents), rng, rng.uniform(0.35, 0.8))
        new = _unmask(out, saved)
        if _changed_enough(text, new) and specifics(new) >= before and fits(new):
            return new
    return None


def _tidy(text: str) -> str:
    """Articles, doubled nouns and punctuation left behind by an edit, outside the specifics."""
    s, saved = _mask(text)
    s = re.sub(r"\b([Tt]he|[Aa]n?) (the|an?) ", lambda m: _like(m.group(1), m.group(2)) + " ", s)
    s = re.sub(r"\b(API|endpoint|call|APIs|field|parameter)( API| APIs| field| parameter)\b", r"\1", s)
    s = re.sub(r"\(\s*(?:e\.g\.,?|i\.e\.,?)\s*(?:etc\.)?\s*\)", "", s)
    s = re.sub(r"\s+([,.;:)])", r"\1", s)
    s = re.sub(r"([,;:])\1+", r"\1", s)
    s = re.sub(r"([.!?])(?:\s*\.)+", r"\1", s)
    s = re.sub(r"\(\s+", "(", s)
    s = re.sub(r"[ \t]{2,}", " ", s).strip()
    return _cap(_unmask(s, saved))


_VAGUE: dict[str, tuple[str, ...]] = {
    "api": ("the relevant API", "the appropriate endpoint", "the matching API call", "the right API"),
    "field": ("the corresponding field", "the relevant parameter", "that field", "the appropriate attribute"),
    "class": ("the helper", "the relevant class"),
    "quoted": ("the expected value", "the right value", "the given label", "that value"),
    "code": ("the appropriate code", "a suitable snippet"),
    "number": ("a suitable value", "an appropriate number", "a reasonable amount"),
    "format": ("the usual format", "the expected format"),
    "entity": ("the app", "the service"),
}


def _vague_for(span: Span, text: str, rng: random.Random) -> str:
    kind, raw = span.kind, text[span.start : span.end]
    if kind in ("call", "ident"):
        if kind == "ident" and raw[:1].isupper():
            return rng.choice(_VAGUE["class"])
        return rng.choice(_VAGUE["api" if kind == "call" or _API_VERB.match(raw) else "field"])
    if kind == "number":
        if m := re.fullmatch(r"[\d.:]+\s?([A-Za-z%-].*)", raw):
            unit = m.group(1).lstrip("-")
            return rng.choice(["a few", "a handful of", "several"]) + " " + unit
        if re.fullmatch(r"[45]\d\d", raw) and text[span.end : span.end + 7].lstrip().startswith("error"):
            return "an"
        return rng.choice(_VAGUE["number"])
    return rng.choice(_VAGUE.get(kind, ("it",)))


def vaguer(text: str, key: str, rng: random.Random) -> str | None:
    """``text`` with the specific ``key`` made vague: a name, value or number replaced by a generic phrase (the
    whole call, quoted value or code it sits in), a condition clause dropped (its sentence, when it opens one);
    None if that leaves it stated or the text too short."""
    ss = spans(text)
    targets: list[Span] = []
    for hit in (s for s in ss if s.key == key):
        around = [o for o in ss if o.kind != "condition" and o.start <= hit.start and hit.end <= o.end]
        outer = max(around, key=lambda o: o.end - o.start, default=hit)
        if not any(t.start < outer.end and outer.start < t.end for t in targets):
            targets.append(outer)
    if not targets:
        return None
    out = text
    for s in sorted(targets, key=lambda s: s.start, reverse=True):
        if s.kind == "condition":
            head = out[: s.start]
            if not head.strip() or head.rstrip().endswith(":"):
                return None  # it opens the bullet or a clause after a colon: nothing would be left to read
            if re.search(r"[.!?]\s*$", head):  # it opens a sentence: the sentence goes
                m = re.compile(r".*?[.!?](?=\s|$)", re.S).match(out, s.start)
                if m is None:
                    return None
                out = head.rstrip() + " " + out[m.end() :].lstrip()
            else:  # inside a sentence: the clause goes, up to the next punctuation
                m = re.compile(r"[^.,;:()\n]*").match(out, s.end)
                stop = m.end() if m else s.end
                out = head.rstrip(" ,") + out[stop:]
        else:
            out = out[: s.start] + _vague_for(s, out, rng) + out[s.end :]
    out = _tidy(out)
    if key in specifics(out) or len(out.split()) < 6 or not fits(out):
        return None
    return out


def _drop_sentence(text: str, rng: random.Random) -> str | None:
    sents = _SENT_SPLIT.split(text)
    if len(sents) < 2:
        return None
    choices = [i for i in range(1, len(sents)) if specifics(sents[i])]
    if not choices:
        return None
    i = rng.choice(choices)
    return " ".join(sents[:i] + sents[i + 1 :])


def _drop_parenthetical(text: str) -> str | None:
    m = re.search(r"\s*\((?:e\.g\.|i\.e\.|for example|such as)[^()]{3,160}\)", text)
    if not m or not specifics(m.group(0)):
        return None
    return _tidy(text[: m.start()] + text[m.end() :])


# -- contradictions -----------------------------------------------------------------------------------------------
_FLIPS = (
    ("always", "never"),
    ("before", "after"),
    ("descending", "ascending"),
    ("maximum", "minimum"),
    ("highest", "lowest"),
    ("earliest", "most recent"),
    ("must", "must not"),
    ("include", "exclude"),
)
_GENERIC_PARTS = frozenset(
    [
        "show",
        "search",
        "create",
        "update",
        "delete",
        "get",
        "set",
        "is",
        "id",
        "ids",
        "add",
        "remove",
        "list",
        "by",
        "to",
        "of",
    ]
)
_CODES = (400, 401, 403, 404, 409, 422, 429, 500)


def _other_number(raw: str, rng: random.Random) -> str | None:
    m = re.fullmatch(r"(\d+)(.*)", raw, re.S)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if n in _CODES:
        return str(rng.choice([c for c in _CODES if c != n])) + unit
    options = {n * 2, n + 1, n * 5, max(1, n // 2), n + 10} - {n}
    return str(rng.choice(sorted(options))) + unit


def swap_value(
    text: str, rng: random.Random, names: Sequence[str], *, polarity: bool = True
) -> tuple[str, str, str] | None:
    """``text`` with one fact's value swapped for another plausible one of its kind (a number, a name from
    ``names`` that shares a part with it, a quoted value, or with ``polarity`` a polarity word such as
    always/never): ``(new text, old, new)``. The kind is drawn first, so that every kind comes up."""
    cands: list[tuple[str, str, str]] = []  # (kind, old text, new text)
    for s in spans(text):
        raw = text[s.start : s.end]
        if s.kind == "number" and (new := _other_number(raw, rng)):
            cands.append(("number", raw, new))
        elif s.kind == "ident" and "_" in raw:
            parts = set(raw.split("_"))
            scored = [(len(parts & set(n.split("_"))) / len(parts | set(n.split("_"))), n) for n in names
                      if n != raw and (parts - _GENERIC_PARTS) & set(n.split("_")) and n not in text]  # fmt: skip
            if scored:
                scored.sort(reverse=True)
                cands.append(("name", raw, rng.choice(scored[:3])[1]))
        elif s.kind == "quoted" and raw[1:-1].isalpha():
            others = [n for n in names if n.isalpha() and n != raw[1:-1] and len(n) > 2 and f"'{n}'" not in text]
            if others:
                cands.append(("quoted", raw, f"'{rng.choice(others)}'"))
    for a, b in _FLIPS if polarity else ():
        for x, y in ((a, b), (b, a)):
            if re.search(rf"\b{x}\b", text, re.I) and not (x == "must" and re.search(r"\bmust not\b", text, re.I)):
                cands.append(("polarity", x, y))
    kinds = sorted({c[0] for c in cands})
    rng.shuffle(kinds)
    rng.shuffle(cands)
    cands.sort(key=lambda c: kinds.index(c[0]))
    for kind, old, new in cands:
        if kind == "polarity":
            out = re.sub(rf"\b{old}\b", _cased(new), text, count=1, flags=re.I)
        else:
            out = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", _cased(new, keep=True), text)
        if out != text and (kind == "polarity" or _key_of(old) not in specifics(out)) and fits(out):
            return out, old, new
    return None


def _cased(value: str, *, keep: bool = False) -> Callable[[re.Match[str]], str]:
    """A replacement by ``value`` (capitalized like the match, unless ``keep``), for ``re.sub``."""
    return lambda m: value if keep else _like(m.group(0), value)


def _key_of(raw: str) -> str:
    ss = spans(raw)
    return ss[0].key if ss else raw


# -- new facts ----------------------------------------------------------------------------------------------------
_APP_NOUNS = {
    "spotify": ("song", "album", "playlist", "artist", "queue_item", "podcast", "episode"),
    "venmo": ("transaction", "payment_request", "payment_card", "friend", "bank_transfer"),
    "phone": ("contact", "alarm", "text_message", "voice_message", "call_log"),
    "simple_note": ("note", "checklist", "tag"),
    "file_system": ("file", "directory", "archive"),
    "gmail": ("email", "thread", "draft", "label"),
    "amazon": ("order", "product", "cart_item", "return_request", "wish_list"),
    "splitwise": ("expense", "group", "settlement"),
    "todoist": ("task", "project", "reminder"),
}
_APP_TITLE = {"simple_note": "Simple Note", "file_system": "File System"}
_ATTRS = ("status", "total", "count", "created_at", "updated_at", "due_date", "owner_email", "label", "kind", "limit",
          "currency", "is_archived", "position", "priority", "source_id", "amount_cents", "timezone")  # fmt: skip
_VERBS = ("show", "search", "create", "update", "delete", "list", "archive", "restore", "export")
_VALUES = ("pending", "completed", "archived", "overdue", "received", "sent", "draft", "failed", "shipped", "muted")
_CONDS = ("only when paginating", "only if the response is empty", "unless the task names a date",
          "before deleting anything", "after logging in", "only when the list spans several pages",
          "unless the user asked for all of them", "before sending any payment", "after the first page")  # fmt: skip
_UNITS_NEW = ("seconds", "minutes")
_NEW_TEMPLATES: dict[str, tuple[str, ...]] = {
    "rule": (
        "For {App} {noun} tasks: always call {api}() with {param}={num} {cond}, then read the '{field}' field of "
        "each item to decide what to keep.",
        "When {ing} {noun}s in {App}, {api}() returns at most {num} items per page; keep calling it with page_index "
        "incremented {cond}.",
        "{App} {noun} updates fail with a {code} error when '{field}' is missing, so set {param} explicitly before "
        "calling {api}().",
        "Never compare {field} values as plain strings: {api}() returns them as '{value}' markers, so map them first "
        "and retry at most {n} times.",
        "To find the newest {noun} in {App}, sort by {field} in descending order and take the first item, "
        "{cond}, then confirm with {api}().",
    ),
    "api": (
        "{App} API schema note: {api}() returns {noun} objects with '{field}' and '{field2}' fields; pass "
        "{param}={num} to limit the page size.",
        "{App} API selection guide: use {api}() for {noun} lookups and filter on {field}='{value}' {cond}.",
    ),
    "check": (
        "For {noun} tasks: Verify you used {api}() with {param}={num} and that every '{field}' was checked {cond}.",
        "For {App} {noun} cleanup: Verify no {noun} with {field}='{value}' remains, re-running {api}() up to {n} "
        "times.",
    ),
    "code": (
        "{App} {noun} workflow: 1) Login to {App}, 2) Call {api}() with page_limit={num}, 3) Keep items whose "
        "'{field}' is '{value}', 4) Act on them {cond}.",
    ),
}
_SECTION_STYLE = {"shr": "rule", "psw": "rule", "cms": "rule", "ts": "rule", "misc": "rule", "api": "api",
                  "vc": "check", "code": "code"}  # fmt: skip
_DETAILS = (
    "The response also carries a '{field}' field worth checking.",
    "Pass {param}={num} to keep the number of calls down.",
    "A {code} error here usually means the {noun} no longer exists.",
    "{api}() returns the same data if the first call fails.",
    "Retry at most {n} attempts {cond}.",
    "Wait {n} {unit} between retries of {api}().",
)


_APP_OF = {"Spotify": "spotify", "Venmo": "venmo", "Simple Note": "simple_note", "File System": "file_system",
           "Gmail": "gmail", "Amazon": "amazon", "Splitwise": "splitwise", "Todoist": "todoist", "Phone": "phone",
           "alarm": "phone", "contact": "phone", "song": "spotify", "playlist": "spotify", "payment": "venmo",
           "note": "simple_note", "file": "file_system", "director": "file_system"}  # fmt: skip


def app_of(text: str) -> str | None:
    """The app a bullet is about (its first app name or telling noun), if any."""
    m = re.search(r"\b(" + "|".join(map(re.escape, _APP_OF)) + r")", text)
    return _APP_OF[m.group(1)] if m else None


def _fill(template: str, rng: random.Random, app: str | None = None) -> str:
    app = app if app in _APP_NOUNS else rng.choice(sorted(_APP_NOUNS))
    noun = rng.choice(_APP_NOUNS[app])
    words = {
        "App": _APP_TITLE.get(app, app.capitalize()),
        "noun": noun.replace("_", " "),
        "api": f"apis.{app}.{rng.choice(_VERBS)}_{noun}{rng.choice(['s', '', '_details', '_history'])}",
        "param": f"{rng.choice(noun.split('_'))}_{rng.choice(_ATTRS)}",
        "field": f"{noun}_{rng.choice(_ATTRS)}",
        "field2": f"{rng.choice(_ATTRS)}",
        "num": str(rng.choice((5, 10, 20, 25, 50, 100))),
        "n": str(rng.randint(2, 6)),
        "unit": rng.choice(_UNITS_NEW),
        "code": str(rng.choice(_CODES)),
        "value": rng.choice(_VALUES),
        "cond": rng.choice(_CONDS),
        "ing": rng.choice(("listing", "collecting", "archiving", "exporting", "matching")),
    }
    return template.format(**words)


# -- histories ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """What made version ``version`` from the one before: the resolved delta, its label, and what it did."""

    version: int
    kind: str  # "healthy", "correction", or one of KINDS
    episode: int | None
    delta: Delta
    detail: dict[str, Any] = field(default_factory=dict)
    in_grace: bool = False  # a healthy step within GRACE after an episode (its alerts count for the episode)


@dataclass(frozen=True)
class Episode:
    id: int
    kind: str
    start: int  # first version it made
    end: int  # last version it made
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class History:
    seed: int
    base: str
    versions: list[Playbook]  # versions[t] is version t; versions[0] the base with its counters
    steps: list[Step]  # steps[t - 1] made version t
    episodes: list[Episode]

    def pairs(self) -> list[tuple[int, Playbook]]:
        return list(enumerate(self.versions))

    def step(self, version: int) -> Step:
        return self.steps[version - 1]


_TAGS: tuple[Literal["helpful", "harmful", "neutral"], ...] = ("helpful", "harmful", "neutral")
PLAN = {"reworded": 3, "lossy_merge": 3, "contradiction": 4, "erosion": 1, "creeping_removal": 1, "bloat": 1,
        "counter_burst": 1}  # fmt: skip
MIN_STEPS = 150


class _Gen:
    """One history in the making: the playbook, an index of who states what, and the labelled steps."""

    def __init__(self, seed: int, base: Playbook, base_name: str, *, counters: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.base_name = base_name
        self.pb = self._with_counters(base) if counters else base
        self.versions: list[Playbook] = [self.pb]
        self.steps: list[Step] = []
        self.episodes: list[Episode] = []
        self.bkeys: dict[str, frozenset[str]] = {}
        self.kcount: Counter[str] = Counter()
        self.bwords: dict[str, frozenset[str]] = {}
        self.postings: dict[str, set[str]] = {}
        for b in self.pb:
            self._index(b.id, b.content)
        self.twins: dict[str, str] = {}  # paraphrased copy -> original (bloat)
        self.tainted: set[str] = set()  # bullets whose counters a burst manipulated
        self.corrected: set[str] = set()  # bullets a correction changed (once is enough)
        self.runs = [f"run-{self.rng.randrange(16**6):06x}" for _ in range(6)]
        self.grace_until = 0
        self.corrections = 0
        self.contradictions = 0

    # -- bookkeeping
    def _with_counters(self, pb: Playbook) -> Playbook:
        """The base as a playbook in use: helpful counts skewed (a few bullets very helpful), a few harmful."""
        rng = self.rng
        sections: list[tuple[str, list[Bullet], str | None]] = []
        for name, sec in pb.sections.items():
            bullets = []
            for i in sec.ids:
                b = pb[i]
                helpful = int(rng.expovariate(1 / 4.0))
                harmful = int(rng.expovariate(1 / 0.7))
                if rng.random() < 0.06:
                    harmful = helpful + rng.randint(1, 3)
                bullets.append(b.changed(helpful=helpful, harmful=harmful))
            sections.append((name, bullets, sec.slug))
        return Playbook.from_sections(sections, next_id=pb.next_id)

    def _index(self, bid: str, content: str | None) -> None:
        old = self.bkeys.pop(bid, frozenset())
        self.kcount.subtract(old)
        for w in self.bwords.pop(bid, frozenset()):
            self.postings[w].discard(bid)
        if content is not None:
            new = specifics(content)
            self.bkeys[bid] = new
            self.kcount.update(new)
            words = _words(content)
            self.bwords[bid] = words
            for w in words:
                self.postings.setdefault(w, set()).add(bid)

    def similar(self, ids: Iterable[str], at_least: float) -> list[tuple[str, str, float]]:
        """Pairs ``(a, b, word Jaccard)`` with ``a`` among ``ids``, found through the words they share that few
        bullets use (an inverted index: no pass over all pairs)."""
        out: dict[tuple[str, str], float] = {}
        rare = max(8, len(self.bwords) // 10)
        for a in ids:
            wa = self.bwords[a]
            shared: Counter[str] = Counter()
            for w in wa:
                post = self.postings[w]
                if len(post) <= rare:
                    shared.update(post)
            for b, n in shared.items():
                if b == a or n < 3:
                    continue
                wb = self.bwords[b]
                sim = len(wa & wb) / len(wa | wb)
                if sim >= at_least:
                    out[(a, b) if a < b else (b, a)] = sim
        return [(a, b, sim) for (a, b), sim in sorted(out.items())]

    def unique(self, bid: str) -> set[str]:
        """The specifics of ``bid`` no other bullet states."""
        return {k for k in self.bkeys.get(bid, ()) if self.kcount[k] == 1}

    def src(self, role: str, run: str | None = None, note: str | None = None) -> Source:
        t = len(self.versions)
        return Source(task_id=f"task-{self.rng.randrange(10**5):05d}", step=t, run_id=run or self.rng.choice(self.runs),
                      role=role, note=note)  # fmt: skip

    def commit(self, ops: Sequence[Operation], kind: str, episode: int | None, **detail: Any) -> Step:
        applied = apply(self.pb, Delta(operations=list(ops)))
        for bid, op in applied.delta.ids_touched():
            if op != "TAG":
                b = applied.playbook.get(bid)
                self._index(bid, b.content if b is not None else None)
        self.pb = applied.playbook
        self.versions.append(self.pb)
        in_grace = kind == "healthy" and len(self.versions) - 1 <= self.grace_until
        step = Step(len(self.versions) - 1, kind, episode, applied.delta, dict(detail), in_grace)
        self.steps.append(step)
        return step

    def ids(self) -> list[str]:
        """The bullet ids in render order (the id map's own order follows string hashes, which vary by process)."""
        return [i for sec in self.pb.sections.values() for i in sec.ids]

    def names(self) -> list[str]:
        return sorted(k for k in self.kcount if self.kcount[k] > 0 and re.fullmatch(r"[a-z]+(?:_[a-z]+)+|[a-z]+", k))

    # -- healthy steps
    def tags(self, n: int) -> list[Operation]:
        ids = self.ids()
        out: list[Operation] = []
        for bid in self.rng.sample(ids, min(n, len(ids))):
            tag = self.rng.choices(_TAGS, weights=(70, 22, 8))[0]
            out.append(TagOp(id=bid, tag=tag, source=self.src("reflector")))
        return out

    def new_bullet(self, section: str | None = None) -> tuple[str, str]:
        secs = [s for s in self.pb.sections if self.pb.sections[s].ids] or list(self.pb.sections)
        name = section or self.rng.choice(secs)
        style = _SECTION_STYLE.get(self.pb.sections[name].slug, "rule")
        for _ in range(50):
            text = _fill(self.rng.choice(_NEW_TEMPLATES[style]), self.rng)
            if any(self.kcount[k] == 0 for k in specifics(text)) and fits(text):
                return name, text
        raise RuntimeError("no new fact found")  # builtin-ok: a bug in the templates

    def enriched(self, bid: str) -> str | None:
        b = self.pb[bid]
        base = paraphrase(b.content, self.rng) or b.content
        for _ in range(20):
            detail = _fill(self.rng.choice(_DETAILS), self.rng, app_of(b.content))
            new = f"{base.rstrip()} {detail}" if base.rstrip()[-1:] in ".!?" else f"{base.rstrip()}. {detail}"
            if (
                specifics(new) >= specifics(b.content)
                and any(self.kcount[k] == 0 for k in specifics(detail))
                and fits(new)
            ):
                return new
        return None

    def true_duplicates(self, sample: int = 400) -> list[tuple[str, str]]:
        """Pairs that state the same thing: bloat's twins still both present, or bullets of one section whose
        words overlap by 75 % or more and specifics by half (among a sample)."""
        pairs = [(o, c) for c, o in self.twins.items() if o in self.pb and c in self.pb and c not in self.tainted]
        ids = self.ids()
        pick = self.rng.sample(ids, min(sample, len(ids)))
        for a, b, sim in self.similar(pick, 0.75):
            ka, kb = self.bkeys[a], self.bkeys[b]
            same = len(ka & kb) / len(ka | kb) if ka | kb else 1.0
            novel = len(self.bwords[a] ^ self.bwords[b])
            if sim >= 0.75 and same >= 0.5 and novel <= 6 and self.pb[a].section == self.pb[b].section:
                pairs.append((a, b))
        return [p for p in pairs if not (set(p) & self.tainted)]

    def merged_text(self, a: str, b: str, drop: str | None = None) -> str:
        """``a``'s text reworded, plus the sentences of ``b`` that say what ``a`` does not (with ``drop``, only those
        stating a specific ``a`` does not, and ``drop`` made vague or its sentence left out)."""
        ta, tb = self.pb[a].content, self.pb[b].content
        base = paraphrase(ta, self.rng) or ta
        have, words = specifics(ta), _words(ta)
        if drop is None:  # a careful merge keeps every sentence of b that says anything a does not
            extra = [s for s in _SENT_SPLIT.split(tb) if specifics(s) - have or _words(s) - words]
        else:
            extra = [s for s in _SENT_SPLIT.split(tb) if specifics(s) - have]
        if drop is not None:
            extra = [(vaguer(s, drop, self.rng) if drop in specifics(s) else s) or "" for s in extra]
            extra = [s for s in extra if s]
        joined = " ".join([base.rstrip() + ("" if base.rstrip()[-1:] in ".!?" else "."), *extra]).strip()
        return joined

    def healthy(self, *, allow_correction: bool) -> Step:
        rng = self.rng
        ops: list[Operation] = []
        if rng.random() < 0.8:
            ops += self.tags(rng.randint(1, 4))
        if allow_correction and (c := self.correction_op()) is not None:
            fix, why = c
            return self.commit([*ops, fix], "correction", None, **why)
        roll = rng.random()
        detail: dict[str, Any] = {}
        if roll < 0.35:
            section, text = self.new_bullet()
            ops.append(AddOp(section=section, content=text, source=self.src("curator")))
            detail["op"] = "ADD"
        elif roll < 0.55:
            bid = rng.choice(self.ids())
            if (richer := self.enriched(bid)) is not None:
                ops.append(UpdateOp(id=bid, content=richer, source=self.src("curator")))
                detail["op"] = "UPDATE"
        elif roll < 0.63:
            bad = [b.id for b in self.pb if b.harmful > b.helpful and b.id not in self.tainted]
            if bad:
                bid = rng.choice(bad)
                ops = [o for o in ops if getattr(o, "id", None) != bid]
                ops.append(RemoveOp(id=bid, source=self.src("curator"), reason="harmful more often than helpful"))
                detail["op"] = "REMOVE"
        elif roll < 0.70 and (dups := self.true_duplicates()):
            a, b = rng.choice(dups)
            text = self.merged_text(a, b)
            if specifics(text) >= specifics(self.pb[a].content) | specifics(self.pb[b].content) and fits(text):
                ops = [o for o in ops if getattr(o, "id", None) not in (a, b)]
                ops.append(MergeOp(ids=[a, b], content=text, source=self.src("curator")))
                detail["op"] = "MERGE"
                self.twins.pop(b, None)
                self.twins.pop(a, None)
        if not ops:
            ops = self.tags(1)
        return self.commit(ops, "healthy", None, **detail)

    def correction_op(self) -> tuple[Operation, dict[str, Any]] | None:
        t = len(self.versions)
        expected = t / 100 * 1.5
        if t <= self.grace_until or self.rng.random() > (0.35 if self.corrections < expected - 1 else 0.02):
            return None
        cands = [b for b in self.pb if b.harmful >= max(2, b.helpful) and not {b.id} & (self.tainted | self.corrected)]
        self.rng.shuffle(cands)
        for b in cands:
            if (sw := swap_value(b.content, self.rng, self.names(), polarity=False)) is not None:
                text, old, new = sw
                note = f"correction: {old!r} -> {new!r} (the old value failed in tasks)"
                op = UpdateOp(id=b.id, content=text, reason=note, source=self.src("curator", note=note))
                self.corrections += 1
                self.corrected.add(b.id)
                return op, {"bullet": b.id, "old": old, "new": new}
        return None

    # -- episodes
    def episode(self, kind: str, length: int) -> None:
        eid = len(self.episodes)
        first = len(self.versions)
        detail = getattr(self, f"ep_{kind}")(eid, length)
        self.episodes.append(Episode(eid, kind, first, len(self.versions) - 1, detail))
        self.grace_until = len(self.versions) - 1 + GRACE

    def background(self) -> list[Operation]:
        return self.tags(self.rng.randint(1, 2)) if self.rng.random() < 0.5 else []

    def _without(self, ops: list[Operation], ids: Iterable[str]) -> list[Operation]:
        gone = set(ids)
        return [o for o in ops if getattr(o, "id", None) not in gone]

    def ep_reworded(self, eid: int, _length: int) -> dict[str, Any]:
        ids = self.ids()
        self.rng.shuffle(ids)
        for bid in ids:
            text = self.pb[bid].content
            unique = self.unique(bid)
            top = [s.key for s in _top_level(spans(text)) if s.key in unique and s.kind != "entity"]
            self.rng.shuffle(top)
            for key in top:
                vague = vaguer(text, key, self.rng)
                if vague is None:
                    continue
                new = paraphrase(vague, self.rng) or vague
                lost = specifics(text) - specifics(new)
                kept = specifics(new)
                if lost and lost <= unique and kept <= specifics(text) and len(kept) >= len(specifics(text)) / 2:
                    ops = [
                        *self._without(self.background(), [bid]),
                        UpdateOp(id=bid, content=new, source=self.src("curator")),
                    ]
                    self.commit(ops, "reworded", eid, bullet=bid, dropped=sorted(lost))
                    return {"bullet": bid, "dropped": sorted(lost)}
        raise RuntimeError("no bullet to reword")  # builtin-ok: the base has hundreds

    def ep_lossy_merge(self, eid: int, _length: int) -> dict[str, Any]:
        ids = self.ids()
        pairs = [(a, b) for a, b, _sim in self.similar(self.rng.sample(ids, min(400, len(ids))), 0.3)]
        self.rng.shuffle(pairs)
        for a, b in pairs:
            if self.rng.random() < 0.5:
                a, b = b, a
            only_b = sorted(k for k in self.unique(b) if k not in self.bkeys[a])
            self.rng.shuffle(only_b)
            for drop in only_b:
                text = self.merged_text(a, b, drop)
                lost = (self.bkeys[a] | self.bkeys[b]) - specifics(text)
                if drop in lost and lost <= self.unique(a) | self.unique(b) and fits(text):
                    ops = [
                        *self._without(self.background(), [a, b]),
                        MergeOp(ids=[a, b], content=text, source=self.src("curator")),
                    ]
                    self.commit(ops, "lossy_merge", eid, ids=[a, b], dropped=sorted(lost))
                    return {"ids": [a, b], "dropped": sorted(lost)}
        raise RuntimeError("no pair to merge")  # builtin-ok: the base has many similar pairs

    def ep_contradiction(self, eid: int, _length: int) -> dict[str, Any]:
        via = ("UPDATE", "ADD")[(self.contradictions + self.seed) % 2]  # both ways in every history
        self.contradictions += 1
        ids = self.ids()
        self.rng.shuffle(ids)
        for bid in ids:
            b = self.pb[bid]
            base = b.content if via == "UPDATE" else paraphrase(b.content, self.rng)
            if base is None or (sw := swap_value(base, self.rng, self.names())) is None:
                continue
            text, old, new = sw
            bg = self._without(self.background(), [bid])
            if via == "UPDATE":
                op: Operation = UpdateOp(id=bid, content=text, source=self.src("curator"))
                step = self.commit([*bg, op], "contradiction", eid, via=via, bullet=bid, old=old, new=new)
                return dict(step.detail)
            step = self.commit([*bg, AddOp(section=b.section, content=text, source=self.src("curator"))],
                               "contradiction", eid, via=via, bullet=bid, old=old, new=new)  # fmt: skip
            added = next(o.id for o in step.delta.operations if isinstance(o, AddOp))
            step.detail["added"] = added
            return dict(step.detail)
        raise RuntimeError("no fact to contradict")  # builtin-ok

    def ep_erosion(self, eid: int, length: int) -> dict[str, Any]:
        rng = self.rng
        # bullets to wear down: enough that losing about one specific a step ends near EROSION_LOSS of theirs
        cands = [i for i in self.ids() if len(self.unique(i)) >= 3]
        rng.shuffle(cands)
        pool: list[str] = []
        start_keys: set[str] = set()
        while cands and len(start_keys) * (EROSION_LOSS + 0.03) < length * 1.1:
            pick = cands.pop()
            pool.append(pick)
            start_keys |= self.bkeys[pick]
        for t in range(length):
            gone = sum(1 for k in start_keys if self.kcount[k] == 0)
            need = (EROSION_LOSS + 0.02) * len(start_keys) - gone
            mode = "gentle" if need <= 0 else "aggressive" if need > (length - t) * 1.2 else "lose"
            order = [i for i in pool if i in self.pb]
            rng.shuffle(order)
            new: str | None = None
            bid: str | None = None
            for bid in order:
                if (new := self._erode(bid, mode)) is not None:
                    break
            if new is None or bid is None:  # nothing left to wear down this way: a rewording that is no longer
                bid = rng.choice(order)
                new = paraphrase(self.pb[bid].content, rng)
                if new is None:
                    self.commit(self.tags(1), "erosion", eid)
                    continue
            ops = [*self._without(self.background(), [bid]), UpdateOp(id=bid, content=new, source=self.src("curator"))]
            self.commit(ops, "erosion", eid, bullet=bid)
        gone = sum(1 for k in start_keys if self.kcount[k] == 0)
        return {"bullets": pool, "specifics": len(start_keys), "gone": gone}

    def _erode(self, bid: str, mode: str) -> str | None:
        """``bid`` shortened or made vaguer: ``lose`` loses one or two specifics no other bullet states,
        ``aggressive`` up to four, ``gentle`` only what other bullets still state (none lost for good)."""
        text = self.pb[bid].content
        unique = self.unique(bid)
        moves: list[Callable[[], str | None]] = []
        for s in _top_level(spans(text)):
            if s.kind != "entity" and (s.key in unique) != (mode == "gentle"):
                moves.append(functools.partial(vaguer, text, s.key, self.rng))
        if mode != "lose" or self.rng.random() < 0.3:
            moves += [lambda: _drop_parenthetical(text), lambda: _drop_sentence(text, self.rng)]
        self.rng.shuffle(moves)
        for move in moves:
            new = move()
            if new is None or len(new) < 40 or not fits(new) or len(new) < 0.6 * len(text):
                continue
            lost = specifics(text) - specifics(new)
            if mode == "gentle":
                ok = not (lost & unique) and len(new) < len(text)
            else:
                ok = bool(lost) and lost <= unique and len(lost) <= (4 if mode == "aggressive" else 2)
            if ok:
                tightened, _n = _synonyms(new, self.rng, 0.2)
                same = specifics(tightened) == specifics(new) and len(tightened) >= 0.6 * len(text)
                return tightened if same and fits(tightened) else new
        return None

    def ep_creeping_removal(self, eid: int, length: int) -> dict[str, Any]:
        removed = []
        for _ in range(length):
            good = [b.id for b in self.pb if b.helpful > b.harmful and b.helpful >= 3]
            bid = self.rng.choice(good)
            ops = [*self._without(self.background(), [bid]), RemoveOp(id=bid, source=self.src("curator"))]
            removed.append(bid)
            self.commit(ops, "creeping_removal", eid, removed=bid)
        return {"removed": removed}

    def twinned(self) -> int:
        return len({x for c, o in self.twins.items() if c in self.pb and o in self.pb for x in (c, o)})

    def ep_bloat(self, eid: int, _length: int) -> dict[str, Any]:
        added: list[tuple[str, str]] = []
        while self.twinned() < TWIN_SHARE * len(self.pb) + 1:
            busy = {x for c, o in self.twins.items() for x in (c, o)}
            originals = [b for b in self.pb if b.id not in busy and specifics(b.content)]
            ops: list[Operation] = []
            made: list[str] = []
            for b in self.rng.sample(originals, self.rng.randint(2, 4)):
                if (text := paraphrase(b.content, self.rng)) is not None:
                    ops.append(AddOp(section=b.section, content=text, source=self.src("curator")))
                    made.append(b.id)
            if not ops:
                continue
            step = self.commit(ops, "bloat", eid)
            new_ids = [o.id for o in step.delta.operations if isinstance(o, AddOp)]
            for orig, copy in zip(made, new_ids, strict=True):
                assert copy is not None
                self.twins[copy] = orig
                added.append((orig, copy))
            step.detail["added"] = list(zip(made, new_ids, strict=True))
        return {"added": added, "share": self.twinned() / len(self.pb)}

    def ep_counter_burst(self, eid: int, length: int) -> dict[str, Any]:
        k = self.rng.randint(5, 10)
        ranked = sorted(self.pb, key=lambda b: (-b.helpful, self.rng.random()))
        targets = [b.id for b in ranked[:k]]
        run = f"run-{self.rng.randrange(16**6):06x}"
        source = self.src("reflector", run=run)
        tags: list[Operation] = []
        for bid in targets:
            b = self.pb[bid]
            need = b.helpful - b.harmful + self.rng.randint(1, 3)
            tags += [TagOp(id=bid, tag="harmful", source=source) for _ in range(max(1, need))]
        self.rng.shuffle(tags)
        per = math.ceil(len(tags) / length)
        for i in range(length):
            chunk = tags[i * per : (i + 1) * per]
            if chunk:
                self.commit(chunk, "counter_burst", eid, run=run, tags=len(chunk))
        self.tainted.update(targets)
        return {"targets": targets, "run": run, "tags": len(tags)}

    def ep_cut(self, eid: int, _length: int) -> dict[str, Any]:
        ids = self.ids()
        n = round(CUT_SHARE * len(ids))
        gone = self.rng.sample(ids, n)
        self.commit([RemoveOp(id=i, source=self.src("curator")) for i in gone], "cut", eid, removed=n)
        return {"removed": n, "of": len(ids)}


def _top_level(ss: Sequence[Span]) -> list[Span]:
    """The spans not inside another (longer) span."""
    out = []
    for s in ss:
        if not any(o is not s and o.start <= s.start and s.end <= o.end and (o.end - o.start) > (s.end - s.start)
                   for o in ss):  # fmt: skip
            out.append(s)
    return out


_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "and",
        "or",
        "for",
        "in",
        "on",
        "with",
        "by",
        "is",
        "are",
        "be",
        "as",
        "it",
        "its",
        "this",
        "that",
        "when",
        "if",
        "from",
        "at",
        "use",
    ]
)


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9_]+", text.lower()) if w not in _STOP and len(w) > 2)


def generate(
    seed: int,
    steps: int = 400,
    *,
    base: tuple[str, Playbook] | None = None,
    plan: dict[str, int] | None = None,
) -> History:
    """A labelled history of about ``steps`` steps (more when the episodes need them) from ``base`` (default: the
    largest released playbook): every kind of :data:`PLAN` (default one erosion, creeping removal, bloat and burst,
    three rewordings and lossy merges, four contradictions) in an order the seed draws, healthy steps around them,
    and the 40 % cut last."""
    if steps < MIN_STEPS:
        raise ValueError(f"a history needs at least {MIN_STEPS} steps (got {steps})")
    name, pb = base if base is not None else load_base()
    gen = _Gen(seed, pb, name)
    rng = gen.rng
    counts = dict(PLAN if plan is None else plan)
    episodes = [k for k, n in counts.items() for _ in range(n)]
    rng.shuffle(episodes)
    episodes.append("cut")
    gap_min = GRACE + 3
    warmup = 20

    def fixed(kind: str) -> int:
        return {"creeping_removal": rng.randint(8, 20), "counter_burst": rng.randint(1, 3)}.get(kind, 1)

    lengths = {i: fixed(k) for i, k in enumerate(episodes)}
    bloat_guess = math.ceil(len(pb) * 1.2 / 9 / 3) + 1
    others = sum(v for i, v in lengths.items() if episodes[i] not in ("erosion", "bloat"))
    others += bloat_guess * episodes.count("bloat")
    room = steps - others - warmup - gap_min * len(episodes)
    n_erosion = episodes.count("erosion")
    if n_erosion:
        longest = min(100, room // n_erosion - 10)
        if longest < 50:
            raise ValueError(f"{steps} steps are too few for this plan (erosion needs 50-100 steps each)")
        each = rng.randint(50, longest)
        for i, k in enumerate(episodes):
            if k == "erosion":
                lengths[i] = each
        room -= each * n_erosion
    if room < 0:
        raise ValueError(f"{steps} steps are too few for this plan")
    weights = [rng.random() + 0.2 for _ in range(len(episodes) + 1)]
    spare = [int(room * w / sum(weights)) for w in weights]
    gaps = [warmup + spare[0]] + [gap_min + s for s in spare[1:]]
    for _ in range(gaps[0]):
        gen.healthy(allow_correction=True)
    for i, kind in enumerate(episodes):
        gen.episode(kind, lengths[i])
        gap = gaps[i + 1] if i + 1 < len(episodes) else max(gap_min, steps - (len(gen.versions) - 1))
        for _ in range(gap):
            gen.healthy(allow_correction=i + 1 < len(episodes))
    return History(seed, gen.base_name, gen.versions, gen.steps, gen.episodes)


# -- bigger playbooks, for timing -----------------------------------------------------------------------------------
def grow(base: Playbook, n: int, seed: int = 0) -> Playbook:
    """A playbook of ``n`` bullets made of the released ones: copies with their names and values made distinct
    (``show_song`` -> ``show_song_v12``) and their wording varied by synonyms, counters drawn as in a history."""
    rng = random.Random(seed)
    originals = list(base)
    sections: dict[str, list[Bullet]] = {name: [] for name in base.sections}
    slugs = {name: sec.slug for name, sec in base.sections.items()}
    for k in range(n):
        b = originals[k % len(originals)]
        copy = k // len(originals)
        text = b.content
        if copy:
            text = re.sub(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", rf"\1_v{copy}", text)
            text, _n = _synonyms(text, rng, 0.4)
        bid = f"{slugs[b.section]}-{k + 1:05d}"
        helpful, harmful = int(rng.expovariate(1 / 4.0)), int(rng.expovariate(1 / 0.7))
        sections[b.section].append(Bullet(bid, b.section, text, helpful=helpful, harmful=harmful))
    triples: list[tuple[str, list[Bullet], str | None]] = [(name, bs, slugs[name]) for name, bs in sections.items()]
    return Playbook.from_sections(triples, next_id=n + 1)


def small_steps(pb: Playbook, count: int, seed: int = 0) -> list[Playbook]:
    """``count`` versions after ``pb``, each one small delta through ``apply`` (healthy steps, with a reworded
    drop, a removal and a contradiction now and then): what a guard checks one at a time."""
    gen = _Gen(seed, pb, "grown", counters=False)
    out = []
    for t in range(count):
        roll = t % 10
        if roll == 3:
            gen.ep_reworded(-1, 1)
        elif roll == 6:
            gen.ep_creeping_removal(-1, 1)
        elif roll == 9:
            gen.ep_contradiction(-1, 1)
        else:
            gen.healthy(allow_correction=False)
        out.append(gen.pb)
    return out


def _show(history: History, limit: int) -> None:
    print(f"seed {history.seed}, base {history.base}: {len(history.steps)} steps, {len(history.episodes)} episodes")
    for e in history.episodes:
        print(f"  episode {e.id} {e.kind}: versions {e.start}-{e.end}")
    shown = 0
    for st in history.steps:
        if shown >= limit:
            break
        if st.kind == "healthy" and shown % 3:
            continue
        shown += 1
        print(f"\n[{st.version}] {st.kind}" + (f" (episode {st.episode})" if st.episode is not None else ""))
        prev = history.versions[st.version - 1]
        for op in st.delta.operations:
            if isinstance(op, UpdateOp):
                print(f"  UPDATE {op.id}\n    - {prev[op.id].content}\n    + {op.content}")
            elif isinstance(op, AddOp):
                print(f"  ADD {op.id}: {op.content}")
            elif isinstance(op, MergeOp):
                print(
                    f"  MERGE {op.ids}\n"
                    + "".join(f"    - {prev[i].content}\n" for i in op.ids)
                    + f"    + {op.content}"
                )
            elif isinstance(op, RemoveOp):
                print(f"  REMOVE {op.id}")
        tags = [op for op in st.delta.operations if isinstance(op, TagOp)]
        if tags:
            print(f"  TAG x{len(tags)}: " + ", ".join(f"{t.id}:{t.tag}" for t in tags[:6]))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--show", type=int, default=40, help="how many steps to print (healthy ones thinned)")
    args = p.parse_args(argv)
    _show(generate(args.seed, args.steps), args.show)


if __name__ == "__main__":
    main()
