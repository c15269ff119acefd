"""The roles' typed outputs, and their variants constrained to one playbook's ids.

The curator's operations *are* the delta's operation classes (:mod:`ace.playbook.delta`, subclassed) with
the fields only ``apply`` fills in (assigned ids, provenance, a reason) hidden from the schema the model sees, so
a proposal becomes a :class:`~ace.playbook.Delta` without being parsed again; TAG is not offered (counters
change only through :func:`~ace.loop.roles.calls.tag_delta`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model
from pydantic.json_schema import SkipJsonSchema

from ace.playbook import AddOp, Delta, MergeOp, Operation, RemoveOp, Source, UpdateOp
from ace.playbook.focus import fact


class GeneratorOutput(BaseModel):
    reasoning: str
    bullet_ids: list[str]
    final_answer: str


class BulletTag(BaseModel):
    id: str
    tag: Literal["helpful", "harmful", "neutral"]


class Reflection(BaseModel):
    reasoning: str
    error_identification: str
    root_cause_analysis: str
    correct_approach: str
    key_insight: str
    bullet_tags: list[BulletTag]

    @property
    def lessons(self) -> str:
        """The key insight and the correct approach: what a retry is told and what memory keeps."""
        return " ".join(x for x in (self.key_insight, self.correct_approach) if x).strip()


# Fields that apply() fills in (an assigned id, provenance, a reason): not part of what the curator is asked for.
_Hidden = SkipJsonSchema[str | None]
_HiddenSource = SkipJsonSchema[Source | None]


class FactReflection(BaseModel):
    """The copy-friendly reflection (``curation = "facts"``): the tags on cited bullets and the fact the outcome
    revealed, as two fields the reflector *copies*: ``value`` (a span of the expected answer or the feedback) and
    ``subject`` (a clause of the feedback that states a rule, or else the question; offered free spans of the
    question, the local model chose short ones that dropped the words telling facts apart). The bullet text is
    assembled by code (:func:`ace.playbook.focus.fact`). A small model cannot write a good sentence, but it can
    choose what it was shown."""

    reasoning: SkipJsonSchema[str] = ""
    subject: str = ""  # a clause of the feedback stating the rule, or the question ("": nothing learned)
    value: str  # copied from the feedback ("" when nothing new was learned)
    bullet_tags: list[BulletTag]

    @property
    def fact(self) -> str:
        """The lesson as bullet text ("" when there is none)."""
        subject, value = self.subject.strip(), self.value.strip()
        if not subject or not value:
            return ""
        if subject.endswith(value):  # a rule clause that ends with the value: state it once, after the arrow
            subject = subject[: -len(value)].strip()
        return fact(subject, value) if subject else ""

    @property
    def lessons(self) -> str:
        return self.fact


class FactCuration(BaseModel):
    """The copy-friendly curator's choice (``curation = "facts"``): add the lesson as a new bullet, let it replace
    one of the similar bullets shown (``"UPDATE <id>"``), or change nothing. Code turns it into ADD / UPDATE."""

    reasoning: SkipJsonSchema[str] = ""
    action: str


class CuratorAdd(AddOp):
    type: Literal["ADD"]
    reason: _Hidden = None
    source: _HiddenSource = None
    id: _Hidden = None


class CuratorUpdate(UpdateOp):
    type: Literal["UPDATE"]
    reason: _Hidden = None
    source: _HiddenSource = None


class CuratorRemove(RemoveOp):
    type: Literal["REMOVE"]
    reason: _Hidden = None
    source: _HiddenSource = None


class CuratorMerge(MergeOp):
    type: Literal["MERGE"]
    reason: _Hidden = None
    source: _HiddenSource = None
    id: _Hidden = None


CuratorOp = CuratorAdd | CuratorUpdate | CuratorRemove | CuratorMerge
_BASE_OPS: dict[str, type[Operation]] = {"ADD": AddOp, "UPDATE": UpdateOp, "REMOVE": RemoveOp, "MERGE": MergeOp}


class CuratorOutput(BaseModel):
    """The curator's proposal: delta operations (ADD, UPDATE, REMOVE, MERGE) and why."""

    reasoning: str
    operations: list[Annotated[CuratorOp, Field(discriminator="type")]]

    def to_delta(self, source: Source | None = None) -> Delta:
        # the same operations, as the delta's own classes (a checkpoint must be able to import them by name)
        ops: list[Operation] = [_BASE_OPS[op.type].model_construct(**dict(op)) for op in self.operations]
        return Delta(operations=ops, reasoning=self.reasoning, source=source)


