"""Deltas: the small, validated changes a curator emits, and :func:`apply`, which makes them atomic.

Wire format (what a curator LLM returns)::

    {"reasoning": "...",
     "operations": [{"type": "ADD", "section": S, "content": C},
                    {"type": "UPDATE", "id": I, "content": C},
                    {"type": "TAG", "id": I, "tag": "helpful" | "harmful" | "neutral"},
                    {"type": "REMOVE", "id": I},
                    {"type": "MERGE", "ids": [I, ...], "content": C}]}

``apply`` returns a new playbook and the *resolved* delta (ADD ops carry the id they were given, MERGE ops the
surviving id), which is what a store logs so that replaying the log is exact. If any operation is invalid,
``apply`` raises :class:`DeltaError` naming the operation and the reason, and the input playbook is untouched
(it is immutable; the new one is discarded).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ace.errors import InvalidInput
from ace.playbook.errors import DeltaError
from ace.playbook.jsonio import MAX_DEPTH, JSONLimitError, load_json
from ace.playbook.model import CONTENT_MOD, ID_RE, Bullet, Playbook, Section, Source, derive_slug, numeric_suffix
from ace.playbook.quality import QualityRules, content_problem, section_problem
from ace.playbook.text import IMPORT_MAX_CHARS, clean_text

Tag = Literal["helpful", "harmful", "neutral"]


class _Op(BaseModel):
    # Curators often add fields of their own (a rationale, a confidence): ignore them rather than fail the step.
    model_config = ConfigDict(extra="ignore", frozen=True)
    reason: str | None = Field(default=None, description="Why the curator proposes this operation.")
    # Provenance of this operation when it differs from the delta's (a batch of merged deltas keeps each one's).
    source: Source | None = None


class AddOp(_Op):
    type: Literal["ADD"] = "ADD"
    section: str
    content: str
    id: str | None = Field(default=None, description="Assigned by apply(); set only when replaying a log.")


class UpdateOp(_Op):
    type: Literal["UPDATE"] = "UPDATE"
    id: str
    content: str


class TagOp(_Op):
    type: Literal["TAG"] = "TAG"
    id: str
    tag: Tag

    @field_validator("tag", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class RemoveOp(_Op):
    type: Literal["REMOVE"] = "REMOVE"
    id: str


class MergeOp(_Op):
    type: Literal["MERGE"] = "MERGE"
    ids: list[str] = Field(min_length=2)
    content: str
    id: str | None = Field(default=None, description="The surviving id; the first of `ids` unless given.")


_TYPES = frozenset({"ADD", "UPDATE", "TAG", "REMOVE", "MERGE"})  # already as the discriminator wants them
Operation = Annotated[AddOp | UpdateOp | TagOp | RemoveOp | MergeOp, Field(discriminator="type")]


class Delta(BaseModel):
    """An ordered list of operations, applied all or nothing, with the provenance of whoever proposed it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    operations: list[Operation] = Field(default_factory=list)
    reasoning: str | None = None
    source: Source | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalize_types(cls, data: Any, info: ValidationInfo) -> Any:
        scanned = (info.context or {}).get("surrogate")  # parse() scanned the input already
        if scanned if scanned is not None else _has_surrogate(data):  # e.g. "\\udea6" in JSON: not text
            raise ValueError("the delta holds an unpaired surrogate (U+D800..U+DFFF), which is not text")
        # LLMs write "add" or "Add" as often as "ADD".
        if isinstance(data, dict) and isinstance(data.get("operations"), list):
            ops = [
                {**op, "type": op["type"].strip().upper()}
                if isinstance(op, dict) and isinstance(op.get("type"), str) and op["type"] not in _TYPES
                else op
                for op in data["operations"]
            ]
            if any(new is not old for new, old in zip(ops, data["operations"], strict=True)):
                data = {**data, "operations": ops}
        return data

    @classmethod
    def parse(cls, data: str | bytes | dict[str, Any]) -> Delta:
        """Validate curator output (JSON text or a dict); raises :class:`DeltaError` naming the bad operation."""
        try:
            data = load_json(data, what="the delta") if isinstance(data, (str, bytes)) else data
        except JSONLimitError as e:
            raise DeltaError(str(e)) from None
        deepest, surrogate = _scan(data)  # one walk for both checks
        if deepest > MAX_DEPTH:
            raise DeltaError(f"the delta is nested deeper than {MAX_DEPTH} levels")
        if not isinstance(data, dict):
            raise DeltaError(f"expected a JSON object with an 'operations' list, got {type(data).__name__}")
        try:
            return cls.model_validate(data, context={"surrogate": surrogate})
        except ValidationError as e:
            raise _delta_error_from(e) from None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def ids_touched(self) -> list[tuple[str, str]]:
        """``(bullet id, op type)`` for every bullet a *resolved* delta touched, in order."""
        out: list[tuple[str, str]] = []
        for op in self.operations:
            if isinstance(op, MergeOp):
                out.extend((i, "MERGE") for i in op.ids)
            elif op.id is not None:
                out.append((op.id, op.type))
        return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scan(value: Any) -> tuple[int, bool]:
    """How deeply lists and objects nest in ``value`` (counting no further than ``MAX_DEPTH + 1``) and whether a
    string in it holds a lone surrogate, in one walk (strings are checked where they are met, not pushed)."""
    if isinstance(value, str):
        return 0, not value.isascii() and _SURROGATE.search(value) is not None
    if not isinstance(value, dict | list | tuple):
        return 0, False
    deepest, surrogate, stack = 0, False, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > MAX_DEPTH:
                return deepest, surrogate
        if isinstance(item, dict):
            if not surrogate:
                for k in item:
                    if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k):
                        surrogate = True
                        break
            children: Any = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, str):
                if not surrogate and not child.isascii() and _SURROGATE.search(child):
                    surrogate = True
            elif isinstance(child, dict | list | tuple):
                stack.append((child, d + 1))
    return deepest, surrogate


