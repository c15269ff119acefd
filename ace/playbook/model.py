"""The playbook as immutable data: :class:`Source`, :class:`Bullet`, :class:`Section`, :class:`Playbook`.

Everything here is frozen. A change makes a new :class:`Playbook` that shares the untouched bullets with the old
one, which is what lets ``apply`` be atomic (the old object is never touched) and lets a rendered prompt and a
content digest be memoized per object. The sharing is structural: the id map is a persistent hash map
(``immutables.Map``, a HAMT) and each section's order a persistent vector, so changing one bullet of a playbook
of n costs O(log n), not a copy of n entries.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

import immutables

from ace.errors import InvalidInput
from ace.playbook.bulk import builds_in_bulk
from ace.playbook.errors import PlaybookFormatError
from ace.playbook.text import IMPORT_MAX_CHARS, SECTION_MAX_CHARS, check_stored_text

# What Bullet.canonical writes with: the encoder's own string escaping, and the encoder for what it does not write
# itself (a bullet's ``extra``)
_esc: Callable[[str], str] = json.encoder.encode_basestring
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

# Ids look like the paper's (`shr-00001`) but any short token of these characters is accepted on import.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_NUMERIC_SUFFIX = re.compile(r"-(\d+)$")
_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")

# Slugs of the sections used by the paper's released playbooks; other sections get one derived from their name.
KNOWN_SLUGS: Mapping[str, str] = MappingProxyType(
    {
        "STRATEGIES AND HARD RULES": "shr",
        "APIS TO USE FOR SPECIFIC INFORMATION": "api",
        "USEFUL CODE SNIPPETS AND TEMPLATES": "code",
        "COMMON MISTAKES AND CORRECT STRATEGIES": "cms",
        "PROBLEM-SOLVING HEURISTICS AND WORKFLOWS": "psw",
        "VERIFICATION CHECKLIST": "vc",
        "TROUBLESHOOTING AND PITFALLS": "ts",
        "OTHERS": "misc",
    }
)
CONTENT_MOD = 1 << 256
# What joins a section's ids in the order hash (and in a store's materialized order): no id can hold it (ID_RE)
ORDER_SEP = "\x1f"
_STOPWORDS = frozenset({"and", "or", "to", "for", "of", "the", "a", "an", "in", "on", "with"})


@dataclass(frozen=True, slots=True)
class Source:
    """Provenance of a change: which task, step, run and role produced it."""

    task_id: str | None = None
    step: int | None = None
    run_id: str | None = None
    role: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, in :data:`SOURCE_FIELDS` order."""
        return _source_to_dict(self)

    def plain(self) -> bool:
        """Whether every field is None or of its type (what :meth:`canonical` writes itself)."""
        return _source_plain(self)

    def canonical(self) -> str:
        """``to_dict()`` as canonical JSON (sorted keys, no spaces, non-ASCII kept), as :meth:`Bullet.canonical`
        writes it."""
        if not self.plain():
            return _CANONICAL.encode(self.to_dict())
        return _source_canonical(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        """Strictly typed: strings are strings and the step an integer (raises ValueError naming the field)."""
        made = _source_quick(data)
        if made is not None:  # the common record; anything else is checked field by field, which names the bad one
            return made
        return cls(*[f.kind.checked(data, f.name) for f in SOURCE_FIELDS])


# The ``extra`` of a bullet that has none: one shared read-only mapping, not an empty dict per bullet (at 100k
# bullets those dicts cost memory and the garbage collector's time)
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Bullet:
    """One id'd item of the playbook.

    ``sources`` lists the provenance of every content change (add, update, merge), oldest first;
    ``merged_from`` the ids of bullets folded into this one; ``extra`` keeps format-specific fields
    (e.g. a skillbook's keywords) so that imports round-trip.
    """

    id: str
    section: str
    content: str
    helpful: int = 0
    harmful: int = 0
    neutral: int = 0
    created_step: int | None = None
    updated_step: int | None = None
    sources: tuple[Source, ...] = ()
    merged_from: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: NO_EXTRA, hash=False)
    _digest: bytes | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def changed(self, **fields: Any) -> Bullet:
        """A copy with ``fields`` changed (what ``dataclasses.replace`` does, several times faster: apply calls it
        for every TAG and UPDATE). The copy's digest is computed afresh."""
        return _bullet_changed(self, fields)

    @property
    def score(self) -> int:
        """Net usefulness as tagged by the reflector: helpful minus harmful."""
        return self.helpful - self.harmful

    def to_dict(self) -> dict[str, Any]:
        """Every field in :data:`BULLET_FIELDS` order; an optional one only when it is set (not None, not empty)."""
        return _bullet_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Bullet:
        """Strictly typed (counters are non-negative integers, not ``"7"``); raises ValueError naming the field."""
        made = _bullet_quick(d)  # the common row, checked as built (values of any type are read, then checked)
        # anything else is checked field by field, which names the bad one
        return made if made is not None else cls._from_dict_checked(d)

    @classmethod
    def _from_dict_checked(cls, d: Mapping[str, Any]) -> Bullet:
        sources = _typed(d, "sources", list) or []
        merged = _typed(d, "merged_from", list) or []
        if not all(isinstance(s, Mapping) for s in sources) or not all(isinstance(i, str) for i in merged):
            raise InvalidInput(f"bullet {d.get('id')!r}: 'sources' must be objects and 'merged_from' ids")
        return cls(*[f.kind.checked(d, f.name) for f in BULLET_FIELDS])

    def _plain(self) -> bool:
        """Whether every field holds exactly its type (``type(x) is int``: not a bool), ``extra`` aside: what
        :meth:`canonical` writes itself and :meth:`from_dict` takes without naming a field."""
        return _bullet_plain(self)

    def canonical(self) -> str:
        """The canonical JSON of this bullet (sorted keys, no spaces, non-ASCII kept): what :meth:`digest` hashes,
        and what a store keeps as the bullet's row.

        Written field by field in sorted key order with the JSON encoder's own string escaping: byte for byte
        ``json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` (a test holds the
        two equal on arbitrary bullets), in 60 % of its time: a cold start digests every bullet. A bullet built by
        hand with other types (a bool for a count) is written by ``json.dumps``."""
        if not self._plain():
            return _CANONICAL.encode(self.to_dict())
        return _bullet_canonical(self)

    def canonical_with_digest(self) -> tuple[str, bytes]:
        """``(canonical(), digest())`` with the canonical text serialized once: the digest, when this object has
        not computed it yet, is taken from that text (what a store writes as a bullet's row and its digest)."""
        text = self.canonical()
        if self._digest is None:
            object.__setattr__(self, "_digest", hashlib.sha256(text.encode()).digest())
        return text, self._digest  # type: ignore[return-value]

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of this bullet, computed once per object."""
        if self._digest is None:
            object.__setattr__(self, "_digest", hashlib.sha256(self.canonical().encode()).digest())
        return self._digest  # type: ignore[return-value]

    @classmethod
    def from_canonical(cls, d: Mapping[str, Any], text: str) -> Bullet:
        """The bullet whose :meth:`canonical` form is ``text`` (parsed as ``d``), given the digest of ``text``
        without serializing it again. Fields are taken as they are, not type-checked: for a store's own rows,
        whose digests are then checked against the digest recorded for their version (a row that was edited does
        not add up to it, and is not served)."""
        b = _bullet_stored(d)
        object.__setattr__(b, "_digest", hashlib.sha256(text.encode()).digest())
        return b


# -- the field tables -------------------------------------------------------------------------------------------
# Every serialization of a bullet and of its provenance (to_dict/from_dict, the canonical JSON a digest hashes and a
# store keeps as the bullet's row, that row read back, Bullet.changed, the type checks) is derived from these two
# tables: adding a field is one line in a table and one in its dataclass (checked at import, below). The text
# formats (ace, markdown, skillbook) write the fields their formats have, by hand.
#
# Each kind says, as Python expressions over the value ``{v}``, how a field is checked, written and read; the
# methods are compiled from the tables once, at import, so that they run as fast as written out by hand (a cold
# start digests every bullet, a snapshot load builds every one).


@dataclass(frozen=True, slots=True)
class FieldKind:
    """How every serialization treats a field of one kind: expressions over the value ``{v}`` (``{n}``: the key)."""

    name: str
    always: bool  # written even when unset; else omitted when None (or, for a collection, when empty)
    collection: bool
    missing: str  # what from_dict reads for an absent key
    plain: str | None  # holds exactly its type: what canonical() writes itself (None: not checked)
    encode: str  # its canonical JSON text
    dump: str  # its to_dict() value
    stored: str  # read from a store's own row ``d`` as it is, unchecked (from_canonical)
    quick_ok: str | None  # from_dict's fast path can take the raw value (None: any)
    quick: str  # the raw value as the field's on that path (checked once the bullet is built)
    checked: Callable[[Mapping[str, Any], str], Any]  # read strictly from a dict, naming the field when it is wrong


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of :class:`Bullet` or :class:`Source`: its name (the attribute's and the key's) and its kind."""

    name: str
    kind: FieldKind


