"""A changed fact is an UPDATE of the bullet that stated it, not a second bullet beside it.

When a curator ADDs a bullet that says what a bullet already says with one value changed ("Refunds from Oslo use
LC-9999" beside "Refunds from Oslo use LC-4471"), the playbook would hold both, and a generator would have to guess
which is current. :func:`supersede` rewrites such an ADD as an UPDATE of the old bullet, so the log shows the
supersession (the version before holds the old value; blame shows both) and the playbook states the fact once.

Two bullets are *the same statement with one value changed* when their texts, with every value masked, are the same
words, and exactly one value differs. Values are quoted strings, codes (letters with digits: ``LC-4471``, ``F12``)
and numbers; for a fact bullet (``subject → value``, :func:`ace.playbook.focus.fact`) the value is what follows the
arrow and the subject must be the same. A leading "from now on", "now", "correction:" and the like is not part of
the statement. Anything else (another subject word, two values changed, a value added) is another statement, and the
ADD stays an ADD: this rule would rather keep a stale bullet beside a new one than overwrite a different fact.

Pure: no I/O; O(bullets) per call, with the frames of a playbook kept with it (:meth:`Playbook.derived`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ace.playbook.delta import AddOp, MergeOp, Operation, RemoveOp, TagOp, UpdateOp
from ace.playbook.focus import ARROW, WORDING_SEP, fact_value, specific, with_wording
from ace.playbook.focus import wordings as wording_list
from ace.playbook.model import Playbook, Source
from ace.playbook.query import focused, paraphrase_terms, terms

_VALUE = re.compile(
    r"""(?x)
    "[^"\n]{1,120}" | '[^'\n]{1,120}' | `[^`\n]{1,120}`
    | (?<![\w-])(?=[\w.-]*\d)[A-Za-z][\w.-]*\d[\w-]*                 # a code: letters with digits (LC-4471, F12, v2)
    | (?<![\w.-])[-+]?\d[\d,]*(?:\.\d+)?%?                             # a number
    """
)
_LEAD = re.compile(
    r"^\s*(?:(?:from now on|as of now|as of today|going forward|henceforth|now|correction|update|updated|new rule"
    r"|note)\b[\s:,;-]*)+",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+|<v>", re.UNICODE)
# a number that labels a thing ("Lesson 2:", "step 3", "rule #4") says which one, not how much: part of the frame
_LABELLED = re.compile(
    r"\b(lesson|step|rule|item|number|no\.|part|phase|tip|case|example|note|section|chapter|question|q|point)"
    r"(\s*#?\s*)(\d{1,6})\b",
    re.IGNORECASE,
)


def _labels(text: str) -> str:
    """``text`` with each labelling number spelled in letters (``Lesson 2`` -> ``Lesson label-c``): no value."""
    return _LABELLED.sub(lambda m: f"{m.group(1)} label-{''.join('abcdefghij'[int(d)] for d in m.group(3))}", text)


@dataclass(frozen=True, slots=True)
class Superseded:
    """An ADD (its index among the operations) rewritten as an UPDATE of ``bullet``: ``old`` → ``new``."""

    index: int
    bullet: str
    old: str
    new: str


def _norm_value(v: str) -> str:
    return v.strip().strip("\"'`").strip().casefold()


def statement(content: str) -> tuple[str, tuple[str, ...]] | None:
    """The frame of a bullet (its words with each value masked) and its values, or None when it states no value."""
    text = content.strip()
    if ARROW in text:
        subject, value = text.rsplit(ARROW, 1)
        subject = _labels(_LEAD.sub("", subject))
        if not value.strip():
            return None
        return " ".join(_WORD.findall(subject.casefold())) + " -> <v>", (_norm_value(value),)
    text = _labels(_LEAD.sub("", text))
    values = tuple(_norm_value(m.group(0)) for m in _VALUE.finditer(text))
    if not values:
        return None
    frame = " ".join(_WORD.findall(_VALUE.sub(" <v> ", text).casefold()))
    return frame, values


def _frames(playbook: Playbook) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for b in playbook:
        s = statement(b.content)
        if s is not None:
            found.setdefault(s[0], []).append((b.id, s[1]))
    return found


def superseded_by(playbook: Playbook, content: str) -> tuple[str, str, str] | None:
    """The bullet that ``content`` restates with one value changed: ``(bullet id, old value, new value)``; None when
    there is none, or more than one (which one is meant is not clear: the ADD stays an ADD)."""
    s = statement(content)
    if s is None:
        return None
    frame, values = s
    frames = playbook.derived("supersede.frames", lambda: _frames(playbook))
    hits = []
    for bullet_id, old in frames.get(frame, []):
        if len(old) != len(values):
            continue
        changed = [(a, b) for a, b in zip(old, values, strict=True) if a != b]
        if len(changed) == 1:
            hits.append((bullet_id, *changed[0]))
        elif not changed:
            return None  # the same statement is there already: not a change of value
    return hits[0] if len(hits) == 1 else None


_PLAIN = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "at", "for", "from", "by", "with", "and", "or", "is", "are", "be", "do",
     "does", "did", "which", "what", "who", "whom", "whose", "when", "where", "how", "use", "uses", "used", "using",
     "this", "that", "these", "those", "it", "its", "as", "into", "under", "over", "per", "via", "should", "must",
     "can", "go", "goes", "get", "gets", "out"]
)  # fmt: skip


def _subject(content: str) -> str:
    text = _labels(content)
    text = text.rsplit(ARROW, 1)[0] if ARROW in text else _VALUE.sub(" ", text)
    return _LEAD.sub("", text)


def _subject_words(content: str) -> set[str]:
    return {w for w in _WORD.findall(_subject(content).casefold()) if w != "<v>" and w not in _PLAIN}


# capitalised at the start of a sentence, not because they name something
_STARTERS = frozenset(
    [
        "i",
        "a",
        "an",
        "we",
        "you",
        "our",
        "my",
        "your",
        "they",
        "he",
        "she",
        "it",
        "please",
        "let",
        "tell",
        "give",
        "find",
        "show",
        "need",
        "patient",
        "customer",
        "user",
    ]
)


_SENTENCE_START = re.compile(r"(?:^\s*|[.?!:;\u2014|]\s+)([^\W\d_][\w'-]*)")  # a sentence's (a wording's) first word


def _names(content: str, version: int = 1) -> set[str]:
    """The subject's names: its capitalised words (a sentence's first word among them, unless it is a pronoun or a
    word that starts sentences: "I need ...", "Please ..."; see :func:`_conflict`). ``version`` 2: in a fact
    bullet's wordings (questions people asked), a sentence's first word is never a name ("Students sitting the
    spring Cell Biology final ..." names Cell Biology, not Students)."""
    subject = _subject(content)
    ws = re.findall(r"[^\W\d_][\w'-]*", subject)
    # a contraction is its first word ("I'm", "What's", "Let's" start sentences; they name nothing)
    found = {w.casefold() for w in ws if w[0].isupper() and w.split("'")[0].casefold() not in _PLAIN | _STARTERS}
    if version >= 2 and ARROW in content:
        starts = {m.start(1) for m in _SENTENCE_START.finditer(subject)}
        inside = {m.group(0).casefold() for m in re.finditer(r"[^\W\d_][\w'-]*", subject) if m.start() not in starts}
        found &= inside
    return found


def _conflict(a: str, b: str, version: int = 1) -> bool:
    """Whether one subject names what the other never says (Oslo against Tromso)."""
    wa, wb = set(_WORD.findall(_subject(a).casefold())), set(_WORD.findall(_subject(b).casefold()))
    return bool(_names(a, version) - wb or _names(b, version) - wa)


def duplicate_of(playbook: Playbook, content: str, version: int = 1) -> str | None:
    """The bullet ``content`` says again in other words, or None. The same values (a fact bullet's value; a rule's
    codes, numbers and quoted values, in any order), no name in one subject that the other does not say (Oslo is
    not Tromso), and: for values with a digit or quotes (codes, which name one thing each), at least one other
    word of the subject in common; for a plain name (a carrier, a team: several facts may share one), the same
    words in the subject once the plain ones ("which", "the", "use", ...) are left out. The most overlapping such
    bullet when there are several. ``version``: the rules' (:func:`_names`; 1 is what runs recorded before used)."""
    s = statement(content)
    if s is None:
        return None
    values = frozenset(s[1])
    coded = all(specific(v) for v in s[1])
    mine = _subject_words(content)
    best: tuple[float, str] | None = None
    for bullet_id in playbook.derived("supersede.values", lambda: _by_values(playbook)).get(values, []):
        other = playbook[bullet_id].content
        theirs = _subject_words(other)
        shared = mine & theirs
        share = len(shared) / len(mine | theirs) if mine | theirs else 0.0
        same = bool(shared) if coded else mine == theirs
        if same and not _conflict(content, other, version) and (best is None or share > best[0]):
            best = (share, bullet_id)
    return None if best is None else best[1]


def _by_values(playbook: Playbook) -> dict[frozenset[str], list[str]]:
    found: dict[frozenset[str], list[str]] = {}
    for b in playbook:
        s = statement(b.content)
        if s is not None:
            found.setdefault(frozenset(s[1]), []).append(b.id)
    return found


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An ADD (its index among the operations) that says again what ``bullet`` says: made a helpful TAG of it."""

    index: int
    bullet: str


def replaced_in(playbook: Playbook, content: str, old: str) -> str | None:
    """The bullet that states ``old``, the value the environment said ``content``'s value replaces (a knowledge
    update): the one stating it whose subject shares the most words with ``content``'s; None when none states it."""
    key = _norm_value(old)
    if not key:
        return None
    mine = _subject_words(content)
    found: list[tuple[int, str]] = []
    for b in playbook:
        s = statement(b.content)
        if s is not None and key in s[1]:
            found.append((len(mine & _subject_words(b.content)), b.id))
    return max(found)[1] if found else None