def _has_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (nested no deeper than the JSON limit) holds a lone surrogate."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif depth <= MAX_DEPTH:
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            elif isinstance(item, list | tuple):
                stack.extend((v, depth + 1) for v in item)
    return False


def _delta_error_from(e: ValidationError) -> DeltaError:
    err = e.errors()[0]
    loc = list(err["loc"])
    if len(loc) >= 2 and loc[0] == "operations" and isinstance(loc[1], int):
        # loc is ("operations", i, <discriminator tag>, field...) for a tagged union member.
        index = loc[1]
        rest = [str(x) for x in loc[2:] if x not in ("ADD", "UPDATE", "TAG", "REMOVE", "MERGE")]
        field = f"field '{'.'.join(rest)}': " if rest else ""
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            msg = "unknown operation type; expected one of ADD, UPDATE, TAG, REMOVE, MERGE"
        elif err["type"] == "union_tag_not_found":
            msg = "missing 'type'; expected one of ADD, UPDATE, TAG, REMOVE, MERGE"
        return DeltaError(f"{field}{msg}", op_index=index)
    where = ".".join(str(x) for x in loc)
    return DeltaError(f"{where + ': ' if where else ''}{err['msg']}")


@dataclass(frozen=True, slots=True)
class ApplyPolicy:
    """Limits ``apply`` enforces. ``new_sections``: what an ADD to an unknown section does ("create" or "reject").
    ``quality``: the rules a delta's text must meet (:mod:`ace.playbook.quality`); None switches them off."""

    max_content_chars: int = 4000
    max_section_chars: int = 200
    max_bullets: int | None = None
    new_sections: Literal["create", "reject"] = "create"
    quality: QualityRules | None = field(default_factory=QualityRules)

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in ("max_content_chars", "max_section_chars", "max_bullets", "new_sections")}
        d["quality"] = None if self.quality is None else self.quality.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApplyPolicy:
        quality = d.get("quality")
        return cls(**{**d, "quality": None if quality is None else QualityRules(**quality)})


DEFAULT_POLICY = ApplyPolicy()
# What a log of deltas that were validated when committed is replayed with: limits may have tightened since, and a
# replay must not re-judge history.
REPLAY_POLICY = ApplyPolicy(max_content_chars=IMPORT_MAX_CHARS, max_section_chars=IMPORT_MAX_CHARS, quality=None)