# -- outputs constrained to the playbook's ids ------------------------------------------------------------------------
# Up to this many ids, a role's schema lists the valid ids as an enum: grammar-constrained models then cannot emit
# an unknown id, and API models get a validation error naming the valid ones (shown to them on repair).
MAX_ENUM_IDS = 300


def _id_type(ids: tuple[str, ...]) -> Any:
    return Literal[ids] if 0 < len(ids) <= MAX_ENUM_IDS else str


@lru_cache(maxsize=64)
def generator_output(ids: tuple[str, ...]) -> type[GeneratorOutput]:
    id_list: Any = list[_id_type(ids)]  # type: ignore[misc]
    return create_model("GeneratorOutput", __base__=GeneratorOutput, bullet_ids=(id_list, ...))


@lru_cache(maxsize=256)
def copy_generator_output(answers: tuple[str, ...]) -> type[GeneratorOutput]:
    """The generator's output when answers are copied (``answers = "copy"``): only the answer, chosen among
    ``answers``; the citation is filled in by code (the focused bullets that state the chosen value), which saves
    the local model decoding a list of ids under a grammar (about 0.3 s a token with Gemma's 262k vocabulary)."""
    answer_t: Any = Literal[answers]
    return create_model(
        "GeneratorOutput",
        __base__=GeneratorOutput,
        reasoning=(SkipJsonSchema[str], ""),
        bullet_ids=(SkipJsonSchema[list[str]], Field(default_factory=list)),
        final_answer=(answer_t, ...),
    )


@lru_cache(maxsize=256)
def fact_reflection(
    cited_ids: tuple[str, ...], subjects: tuple[str, ...], values: tuple[str, ...]
) -> type[FactReflection]:
    """A :class:`FactReflection` whose subject and value must be one of the given options ("" when there are
    none: then nothing can be learned, e.g. the answer was right)."""
    subject: Any = Literal[subjects] if subjects and values else Literal[""]
    value: Any = Literal[values] if subjects and values else Literal[""]
    if cited_ids:
        tag: Any = create_model("BulletTag", __base__=BulletTag, id=(_id_type(cited_ids), ...))
        tags: Any = (list[tag], ...)
    else:
        tags = (list[BulletTag], Field(max_length=0))
    return create_model(
        "FactReflection", __base__=FactReflection, subject=(subject, ...), value=(value, ...), bullet_tags=tags
    )


@lru_cache(maxsize=256)
def fact_curation(actions: tuple[str, ...]) -> type[FactCuration]:
    action: Any = Literal[actions]
    return create_model("FactCuration", __base__=FactCuration, action=(action, ...))


@lru_cache(maxsize=64)
def reflection(cited_ids: tuple[str, ...]) -> type[Reflection]:
    if not cited_ids:  # nothing was cited: nothing to tag
        return create_model("Reflection", __base__=Reflection, bullet_tags=(list[BulletTag], Field(max_length=0)))
    tag: Any = create_model("BulletTag", __base__=BulletTag, id=(_id_type(cited_ids), ...))
    return create_model("Reflection", __base__=Reflection, bullet_tags=(list[tag], ...))


