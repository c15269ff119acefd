"""The three ACE roles as plain functions over typed inputs and outputs.

- :func:`generate` answers a task with the playbook and cites the bullets it used (:class:`GeneratorOutput`).
- :func:`reflect` judges the answer against the feedback and tags the cited bullets (:class:`Reflection`);
  :func:`tag_delta` turns those tags into TAG operations by plain code, for cited bullets only.
- :func:`curate` proposes a small delta (:class:`CuratorOutput`, a :class:`~ace.playbook.Delta` by
  :meth:`CuratorOutput.to_delta`).

Prompt templates are text files in ``ace/loop/roles/prompts``; every call goes through :class:`ace.llm.LLM`, so its
output is validated (and repaired) or the call raises: nothing half-parsed reaches the playbook.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ace.llm import LLM, LLMResult, Message
from ace.loop.roles import outputs
from ace.loop.roles.outputs import CuratorOutput, GeneratorOutput, Reflection
from ace.playbook import Delta, Playbook, Source, TagOp, render
from ace.tasks import Feedback, Task

PROMPTS = Path(__file__).parent / "prompts"


@cache
def prompt(name: str) -> str:
    """A role's instructions (``ace/loop/roles/prompts/NAME.txt``)."""
    return (PROMPTS / f"{name}.txt").read_text(encoding="utf-8").strip()


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
    output = outputs.generator_output(tuple(b.id for b in playbook))
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
    return llm.call(messages, output=outputs.reflection(tuple(cited(playbook, output))), role="reflector")


def tag_delta(
    playbook: Playbook, output: GeneratorOutput, reflection: Reflection, source: Source | None = None
) -> Delta:
    """TAG operations for the reflector's tags, kept only for bullets the generator cited (plain code, no LLM)."""
    allowed = set(cited(playbook, output))
    ops = [TagOp(id=t.id, tag=t.tag) for t in reflection.bullet_tags if t.id in allowed]
    return Delta(operations=ops, reasoning="reflector tags on cited bullets", source=source)


def curate(
    llm: LLM, playbook: Playbook, reflection: Reflection, *, budget: int | None = None
) -> LLMResult[CuratorOutput]:
    """Propose a delta from the reflection, given the playbook (under ``budget`` tokens) and its statistics."""
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
    return llm.call(messages, output=outputs.curator_output(tuple(b.id for b in playbook)), role="curator")


__all__ = ["PROMPTS", "cited", "curate", "generate", "prompt", "reflect", "tag_delta"]