@dataclass(slots=True)  # not frozen (one is made per apply, and a frozen one costs a setattr call per field)
class Patch:
    """What a delta changed, in the terms a store keeps a materialized head in: the bullets it put or removed,
    the order events of the sections, the sections it created, and the new counters.

    ``before`` maps every id the delta put or removed to its bullet before (None: it is new); ``after`` looks up
    the bullets after (``after.get(i)`` is None for a removed id). ``order`` lists ``("+", section, id)`` (appended
    at the end) and ``("-", section, id)`` (taken out) in the order they happened. Read-only by convention.
    """

    before: Mapping[str, Bullet | None]
    after: Mapping[str, Bullet]
    order: Sequence[tuple[str, str, str]]
    new_sections: Sequence[tuple[str, str]]
    next_id: int
    n_bullets: int

    def content_sum(self, base: int) -> int:
        """The content sum after the delta (see :meth:`Playbook.digest`) from ``base``, the one before."""
        total = base
        for i, old in self.before.items():
            if old is not None:
                total -= int.from_bytes(old.digest(), "big")
            cur = self.after.get(i)
            if cur is not None:
                total += int.from_bytes(cur.digest(), "big")
        return total % CONTENT_MOD

    @property
    def order_changed(self) -> bool:
        return bool(self.order or self.new_sections)


@dataclass(frozen=True, slots=True)
class Applied:
    """Result of :func:`apply`: the new playbook, the resolved delta that produced it, and what it changed
    (``patch``; None for a result put together from several applies)."""

    playbook: Playbook
    delta: Delta
    patch: Patch | None = None


@dataclass(frozen=True, slots=True)
class HeadView:
    """A playbook a writer holds only in part (a store's materialized head): the sections (name -> slug, in
    order), the counters, and ``fetch``, which returns the bullets among the ids asked for (absent ids are not
    in the playbook). :func:`apply_to_head` asks only for the ids a delta names."""

    sections: Mapping[str, str]
    next_id: int
    n_bullets: int
    fetch: Callable[[Sequence[str]], Mapping[str, Bullet]]


class _Draft:
    """Working state inside one ``apply``; discarded on error.

    The id map is a mutation of the parent's persistent map and each touched section a new persistent order, so
    one operation costs O(log n) and the parent is never touched. The operations below see a draft only through
    ``get`` / ``exists`` / ``count`` / the section methods / ``put`` / ``append`` / ``remove``, which
    :class:`_HeadDraft` provides too: one set of rules for a whole playbook and for a materialized head.
    """

    def __init__(self, pb: Playbook) -> None:
        self.parent = pb
        self._own_sections = False  # the parent's section map until an operation changes a section
        self.sections: dict[str, Section] = pb._sections  # type: ignore[assignment]
        self.bullets = pb.bullets_by_id.mutate()  # type: ignore[attr-defined]
        self.next_id = pb.next_id
        self.touched: dict[str, Bullet | None] = {}  # id -> the parent's bullet (None: new), for the content sum
        self.order: list[tuple[str, str, str]] = []
        self.new_sections: list[tuple[str, str]] = []

    def get(self, bullet_id: str) -> Bullet | None:
        return self.bullets.get(bullet_id)  # type: ignore[no-any-return]

    def exists(self, bullet_id: str) -> bool:
        return bullet_id in self.bullets

    def count(self) -> int:
        return len(self.bullets)

    def has_section(self, name: str) -> bool:
        return name in self.sections

    def section_names(self) -> list[str]:
        return list(self.sections)

    def slug(self, name: str) -> str:
        return self.sections[name].slug

    def _set_section(self, name: str, section: Section) -> None:
        if not self._own_sections:
            self.sections, self._own_sections = dict(self.sections), True
        self.sections[name] = section

    def add_section(self, name: str) -> None:
        slug = derive_slug(name, {s.slug for s in self.sections.values()})
        self._set_section(name, Section(name, slug))
        self.new_sections.append((name, slug))

    def put(self, b: Bullet) -> None:
        if b.id not in self.touched:
            self.touched[b.id] = self.parent.get(b.id)
        self.bullets[b.id] = b

    def append(self, name: str, bullet_id: str) -> None:
        self._set_section(name, self.sections[name].appended(bullet_id))
        self.order.append(("+", name, bullet_id))

    def remove(self, bullet_id: str) -> None:
        if bullet_id not in self.touched:
            self.touched[bullet_id] = self.parent.get(bullet_id)
        b = self.bullets.pop(bullet_id)
        self._set_section(b.section, self.sections[b.section].without(bullet_id))
        self.order.append(("-", b.section, bullet_id))

    def finish(self) -> tuple[Playbook, Patch]:
        new = Playbook(self.sections, self.bullets.finish(), self.next_id)
        new.link_parent(self.parent, self.touched)
        patch = Patch(self.touched, new.bullets_by_id, self.order, self.new_sections, self.next_id, len(new))
        # the digest's parts, carried from the parent's in O(delta) when it has them
        parent = self.parent
        if parent.has_derived("content_sum"):
            new.set_derived("content_sum", patch.content_sum(parent.peek_derived("content_sum")))
        if not patch.order_changed and parent.has_derived("order_hash"):
            new.set_derived("order_hash", parent.peek_derived("order_hash"))
        return new, patch