TEXT = FieldKind(  # a required string
    "text",
    always=True,
    collection=False,
    missing="None",
    plain="type({v}) is str",
    encode="_esc({v})",
    dump="{v}",
    stored="d[{n}]",
    quick_ok=None,
    quick="{v}",
    checked=lambda d, n: _required(d, n, str),
)
COUNT = FieldKind(  # a non-negative integer, 0 when absent
    "count",
    always=True,
    collection=False,
    missing="0",
    plain="type({v}) is int",
    encode="int.__repr__({v})",
    dump="{v}",
    stored="d.get({n}, 0)",
    quick_ok=None,
    quick="{v}",
    checked=lambda d, n: _count(d, n),
)
NUMBER = FieldKind(  # an optional integer
    "number",
    always=False,
    collection=False,
    missing="None",
    plain="({v} is None or type({v}) is int)",
    encode="int.__repr__({v})",
    dump="{v}",
    stored="d.get({n})",
    quick_ok=None,
    quick="{v}",
    checked=lambda d, n: _typed(d, n, int),
)
NOTE = FieldKind(  # an optional string
    "note",
    always=False,
    collection=False,
    missing="None",
    plain="({v} is None or type({v}) is str)",
    encode="_esc({v})",
    dump="{v}",
    stored="d.get({n})",
    quick_ok=None,
    quick="{v}",
    checked=lambda d, n: _typed(d, n, str),
)
SOURCES = FieldKind(  # provenance records (Source), oldest first
    "sources",
    always=False,
    collection=True,
    missing="None",
    plain="all(type(s) is Source and s.plain() for s in {v})",
    encode="_sources_json({v})",
    dump="[s.to_dict() for s in {v}]",
    stored="tuple([Source(**s) for s in d[{n}]]) if d.get({n}) else ()",
    quick_ok="({v} is None or (type({v}) is list and all(type(x) is dict for x in {v})))",
    quick="tuple(map(Source.from_dict, {v})) if {v} else ()",
    checked=lambda d, n: tuple(Source.from_dict(s) for s in _typed(d, n, list) or ()),
)
IDS = FieldKind(  # bullet ids
    "ids",
    always=False,
    collection=True,
    missing="None",
    plain="all(type(i) is str for i in {v})",
    encode="_ids_json({v})",
    dump="list({v})",
    stored="tuple(d[{n}]) if {n} in d else ()",
    quick_ok="({v} is None or type({v}) is list)",
    quick="tuple({v}) if {v} else ()",
    checked=lambda d, n: tuple(_typed(d, n, list) or ()),
)
EXTRA = FieldKind(  # format-specific fields kept so that imports round-trip: a JSON-ready mapping, never checked
    "extra",
    always=False,
    collection=True,
    missing="None",
    plain=None,
    encode="_CANONICAL.encode(dict({v}))",
    dump="dict({v})",
    stored="d.get({n}) or NO_EXTRA",
    quick_ok="{v} is None",  # a bullet with extra fields takes the checked path
    quick="NO_EXTRA",
    checked=lambda d, n: _typed(d, n, Mapping) or NO_EXTRA,
)