def consolidate(
    playbook: Playbook,
    operations: Sequence[Operation],
    source: Source | None = None,
    *,
    replaces: str | None = None,
    asked: str | None = None,
    wordings: int = 1,
    version: int = 1,
) -> tuple[list[Operation], list[Superseded], list[Duplicate]]:
    """:func:`supersede`, and then each ADD that says again what a bullet says (:func:`duplicate_of`) becomes a
    helpful TAG of that bullet: one bullet per fact, its counter saying it was learned again. ``replaces``: the
    value the environment said the lesson's value replaces (a knowledge update); an ADD not otherwise matched
    becomes an UPDATE of the bullet stating that value (:func:`replaced_in`), a fact bullet keeping its wordings.
    ``asked``: the question the lesson came from; with ``wordings`` > 1, a fact bullet the ADD said again, or whose
    value changed, takes it as one more wording of its subject when it says words they lack
    (:func:`ace.playbook.focus.with_wording`; at most ``wordings``). ``version``: the rules that tell facts apart
    (:data:`FACTS_VERSIONS`; 1 is what runs recorded before used)."""
    if replaces:
        named = {i for op in operations for i in _ids(op)}
        hinted: list[Operation] = []
        for op in operations:
            target = replaced_in(playbook, op.content, replaces) if isinstance(op, AddOp) else None
            if isinstance(op, AddOp) and target is not None and target not in named:
                note = f"supersedes {_norm_value(replaces)!r} (the environment said so)"
                hinted.append(_kept_wordings(playbook, _update(op, target, note, source), asked, wordings))
                named.add(target)
            elif isinstance(op, UpdateOp) and op.id in playbook and _states(playbook[op.id].content, replaces):
                # the curator chose to update the bullet stating the replaced value: the fact's wordings stay too
                hinted.append(_kept_wordings(playbook, op, asked, wordings))
            else:
                hinted.append(op)
        operations = hinted
    ops, swapped = supersede(playbook, operations, source)
    named = {i for op in ops for i in _ids(op)}
    out: list[Operation] = []
    dups: list[Duplicate] = []
    tagged = {op.id for op in ops if isinstance(op, TagOp)}
    for n, op in enumerate(ops):
        if isinstance(op, AddOp):
            same = duplicate_of(playbook, op.content, version)
            if same is None and asked and wordings > 1:
                same = _asked_before(playbook, op.content, asked, ASKED_DEPTH if version >= 2 else 1)
            if same is not None:
                dups.append(Duplicate(n, same))
                if same not in tagged:
                    richer = with_wording(playbook[same].content, asked, wordings) if asked and wordings > 1 else None
                    if richer is not None and same not in named:  # one more way the fact is asked
                        out.append(_update(AddOp(section=op.section, content=richer), same, "another wording",
                                           op.source or source))  # fmt: skip
                        named.add(same)
                    out.append(TagOp(id=same, tag="helpful", source=op.source or source))
                    tagged.add(same)
                continue
        out.append(op)
    return out, swapped, dups