# A new section's name, when none of the playbook's fits: 1-5 words of letters (the first of 3 or more), so that it
# passes the section rules of the quality gate (3 letters, not an operation's name) by construction, and a
# grammar-constrained model cannot write "S" or "ADD".
NEW_SECTION_PATTERN = r"^[A-Za-z]{3,24}( [A-Za-z&-]{1,24}){0,4}$"


def _section_type(sections: tuple[str, ...]) -> Any:
    new: Any = Annotated[str, StringConstraints(pattern=NEW_SECTION_PATTERN)]
    if not sections or len(sections) > MAX_ENUM_IDS:
        return new
    return Literal[sections] | new  # an existing section, or a well-formed new name


@lru_cache(maxsize=64)
def curator_output(
    ids: tuple[str, ...], sections: tuple[str, ...] | None = (), contents: tuple[str, ...] | None = None
) -> type[CuratorOutput]:
    """The curator's output model for a playbook with these bullet ids and sections: ids in UPDATE / REMOVE / MERGE
    are the playbook's own, and an ADD's section is one of its sections or a well-formed new name
    (:data:`NEW_SECTION_PATTERN`). Free content is left to the quality gate and the repair that follows a refusal:
    a pattern would lift the length bound a grammar-constrained decoder needs to close the JSON. ``sections=None``
    is the schema of roles version 1 (any section name), which runs recorded before re-execute with.

    ``contents`` (``curator_content = "grounded"``): an ADD's or UPDATE's content is one of these statements (built
    by code from the task, its feedback and the reflection, each one the quality gate accepts); MERGE, whose text
    would have to be written, is not offered; with no statement, only REMOVE is (or nothing)."""
    add_base: Any = CuratorAdd
    update_base: Any = CuratorUpdate
    grounded = contents is not None
    if grounded:
        add_base = update_base = None
        if contents:
            content_t: Any = Literal[contents]
            add_base = create_model("CuratorAdd", __base__=CuratorAdd, content=(content_t, ...))
            update_base = create_model("CuratorUpdate", __base__=CuratorUpdate, content=(content_t, ...))
    add: Any = add_base
    if add_base is not None and sections is not None:
        add = create_model("CuratorAdd", __base__=add_base, section=(_section_type(sections), ...))
    kinds: list[Any] = [add] if add is not None else []
    if ids and len(ids) > MAX_ENUM_IDS:
        kinds += [k for k in (update_base, CuratorRemove, None if grounded else CuratorMerge) if k is not None]
    elif ids:
        id_t = _id_type(ids)
        if update_base is not None:
            kinds.append(create_model("CuratorUpdate", __base__=update_base, id=(id_t, ...)))
        kinds.append(create_model("CuratorRemove", __base__=CuratorRemove, id=(id_t, ...)))
        if not grounded:
            id_list: Any = list[id_t]  # type: ignore[valid-type]
            kinds.append(create_model("CuratorMerge", __base__=CuratorMerge, ids=(id_list, Field(min_length=2))))
    if not kinds:  # nothing can be proposed: an empty list of operations is the only answer
        return create_model("CuratorOutput", __base__=CuratorOutput, operations=(list[Any], Field(max_length=0)))
    ops: Any = kinds[0]
    for k in kinds[1:]:
        ops = ops | k
    if len(kinds) > 1 and len(ids) <= MAX_ENUM_IDS:  # (a long playbook's union is left plain, as it always was)
        ops = Annotated[ops, Field(discriminator="type")]
    return create_model("CuratorOutput", __base__=CuratorOutput, operations=(list[ops], ...))


__all__ = [
    "MAX_ENUM_IDS",
    "NEW_SECTION_PATTERN",
    "BulletTag",
    "CuratorOutput",
    "FactCuration",
    "FactReflection",
    "GeneratorOutput",
    "Reflection",
    "copy_generator_output",
    "curator_output",
    "fact_curation",
    "fact_reflection",
    "generator_output",
    "reflection",
]