BULLET_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("id", TEXT),
    FieldSpec("section", TEXT),
    FieldSpec("content", TEXT),
    FieldSpec("helpful", COUNT),
    FieldSpec("harmful", COUNT),
    FieldSpec("neutral", COUNT),
    FieldSpec("created_step", NUMBER),
    FieldSpec("updated_step", NUMBER),
    FieldSpec("sources", SOURCES),
    FieldSpec("merged_from", IDS),
    FieldSpec("extra", EXTRA),
)
SOURCE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("task_id", NOTE),
    FieldSpec("step", NUMBER),
    FieldSpec("run_id", NOTE),
    FieldSpec("role", NOTE),
    FieldSpec("note", NOTE),
)

_BULLET_OK = [f.name for f in fields(Bullet) if f.init] == [f.name for f in BULLET_FIELDS]
if not _BULLET_OK or [f.name for f in fields(Source)] != [f.name for f in SOURCE_FIELDS]:
    raise RuntimeError("Bullet's or Source's fields changed: update BULLET_FIELDS, SOURCE_FIELDS")  # builtin-ok: a bug


def _sources_json(sources: tuple[Source, ...]) -> str:
    return f"[{','.join([s.canonical() for s in sources])}]"


def _ids_json(ids: tuple[str, ...]) -> str:
    return f"[{','.join(map(_esc, ids))}]"