def supersede(
    playbook: Playbook, operations: Sequence[Operation], source: Source | None = None
) -> tuple[list[Operation], list[Superseded]]:
    """``operations`` with each ADD that restates a bullet of ``playbook`` with one value changed rewritten as an
    UPDATE of that bullet (its source's note saying which value it replaced), unless another operation already
    updates, removes or merges that bullet; and what was rewritten."""
    named = {i for op in operations for i in _ids(op)}
    out: list[Operation] = []
    done: list[Superseded] = []
    for n, op in enumerate(operations):
        if isinstance(op, AddOp):
            hit = superseded_by(playbook, op.content)
            if hit is not None and hit[0] not in named:
                bullet_id, old, new = hit
                out.append(_update(op, bullet_id, f"supersedes {old!r} with {new!r}", source))
                named.add(bullet_id)
                done.append(Superseded(n, bullet_id, old, new))
                continue
        out.append(op)
    return out, done


def _states(content: str, value: str) -> bool:
    """Whether ``content`` states ``value`` (one of its values, compared as :func:`statement` reads them)."""
    s = statement(content)
    return s is not None and _norm_value(value) in s[1]


def _kept_wordings(playbook: Playbook, update: UpdateOp, asked: str | None, wordings: int) -> UpdateOp:
    """``update`` of a fact bullet to a fact's new value, keeping the wordings of the bullet's subject (and
    ``asked`` as one more, within ``wordings``): what is asked stays, the value changes."""
    held, value = wording_list(playbook[update.id].content), fact_value(update.content)
    if not held or value is None:
        return update
    kept = f"{WORDING_SEP.join(held)}{ARROW}{value}"
    richer = with_wording(kept, asked, wordings) if asked and wordings > 1 else None
    return update.model_copy(update={"content": richer or kept})