class _HeadDraft:
    """The draft of :func:`apply_to_head`: the bullets a delta names, fetched from a :class:`HeadView`, and what
    the operations did to them; nothing else of the playbook is read."""

    def __init__(self, head: HeadView, names: Sequence[str]) -> None:
        self.head = head
        self.sections: dict[str, str] = dict(head.sections)
        self.next_id = head.next_id
        self.n = head.n_bullets
        self.base: dict[str, Bullet | None] = {i: None for i in names}
        self.base.update(head.fetch(names) if names else {})
        self.bullets: dict[str, Bullet] = {i: b for i, b in self.base.items() if b is not None}
        self.touched: dict[str, Bullet | None] = {}
        self.order: list[tuple[str, str, str]] = []
        self.new_sections: list[tuple[str, str]] = []

    def _load(self, bullet_id: str) -> Bullet | None:
        if bullet_id not in self.base:  # an id the delta did not name (a generated one): ask the head
            found = self.head.fetch([bullet_id]).get(bullet_id)
            self.base[bullet_id] = found
            if found is not None:
                self.bullets[bullet_id] = found
        return self.bullets.get(bullet_id)

    def get(self, bullet_id: str) -> Bullet | None:
        return self.bullets.get(bullet_id) if bullet_id in self.base else self._load(bullet_id)

    def exists(self, bullet_id: str) -> bool:
        return self.get(bullet_id) is not None

    def count(self) -> int:
        return self.n

    def has_section(self, name: str) -> bool:
        return name in self.sections

    def section_names(self) -> list[str]:
        return list(self.sections)

    def slug(self, name: str) -> str:
        return self.sections[name]

    def add_section(self, name: str) -> None:
        slug = derive_slug(name, set(self.sections.values()))
        self.sections[name] = slug
        self.new_sections.append((name, slug))

    def put(self, b: Bullet) -> None:
        if b.id not in self.touched:
            self.touched[b.id] = self.base.get(b.id)
        if self.get(b.id) is None:
            self.n += 1
        self.bullets[b.id] = b

    def append(self, name: str, bullet_id: str) -> None:
        self.order.append(("+", name, bullet_id))

    def remove(self, bullet_id: str) -> None:
        if bullet_id not in self.touched:
            self.touched[bullet_id] = self.base.get(bullet_id)
        b = self.bullets.pop(bullet_id)
        self.n -= 1
        self.order.append(("-", b.section, bullet_id))

    def finish(self) -> Patch:
        return Patch(self.touched, self.bullets, self.order, self.new_sections, self.next_id, self.n)


def named_ids(delta: Delta) -> list[str]:
    """Every bullet id ``delta`` names (what :func:`apply_to_head` fetches), without repeats."""
    out: dict[str, None] = {}
    for op in delta.operations:
        if isinstance(op, MergeOp):
            out.update(dict.fromkeys(op.ids))
        if op.id is not None:
            out[op.id] = None
    return list(out)


def apply(playbook: Playbook, delta: Delta, *, policy: ApplyPolicy = DEFAULT_POLICY) -> Applied:
    """Apply every operation of ``delta`` in order, or none of them.

    Raises :class:`DeltaError` (naming the operation index, type and reason) on an unknown id, empty or
    oversize content, a section the policy rejects, or a malformed operation. Operations see the effects of
    the ones before them (an UPDATE of a bullet an earlier op removed is an unknown id).
    """
    draft = _Draft(playbook)
    resolved = _apply_all(draft, delta, policy)
    new, patch = draft.finish()
    return Applied(new, resolved, patch)


