"""The three ACE roles as plain functions over typed inputs and outputs.

- :func:`generate` answers a task with the playbook and cites the bullets it used (:class:`GeneratorOutput`).
- :func:`reflect` judges the answer against the feedback and tags the cited bullets (:class:`Reflection`);
  :func:`tag_delta` turns those tags into TAG operations by plain code, for cited bullets only.
- :func:`curate` proposes a small delta (:class:`CuratorOutput`, converted with :meth:`CuratorOutput.to_delta`).

Prompt templates are text files in ``ace/roles/prompts``; every call goes through :class:`ace.llm.LLM`, so its
output is validated (and repaired) or the call raises — nothing half-parsed reaches the playbook.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, create_model

from ace.llm import LLM, LLMResult, Message
from ace.playbook import Delta, Playbook, Source, render
from ace.tasks import Feedback, Task

PROMPTS = Path(__file__).parent / "prompts"


@cache
def prompt(name: str) -> str:
    """A role's instructions (``ace/roles/prompts/NAME.txt``)."""
    return (PROMPTS / f"{name}.txt").read_text(encoding="utf-8").strip()


# -- typed outputs ------------------------------------------------------------------------------------------------
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


class CuratorAdd(BaseModel):
    type: Literal["ADD"]
    section: str
    content: str


class CuratorUpdate(BaseModel):
    type: Literal["UPDATE"]
    id: str
    content: str


class CuratorRemove(BaseModel):
    type: Literal["REMOVE"]
    id: str


class CuratorMerge(BaseModel):
    type: Literal["MERGE"]
    ids: list[str] = Field(min_length=2)
    content: str


class CuratorOutput(BaseModel):
    """The curator's proposal. TAG is not offered: counters change only through :func:`tag_delta`."""

    reasoning: str
    operations: list[Annotated[CuratorAdd | CuratorUpdate | CuratorRemove | CuratorMerge, Field(discriminator="type")]]

    def to_delta(self, source: Source | None = None) -> Delta:
        return Delta.parse(
            {
                "reasoning": self.reasoning,
                "operations": [op.model_dump() for op in self.operations],
                "source": source.to_dict() if source else None,
            }
        )


# -- outputs constrained to the playbook's ids ------------------------------------------------------------------------
# Up to this many ids, a role's schema lists the valid ids as an enum: grammar-constrained models then cannot emit
# an unknown id, and API models get a validation error naming the valid ones (shown to them on repair).
MAX_ENUM_IDS = 300
M = TypeVar("M", bound=BaseModel)


def _id_type(ids: tuple[str, ...]) -> Any:
    return Literal[ids] if 0 < len(ids) <= MAX_ENUM_IDS else str  # type: ignore[valid-type]


@lru_cache(maxsize=64)
def _generator_output(ids: tuple[str, ...]) -> type[GeneratorOutput]:
    return create_model("GeneratorOutput", __base__=GeneratorOutput, bullet_ids=(list[_id_type(ids)], ...))


@lru_cache(maxsize=64)
def _reflection(cited_ids: tuple[str, ...]) -> type[Reflection]:
    if not cited_ids:  # nothing was cited: nothing to tag
        return create_model("Reflection", __base__=Reflection, bullet_tags=(list[BulletTag], Field(max_length=0)))
    tag = create_model("BulletTag", __base__=BulletTag, id=(_id_type(cited_ids), ...))
    return create_model("Reflection", __base__=Reflection, bullet_tags=(list[tag], ...))  # type: ignore[valid-type]


@lru_cache(maxsize=64)
def _curator_output(ids: tuple[str, ...]) -> type[CuratorOutput]:
    if not ids or len(ids) > MAX_ENUM_IDS:
        ops: Any = CuratorAdd if not ids else CuratorAdd | CuratorUpdate | CuratorRemove | CuratorMerge
    else:
        id_t = _id_type(ids)
        update = create_model("CuratorUpdate", __base__=CuratorUpdate, id=(id_t, ...))
        remove = create_model("CuratorRemove", __base__=CuratorRemove, id=(id_t, ...))
        merge = create_model("CuratorMerge", __base__=CuratorMerge, ids=(list[id_t], Field(min_length=2)))
        ops = Annotated[CuratorAdd | update | remove | merge, Field(discriminator="type")]
    return create_model("CuratorOutput", __base__=CuratorOutput, operations=(list[ops], ...))