def _compiled(cls: str, table: tuple[FieldSpec, ...]) -> dict[str, Any]:
    """The serialization functions of ``cls`` compiled from its ``table``: plain, canonical, to_dict, quick (the
    from_dict fast path: the built record, or None to check field by field), stored, changed."""
    attr = [(f, f"self.{f.name}") for f in table]
    raw = [(f, f"_{k}") for k, f in enumerate(table)]

    def when(f: FieldSpec, v: str) -> str:
        return "True" if f.kind.always else v if f.kind.collection else f"{v} is not None"

    plain = " and ".join(f.kind.plain.format(v=v) for f, v in attr if f.kind.plain) or "True"
    canonical = ""
    run: list[str] = []  # consecutive fields that are always written: one f-string
    for f, v in [*sorted(attr, key=lambda fv: fv[0].name), (None, "")]:
        text = "" if f is None else f'"{f.name}":{{{f.kind.encode.format(v=v)}}}'
        if f is not None and f.kind.always:
            run.append(text)
            continue
        if run:
            canonical += f"    out.append(f{','.join(run)!r})\n"
            run = []
        if f is not None:
            canonical += f"    if {when(f, v)}: out.append(f{text!r})\n"
    dump = "".join(f"    if {when(f, v)}: d[{f.name!r}] = {f.kind.dump.format(v=v)}\n" for f, v in attr)
    read = "".join(f"    {v} = get({f.name!r}, {f.kind.missing})\n" for f, v in raw)
    quick_ok = " and ".join(f.kind.quick_ok.format(v=v) for f, v in raw if f.kind.quick_ok) or "True"
    counts = " and ".join(f"made.{f.name} >= 0" for f in table if f.kind is COUNT) or "True"
    src = (
        f"def plain(self):\n    return {plain}\n"
        f"def canonical(self):\n    out = []\n{canonical}    return '{{' + ','.join(out) + '}}'\n"
        f"def to_dict(self):\n    d = {{}}\n{dump}    return d\n"
        f"def quick(d):\n    get = d.get\n{read}    if not ({quick_ok}):\n        return None\n"
        f"    made = {cls}({', '.join(f.kind.quick.format(v=v) for f, v in raw)})\n"
        f"    return made if plain(made) and {counts} else None\n"
        f"def stored(d):\n    return {cls}({', '.join(f.kind.stored.format(n=repr(f.name)) for f in table)})\n"
        f"def changed(self, fields):\n    get = fields.get\n"
        f"    return {cls}({', '.join(f'get({f.name!r}, self.{f.name})' for f in table)})\n"
    )
    namespace: dict[str, Any] = {
        "Source": Source, "Bullet": Bullet, "NO_EXTRA": NO_EXTRA, "_esc": _esc, "_CANONICAL": _CANONICAL,
        "_sources_json": _sources_json, "_ids_json": _ids_json,
    }  # fmt: skip
    exec(compile(src, f"<{cls} from its field table>", "exec"), namespace)  # our own table's expressions, at import
    namespace["__source__"] = src  # what was compiled, to read
    return namespace


_SOURCE = _compiled("Source", SOURCE_FIELDS)
_source_plain: Callable[[Source], bool] = _SOURCE["plain"]
_source_canonical: Callable[[Source], str] = _SOURCE["canonical"]
_source_to_dict: Callable[[Source], dict[str, Any]] = _SOURCE["to_dict"]
_source_quick: Callable[[Mapping[str, Any]], Source | None] = _SOURCE["quick"]
_BULLET = _compiled("Bullet", BULLET_FIELDS)
_bullet_plain: Callable[[Bullet], bool] = _BULLET["plain"]
_bullet_canonical: Callable[[Bullet], str] = _BULLET["canonical"]
_bullet_to_dict: Callable[[Bullet], dict[str, Any]] = _BULLET["to_dict"]
_bullet_quick: Callable[[Mapping[str, Any]], Bullet | None] = _BULLET["quick"]
_bullet_stored: Callable[[Mapping[str, Any]], Bullet] = _BULLET["stored"]
_bullet_changed: Callable[[Bullet, Mapping[str, Any]], Bullet] = _BULLET["changed"]