def apply_to_head(head: HeadView, delta: Delta, *, policy: ApplyPolicy = DEFAULT_POLICY) -> tuple[Patch, Delta]:
    """:func:`apply` for a playbook held only in part: the same operations and checks, reading only the bullets
    the delta names. Returns what changed and the resolved delta; raises :class:`DeltaError` as ``apply`` does."""
    draft = _HeadDraft(head, named_ids(delta))
    resolved = _apply_all(draft, delta, policy)
    return draft.finish(), resolved


def _apply_all(draft: _Draft | _HeadDraft, delta: Delta, policy: ApplyPolicy) -> Delta:
    resolved: list[Any] = []
    for index, op in enumerate(delta.operations):
        source = op.source or delta.source
        step = source.step if source else None
        src = (source,) if source else ()
        try:
            resolved.append(_apply_op(draft, op, step, src, policy))
        except ValueError as e:
            raise DeltaError(str(e), op_index=index, op_type=op.type) from None
    # a delta whose operations were already resolved (no ADD or MERGE given its id here) is its own resolution
    same = len(resolved) == len(delta.operations) and all(map(operator.is_, resolved, delta.operations))
    return delta if same else _copy_with(delta, operations=resolved)


_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__


def _copy_with(model: _M, **update: Any) -> _M:
    """``model.model_copy(update=update)`` for this module's models (extra fields ignored, no private attributes),
    without the generic ``copy.copy`` calls pydantic makes (1.0 µs instead of 1.5; an ADD's apply makes two). Like
    ``model_copy``, the update is not validated: callers pass values of the fields' types."""
    new = model.__class__.__new__(model.__class__)
    _set(new, "__dict__", {**model.__dict__, **update})
    _set(new, "__pydantic_fields_set__", model.__pydantic_fields_set__ | update.keys())
    _set(new, "__pydantic_extra__", model.__pydantic_extra__)
    _set(new, "__pydantic_private__", None)
    return new


def _require(d: _Draft | _HeadDraft, bullet_id: str) -> Bullet:
    b = d.get(bullet_id)
    if b is None:
        raise InvalidInput(f"unknown bullet id {bullet_id!r}")
    return b


def _apply_op(d: _Draft | _HeadDraft, op: Any, step: int | None, src: tuple[Source, ...], policy: ApplyPolicy) -> Any:
    if isinstance(op, TagOp):
        b = _require(d, op.id)
        counter = op.tag
        d.put(b.changed(**{counter: getattr(b, counter) + 1}, updated_step=_later(b.updated_step, step)))
        return op
    if isinstance(op, AddOp):
        return _add(d, op, step, src, policy)
    if isinstance(op, UpdateOp):
        b = _require(d, op.id)
        content = _judged(clean_text(op.content, limit=policy.max_content_chars), policy)
        d.put(b.changed(content=content, updated_step=_later(b.updated_step, step), sources=b.sources + src))
        return op
    if isinstance(op, RemoveOp):
        _require(d, op.id)
        d.remove(op.id)
        return op
    if isinstance(op, MergeOp):
        return _merge(d, op, step, src, policy)
    raise InvalidInput(f"unsupported operation {op!r}")  # pragma: no cover - the union is closed