# -- the roles ------------------------------------------------------------------------------------------------------
def _playbook_text(playbook: Playbook, budget: int | None) -> str:
    text = render(playbook, budget=budget)
    return f"PLAYBOOK:\n{text}" if text else "PLAYBOOK: (empty)"


def generate(
    llm: LLM,
    task: Task,
    playbook: Playbook,
    *,
    budget: int | None = None,
    hint: str | None = None,
    context: str | None = None,
) -> LLMResult[GeneratorOutput]:
    """Answer ``task`` with the playbook (rendered under ``budget`` tokens). ``hint``: feedback from a previous
    round, when the answer is being retried. ``context``: an assembled context (playbook plus memory tiers, see
    :mod:`ace.memory`) shown instead of the rendered playbook."""
    question = f"QUESTION:\n{task.input}"
    if hint:
        question += f"\n\nA PREVIOUS ATTEMPT WAS WRONG. What was learned:\n{hint}"
    messages = [
        Message("system", prompt("generator"), cache=True),
        Message("system", context if context is not None else _playbook_text(playbook, budget), cache=True),
        Message("user", question),
    ]
    output = _generator_output(tuple(b.id for b in playbook))
    return llm.call(messages, output=output, role="generator")


def cited(playbook: Playbook, output: GeneratorOutput) -> list[str]:
    """The cited ids that exist in the playbook, in citation order, once each."""
    return [i for i in dict.fromkeys(output.bullet_ids) if i in playbook]


def reflect(
    llm: LLM, task: Task, playbook: Playbook, output: GeneratorOutput, feedback: Feedback
) -> LLMResult[Reflection]:
    """Judge ``output``; the reflector sees only the bullets the generator cited (and the target, if known)."""
    bullets = "\n".join(f"[{b.id}] {b.content}" for b in (playbook[i] for i in cited(playbook, output)))
    verdict = "unknown (no ground truth)" if feedback.correct is None else "correct" if feedback.correct else "wrong"
    parts = [
        f"QUESTION:\n{task.input}",
        f"MODEL REASONING:\n{output.reasoning}",
        f"MODEL ANSWER: {output.final_answer}",
        f"OUTCOME: {verdict}. {feedback.message}".strip(),
    ]
    if feedback.target is not None:
        parts.append(f"EXPECTED ANSWER: {feedback.target}")
    parts.append(f"CITED BULLETS:\n{bullets or '(none)'}")
    messages = [Message("system", prompt("reflector"), cache=True), Message("user", "\n\n".join(parts))]
    return llm.call(messages, output=_reflection(tuple(cited(playbook, output))), role="reflector")


def tag_delta(
    playbook: Playbook, output: GeneratorOutput, reflection: Reflection, source: Source | None = None
) -> Delta:
    """TAG operations for the reflector's tags, kept only for bullets the generator cited (plain code, no LLM)."""
    allowed = set(cited(playbook, output))
    ops = [{"type": "TAG", "id": t.id, "tag": t.tag} for t in reflection.bullet_tags if t.id in allowed]
    return Delta.parse(
        {
            "operations": ops,
            "reasoning": "reflector tags on cited bullets",
            "source": source.to_dict() if source else None,
        }
    )


def curate(
    llm: LLM, playbook: Playbook, reflection: Reflection, *, budget: int | None = None
) -> LLMResult[CuratorOutput]:
    """Propose a delta from ``reflection``, given the playbook (under ``budget`` tokens) and its statistics."""
    stats = playbook.stats()
    sections = ", ".join(playbook.sections) or "(none yet)"
    parts = [
        f"PLAYBOOK STATISTICS: {stats['bullets']} bullets in {stats['sections']} sections ({sections}); "
        f"token budget {budget if budget is not None else 'unlimited'}.",
        _playbook_text(playbook, budget),
        f"REFLECTION:\nError: {reflection.error_identification}\nRoot cause: {reflection.root_cause_analysis}\n"
        f"Correct approach: {reflection.correct_approach}\nKey insight: {reflection.key_insight}",
    ]
    messages = [Message("system", prompt("curator"), cache=True), Message("user", "\n\n".join(parts))]
    return llm.call(messages, output=_curator_output(tuple(b.id for b in playbook)), role="curator")


__all__ = [
    "BulletTag",
    "CuratorOutput",
    "GeneratorOutput",
    "Reflection",
    "cited",
    "curate",
    "generate",
    "prompt",
    "reflect",
    "tag_delta",
]