class Section:
    """A named, ordered group of bullet ids; ``slug`` prefixes the ids of bullets added to it.

    The order is persistent: a map from slot number to id and one from id to slot (two HAMTs, shared with the
    section this one was made from). :meth:`appended` and :meth:`without` are O(log n) and never touch ``self``;
    ``ids`` (the order as a tuple) is built once per object, when something reads it. A removed id leaves a free
    slot; slots are renumbered when free ones outnumber the ids. (A persistent *vector* would iterate faster, but
    the garbage collector walks a whole vector each time a new one is young: O(n) per operation.)
    """

    __slots__ = ("_ids", "_joined", "_next", "_order", "_pos", "name", "slug")

    def __init__(self, name: str, slug: str, ids: Iterable[str] = ()) -> None:
        self.name = name
        self.slug = slug
        ids = tuple(ids)
        self._order: immutables.Map[int, str] = immutables.Map(enumerate(ids))
        self._pos: immutables.Map[str, int] = immutables.Map(zip(ids, range(len(ids)), strict=True))
        self._next = len(ids)
        self._ids: tuple[str, ...] | None = ids
        self._joined: str | None = None

    @classmethod
    def _make(
        cls,
        name: str,
        slug: str,
        order: immutables.Map[int, str],
        pos: immutables.Map[str, int],
        next_slot: int,
        joined: str | None = None,
    ) -> Section:
        sec = cls.__new__(cls)
        sec.name, sec.slug, sec._order, sec._pos, sec._next, sec._ids = name, slug, order, pos, next_slot, None
        sec._joined = joined
        return sec

    @property
    def ids(self) -> tuple[str, ...]:
        if self._ids is None:
            if self._joined is not None:  # one split in C beats a lookup per slot
                self._ids = tuple(self._joined.split(ORDER_SEP)) if self._joined else ()
            else:
                self._ids = tuple(filter(None, map(self._order.get, range(self._next))))
        return self._ids

    def joined(self) -> str:
        """The ids in order joined by :data:`ORDER_SEP` (what the order hash hashes). A section made by
        :meth:`appended` or :meth:`without` from one that had it gets it in one string operation (and takes it
        over: a chain of versions keeps one copy, not one per version)."""
        if self._joined is None:
            self._joined = ORDER_SEP.join(self.ids)
        return self._joined

    def _take_joined(self) -> str | None:
        joined, self._joined = self._joined, None
        return joined

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, bullet_id: object) -> bool:
        return bullet_id in self._pos

    def position(self, bullet_id: str) -> int:
        """A number that orders the ids of this section (not an index: removed ids leave gaps); KeyError if absent."""
        return self._pos[bullet_id]

    def appended(self, bullet_id: str) -> Section:
        """This section with ``bullet_id`` added at the end (it must not be in it)."""
        slot = self._next
        joined = self._take_joined()
        if joined is not None:
            joined = f"{joined}{ORDER_SEP}{bullet_id}" if joined else bullet_id
        return Section._make(
            self.name, self.slug, self._order.set(slot, bullet_id), self._pos.set(bullet_id, slot), slot + 1, joined
        )

    def without(self, bullet_id: str) -> Section:
        """This section with ``bullet_id`` taken out (KeyError if it is not in it)."""
        slot = self._pos[bullet_id]
        pos = self._pos.delete(bullet_id)
        free = self._next - len(pos)
        if free > 16 and free > len(pos):  # amortized O(1): a renumbering pays for the removals before it
            return Section(self.name, self.slug, [i for i in self.ids if i != bullet_id])
        joined = self._take_joined()
        if joined is not None:
            joined = without_id(joined, bullet_id)
        return Section._make(self.name, self.slug, self._order.delete(slot), pos, self._next, joined)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Section)
            and (self.name, self.slug) == (other.name, other.slug)
            and (self._pos is other._pos or self.ids == other.ids)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.slug, self.ids))

    def __repr__(self) -> str:
        return f"Section(name={self.name!r}, slug={self.slug!r}, ids=<{len(self)} ids>)"