# how far down the question's ranking (:func:`_asked_before`) a bullet stating the lesson's value is taken as the
# same fact asked in other words (rules version 2; version 1 looked at the first only)
ASKED_DEPTH = 3
FACTS_VERSIONS = (1, 2)  # the rules that tell facts apart: 2 is this module's; 1 what runs recorded before used


def _asked_before(playbook: Playbook, content: str, asked: str, depth: int = 1) -> str | None:
    """The first of the ``depth`` fact bullets most relevant to the question ``asked``
    (:func:`ace.playbook.query.focused`) that states the value ``content`` (a fact) states and shares two terms with
    the question that are not phrasing: the question asked for that fact in other words. What tells two wordings
    of a fact whose value is a plain name apart from two facts sharing one (they share no subject word but the
    value). None otherwise."""
    value = fact_value(content)
    if value is None:
        return None
    phrasing = paraphrase_terms(playbook)
    mine = set(terms(asked))
    for bullet, _ in focused(playbook, asked, depth):
        theirs = fact_value(bullet.content)
        if theirs is None or _norm_value(theirs) != _norm_value(value):
            continue
        # and they share two terms that are not phrasing: "on call" alone does not make two doctors' shifts one fact
        if len((mine & set(terms(bullet.content.rsplit(ARROW, 1)[0]))) - phrasing) >= 2:
            return bullet.id
    return None


def _update(op: AddOp, bullet_id: str, note: str, source: Source | None) -> UpdateOp:
    """``op``'s content as an UPDATE of ``bullet_id``, its source (the op's, else the delta's) noting why."""
    base = op.source or source
    noted = replace(base, note=note) if base is not None else Source(note=note)
    return UpdateOp(id=bullet_id, content=op.content, source=noted)


def _ids(op: Operation) -> list[str]:
    """The bullets an operation changes the text of or removes (a TAG changes neither)."""
    if isinstance(op, UpdateOp | RemoveOp):
        return [op.id]
    if isinstance(op, MergeOp):
        return [*op.ids, *([op.id] if op.id else [])]
    return []


__all__ = [
    "ASKED_DEPTH",
    "FACTS_VERSIONS",
    "Duplicate",
    "Superseded",
    "consolidate",
    "duplicate_of",
    "replaced_in",
    "statement",
    "supersede",
    "superseded_by",
]