def _add(d: _Draft | _HeadDraft, op: AddOp, step: int | None, src: tuple[Source, ...], policy: ApplyPolicy) -> AddOp:
    name = clean_text(op.section, limit=policy.max_section_chars, what="section", single_line=True)
    content = clean_text(op.content, limit=policy.max_content_chars)
    if policy.max_bullets is not None and d.count() >= policy.max_bullets:
        raise InvalidInput(f"the playbook holds its maximum of {policy.max_bullets} bullets; remove or merge first")
    if not d.has_section(name):
        if policy.new_sections == "reject":
            known = ", ".join(repr(s) for s in d.section_names()) or "none"
            raise InvalidInput(f"unknown section {name!r} (policy rejects new sections; known: {known})")
        if policy.quality is not None and (why := section_problem(name, policy.quality)):
            raise InvalidInput(why)
        d.add_section(name)
    slug = d.slug(name)
    if op.id is None:
        new_id = f"{slug}-{d.next_id:05d}"
        while d.exists(new_id):  # a foreign id from an import can sit on the counter; skip past it
            d.next_id += 1
            new_id = f"{slug}-{d.next_id:05d}"
        d.next_id += 1
    else:
        new_id = op.id
        if not ID_RE.fullmatch(new_id):
            raise InvalidInput(f"invalid bullet id {new_id!r}")
        if d.exists(new_id):
            raise InvalidInput(f"bullet id {new_id!r} already exists")
        d.next_id = max(d.next_id, (numeric_suffix(new_id) or 0) + 1)
    _judged(content, policy)
    d.put(Bullet(new_id, name, content, created_step=step, updated_step=step, sources=src))
    d.append(name, new_id)
    return _copy_with(op, id=new_id, section=name)


def _merge(
    d: _Draft | _HeadDraft, op: MergeOp, step: int | None, src: tuple[Source, ...], policy: ApplyPolicy
) -> MergeOp:
    if len(set(op.ids)) != len(op.ids):
        raise InvalidInput("MERGE lists the same id twice")
    parts = [_require(d, i) for i in op.ids]
    survivor_id = op.id or op.ids[0]
    if survivor_id not in op.ids:
        raise InvalidInput(f"surviving id {survivor_id!r} is not among the merged ids")
    content = _judged(clean_text(op.content, limit=policy.max_content_chars), policy)
    survivor = _require(d, survivor_id)
    sources: list[Source] = []
    merged_from: list[str] = list(survivor.merged_from)
    for b in parts:
        sources.extend(s for s in b.sources if s not in sources)
        if b.id != survivor_id:
            merged_from.extend([b.id, *b.merged_from])
    created = [b.created_step for b in parts if b.created_step is not None]
    merged = replace(
        survivor,
        content=content,
        helpful=sum(b.helpful for b in parts),
        harmful=sum(b.harmful for b in parts),
        neutral=sum(b.neutral for b in parts),
        created_step=min(created) if created else None,
        updated_step=_later(survivor.updated_step, step),
        sources=tuple(sources) + tuple(s for s in src if s not in sources),
        merged_from=tuple(merged_from),
    )
    for b in parts:
        if b.id != survivor_id:
            d.remove(b.id)
    d.put(merged)
    return _copy_with(op, id=survivor_id)


def _judged(content: str, policy: ApplyPolicy) -> str:
    """``content`` if the policy's quality rules let it in (checked after the operation's own errors)."""
    if policy.quality is not None and (why := content_problem(content, policy.quality)):
        raise InvalidInput(why)
    return content


def _later(current: int | None, step: int | None) -> int | None:
    return step if step is not None else current


@dataclass(frozen=True)
class Merged:
    """Deltas proposed against one version, merged into one: the accepted ones' operations in order, each stamped
    with its own delta's provenance, and ``(index, reason)`` for each delta dropped because it no longer applied."""

    delta: Delta
    rejected: list[tuple[int, str]]


def merge_deltas(
    playbook: Playbook, deltas: Sequence[Delta], *, policy: ApplyPolicy = DEFAULT_POLICY, reasoning: str | None = None
) -> Merged:
    """Merge a batch of deltas (all proposed against ``playbook``) into one delta that applies to it.

    Each delta is kept whole or dropped whole: it is applied after the accepted ones before it, and dropped with
    the reason if that fails (e.g. it updates a bullet an earlier delta of the batch removed).
    """
    current = playbook
    ops: list[Any] = []
    rejected: list[tuple[int, str]] = []
    for index, delta in enumerate(deltas):
        stamped = [
            op if op.source or not delta.source else op.model_copy(update={"source": delta.source})
            for op in delta.operations
        ]
        try:
            current = apply(current, Delta(operations=stamped), policy=policy).playbook
        except DeltaError as e:
            rejected.append((index, str(e)))
            continue
        ops.extend(stamped)
    reasons = [d.reasoning for d in deltas if d.reasoning]
    text = reasoning if reasoning is not None else " | ".join(reasons) or None
    return Merged(Delta(operations=ops, reasoning=text), rejected)