def numeric_suffix(bullet_id: str) -> int | None:
    """The counter part of a paper-style id (`shr-00042` → 42), or None."""
    m = _NUMERIC_SUFFIX.search(bullet_id)
    return int(m.group(1)) if m else None


def derive_slug(name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """A short id prefix for a section: the paper's slug when known, else the initials of its words."""
    key = name.strip().rstrip(":").strip().upper()
    slug = KNOWN_SLUGS.get(key)
    if slug is None:
        words = [w for w in re.split(r"[^A-Za-z0-9]+", name.lower()) if w and w not in _STOPWORDS]
        if not words:
            slug = "sec"
        elif len(words) == 1:
            slug = words[0][:4]
        else:
            slug = "".join(w[0] for w in words[:4])
    base, n = slug, 2
    while slug in taken:
        slug, n = f"{base}{n}", n + 1
    return slug


class Playbook:
    """An immutable, ordered playbook: sections in order, each holding bullet ids in order.

    ``next_id`` is the one global counter new ids are drawn from (`[slug-NNNNN]`, as in the paper).
    Build one with :meth:`empty`, :meth:`from_sections` or a parser in :mod:`ace.playbook.formats`;
    change one with :func:`ace.playbook.apply`.
    """

    __slots__ = ("__weakref__", "_bullets", "_memo", "_next_id", "_parent", "_sections")

    def __init__(self, sections: Mapping[str, Section], bullets: Mapping[str, Bullet], next_id: int) -> None:
        self._sections: Mapping[str, Section] = sections
        self._bullets: immutables.Map[str, Bullet] = (
            bullets if isinstance(bullets, immutables.Map) else immutables.Map(bullets)
        )
        self._next_id = next_id
        self._memo: dict[Any, Any] = {}
        # (weak reference to the playbook this one was applied from, ids the delta put or removed): what lets a
        # consumer (the collapse detectors, a diff) update what it derived from the parent in O(delta)
        self._parent: tuple[weakref.ref[Playbook], frozenset[str]] | None = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, sections: list[str] | tuple[str, ...] = ()) -> Playbook:
        empty: list[tuple[str, list[Bullet]]] = [(name, []) for name in sections]
        return cls.from_sections(empty)

    @classmethod
    def from_sections(
        cls,
        sections: list[tuple[str, list[Bullet]]] | list[tuple[str, list[Bullet], str | None]],
        next_id: int | None = None,
    ) -> Playbook:
        """Build from ``(name, bullets[, slug])`` triples; validates ids and infers slugs and the counter."""
        secs: dict[str, Section] = {}
        bullets: dict[str, Bullet] = {}
        taken: set[str] = set()
        top = 0
        for entry in sections:
            name, items = entry[0], entry[1]
            slug = entry[2] if len(entry) > 2 else None
            if name in secs:
                raise PlaybookFormatError(f"section {name!r} appears twice")
            try:  # the rules a delta's ADD follows, so an import cannot bring in what a delta could not
                check_stored_text(name, limit=SECTION_MAX_CHARS, what="section name", single_line=True)
                for b in items:
                    check_stored_text(b.content, limit=IMPORT_MAX_CHARS, what=f"bullet {b.id}")
            except ValueError as e:
                raise PlaybookFormatError(str(e)) from None
            if slug is not None and not _SLUG_RE.fullmatch(slug):
                raise PlaybookFormatError(f"section {name!r}: invalid slug {slug!r}")
            ids = []
            for b in items:
                if not ID_RE.fullmatch(b.id):
                    raise PlaybookFormatError(f"invalid bullet id {b.id!r}")
                if b.id in bullets:
                    raise PlaybookFormatError(f"bullet id {b.id!r} appears twice")
                if b.section != name:
                    b = replace(b, section=name)
                bullets[b.id] = b
                ids.append(b.id)
                top = max(top, numeric_suffix(b.id) or 0)
            slug = slug or _dominant_prefix(ids, taken) or derive_slug(name, taken)
            taken.add(slug)
            secs[name] = Section(name, slug, tuple(ids))
        return cls(secs, bullets, max(next_id or 0, top + 1))

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def sections(self) -> Mapping[str, Section]:
        return MappingProxyType(self._sections)

    @property
    def bullets_by_id(self) -> Mapping[str, Bullet]:
        """The id map itself: it is immutable (a persistent map), so it is handed out as it is."""
        return self._bullets

    def __len__(self) -> int:
        return len(self._bullets)

    def __contains__(self, bullet_id: object) -> bool:
        return bullet_id in self._bullets

    def __iter__(self) -> Iterator[Bullet]:
        """Bullets in render order: section by section, each in its own order."""
        for sec in self._sections.values():
            for i in sec.ids:
                yield self._bullets[i]

    def __getitem__(self, bullet_id: str) -> Bullet:
        return self._bullets[bullet_id]

    def get(self, bullet_id: str) -> Bullet | None:
        return self._bullets.get(bullet_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Playbook) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        return f"Playbook({len(self._sections)} sections, {len(self._bullets)} bullets, next_id={self._next_id})"

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickled as its plain data (the parent link is a weak reference, and memos are derived)."""
        return (Playbook.from_dict, (self.to_dict(),))

    def touched_since(self, ancestor: Playbook, *, max_steps: int = 64) -> frozenset[str] | None:
        """The ids put or removed on the way from ``ancestor`` to this playbook when this one was made from it
        by ``apply`` (directly or through up to ``max_steps`` applies, while they are still in memory), else
        None: then only a full comparison tells. A superset: an id may have been put back as it was."""
        if ancestor is self:
            return frozenset()
        touched: set[str] = set()
        node: Playbook | None = self
        for _ in range(max_steps):
            link = node._parent if node is not None else None
            if link is None:
                return None
            touched |= link[1]
            node = link[0]()
            if node is ancestor:
                return frozenset(touched)
        return None

    # -- derived values ---------------------------------------------------------------------------------
    # A playbook is immutable, so whatever is computed from it (a render, the digest's parts, a detector's index)
    # can be kept on it. Keys are any hashable value; a module keeps its own keys apart by a prefix or a tuple
    # (``"collapse-stats"``, ``("render", counters)``). ``"order_hash"`` and ``"content_sum"`` are the digest's
    # parts: whoever sets them must set the values :meth:`order_hash` and :meth:`content_sum` would compute.
    def derived(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The value derived under ``key``, computed by ``compute()`` the first time and kept on this object."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    memo = derived  # the older name

    def has_derived(self, key: Any) -> bool:
        """Whether a value is kept under ``key`` (nothing is computed)."""
        return key in self._memo

    def peek_derived(self, key: Any, default: Any = None) -> Any:
        """The value kept under ``key``, or ``default`` when none is (nothing is computed)."""
        return self._memo.get(key, default)

    def set_derived(self, key: Any, value: Any, *, keep: bool = False) -> Any:
        """Keep ``value`` under ``key`` (a value carried from elsewhere, e.g. from the parent in O(delta)); with
        ``keep``, a value already kept stays. Returns the value now kept."""
        if keep:
            return self._memo.setdefault(key, value)
        self._memo[key] = value
        return value

    @property
    def lineage(self) -> tuple[Playbook, frozenset[str]] | None:
        """``(parent, touched)`` when this playbook was made from ``parent`` by ``apply`` and the parent is still
        in memory: ``touched`` holds the ids the delta put or removed (a superset of those that differ). What lets a
        consumer update what it derived from the parent in O(delta). None otherwise."""
        link = self._parent
        if link is None:
            return None
        parent = link[0]()
        return None if parent is None else (parent, link[1])

    def link_parent(self, parent: Playbook, touched: Iterable[str]) -> None:
        """Record that this playbook was made from ``parent`` by changing ``touched`` (what ``apply`` does for
        the playbook it returns). The link is weak: it does not keep the parent alive."""
        self._parent = (weakref.ref(parent), frozenset(touched))

    def digest(self) -> str:
        """Hex SHA-256 identifying the whole state (order, slugs, counters, every bullet field): the version hash.

        It hashes two parts, so that ``apply`` can carry both forward in O(delta) instead of rehashing every
        bullet: the *order hash* (section names, slugs and id sequences) and the *content sum*, the sum modulo
        2**256 of every bullet's own SHA-256 (an additive multiset hash). It identifies versions; it is not meant
        as a commitment against an adversary who can choose thousands of bullets.
        """
        return self.memo(  # type: ignore[no-any-return]
            "digest", lambda: digest_of(self._next_id, self.order_hash(), self.content_sum())
        )

    def order_hash(self) -> bytes:
        return self.memo(  # type: ignore[no-any-return]
            "order_hash",
            lambda: order_hash_of((s.name, s.slug, s.joined()) for s in self._sections.values()),
        )

    def content_sum(self) -> int:
        def compute() -> int:
            by_id = self._bullets
            # the attribute read skips a method call per bullet whose digest is already cached
            digests = [b._digest or b.digest() for b in by_id.values()]
            return sum(int.from_bytes(d, "big") for d in digests) % CONTENT_MOD

        return self.memo("content_sum", compute)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        """Counts a curator prompt or a CLI table shows."""
        return {
            "sections": len(self._sections),
            "bullets": len(self._bullets),
            "helpful": sum(b.helpful for b in self._bullets.values()),
            "harmful": sum(b.harmful for b in self._bullets.values()),
            "untagged": sum(1 for b in self._bullets.values() if b.helpful == b.harmful == b.neutral == 0),
        }

    # -- plain-data form (JSON snapshots) -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "ace.playbook/v1",
            "next_id": self._next_id,
            "sections": [
                {"name": s.name, "slug": s.slug, "bullets": [_bullet_row(self._bullets[i]) for i in s.ids]}
                for s in self._sections.values()
            ],
        }

    @classmethod
    @builds_in_bulk
    def from_dict(cls, data: Mapping[str, Any]) -> Playbook:
        secs: dict[str, Section] = {}
        bullets: dict[str, Bullet] = {}
        for s in data["sections"]:
            name = s["name"]
            ids = []
            for row in s["bullets"]:
                b = Bullet.from_dict({**row, "section": name})
                bullets[b.id] = b
                ids.append(b.id)
            secs[name] = Section(name, s["slug"], tuple(ids))
        return cls(secs, bullets, data["next_id"])


def without_id(joined: str, bullet_id: str) -> str | None:
    """``joined`` (ids joined by ORDER_SEP) without ``bullet_id``, or None if it is not there: one search in C."""
    padded = f"{ORDER_SEP}{joined}{ORDER_SEP}"
    at = padded.find(f"{ORDER_SEP}{bullet_id}{ORDER_SEP}")
    if at < 0:
        return None
    return (padded[:at] + padded[at + len(bullet_id) + 1 :])[1:-1]


def digest_of(next_id: int, order_hash: bytes, content_sum: int) -> str:
    """:meth:`Playbook.digest` from its parts, for a writer that keeps them without the whole playbook."""
    return hashlib.sha256(b"ace.playbook/v2\0%d\0" % next_id + order_hash + content_sum.to_bytes(32, "big")).hexdigest()


def order_hash_of(sections: Iterable[tuple[str, str, str]]) -> bytes:
    """:meth:`Playbook.order_hash` from ``(name, slug, ids joined by ORDER_SEP)`` per section, in order."""
    h = hashlib.sha256()
    for name, slug, ids in sections:
        h.update(f"\x1e{name}\x1f{slug}\x1f".encode())
        h.update(ids.encode())
    return h.digest()


def _bullet_row(b: Bullet) -> dict[str, Any]:
    d = b.to_dict()
    del d["section"]  # implied by the enclosing section
    return d


def _dominant_prefix(ids: list[str], taken: set[str]) -> str | None:
    """The id prefix most bullets of an imported section share (`shr` for `shr-00001`), if free."""
    counts: dict[str, int] = {}
    for i in ids:
        if numeric_suffix(i) is not None:
            p = i.rsplit("-", 1)[0]
            counts[p] = counts.get(p, 0) + 1
    if not counts:
        return None
    best = max(counts, key=lambda p: (counts[p], p))
    return None if best in taken else best


def _typed(d: Mapping[str, Any], key: str, kind: type) -> Any:
    """``d[key]`` if it is of ``kind`` (an int is not a bool) or absent/None; else ValueError naming it."""
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"field {key!r} must be {kind.__name__}, not {type(value).__name__} ({value!r:.40})")
    return value


def _required(d: Mapping[str, Any], key: str, kind: type) -> Any:
    if d.get(key) is None:
        raise InvalidInput(f"field {key!r} is missing")
    return _typed(d, key, kind)


def _count(d: Mapping[str, Any], key: str) -> int:
    value = _typed(d, key, int) or 0
    if value < 0:
        raise InvalidInput(f"field {key!r} must not be negative, got {value}")
    return int(value)
