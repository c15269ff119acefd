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

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel

from ace.llm import LLM, LLMResult, Message, Usage
from ace.loop.roles import outputs
from ace.loop.roles.outputs import BulletTag, CuratorOutput, FactCuration, FactReflection, GeneratorOutput, Reflection
from ace.playbook import AddOp, Delta, Operation, Playbook, Source, TagOp, UpdateOp, render
from ace.playbook.focus import answer_options, fact, fact_value, looks_like_value, relevant, spans, words
from ace.playbook.quality import QualityRules, content_problem
from ace.playbook.query import focused
from ace.playbook.render import Layout, approx_tokens
from ace.tasks import Feedback, Task

PROMPTS = Path(__file__).parent / "prompts"


@cache
def prompt(name: str) -> str:
    """A role's instructions (``ace/loop/roles/prompts/NAME.txt``)."""
    return (PROMPTS / f"{name}.txt").read_text(encoding="utf-8").strip()


# -- the roles ------------------------------------------------------------------------------------------------------
def _playbook_text(playbook: Playbook, budget: int | None, layout: Layout = "sections") -> str:
    text = render(playbook, budget=budget, layout=layout)
    return f"PLAYBOOK:\n{text}" if text else "PLAYBOOK: (empty)"


def generate(
    llm: LLM,
    task: Task,
    playbook: Playbook,
    *,
    budget: int | None = None,
    hint: str | None = None,
    context: str | None = None,
    focus: int = 0,
    copy: bool = False,
    layout: Layout = "sections",
    relevance: Literal["words", "bm25"] = "words",
) -> LLMResult[GeneratorOutput]:
    """Answer ``task`` with the playbook (rendered under ``budget`` tokens). ``hint``: feedback from a previous
    round, when the answer is being retried. ``context``: an assembled context (playbook plus memory tiers, see
    :mod:`ace.memory`) shown instead of the rendered playbook.

    ``focus``: also show the ``focus`` bullets most relevant to the question (:func:`ace.playbook.focus.relevant`)
    right before it; the playbook text before them stays the same from task to task (a stable prompt prefix).
    ``copy``: the answer is *chosen* among the values of those bullets that are facts, then the spans of the
    others that the question does not already contain (:func:`ace.playbook.focus.answer_options`), and only they
    can be cited: for task families whose answers are stated in
    the context, and for small models that copy well but write badly.
    ``layout``: how the playbook is laid out (:mod:`ace.playbook.render`; "stable" for a prompt cache).
    ``relevance``: how the focused bullets are ranked ("bm25": :func:`ace.playbook.query.focused`; "words":
    :func:`ace.playbook.focus.relevant`). With "bm25", a copied answer's options are the values of the focused
    bullets that score within :data:`TIE` of the first: a clear first is the answer with no call (the model would
    be held to that one option), and the model chooses only among bullets the ranking cannot tell apart.
    """
    if relevance == "bm25":
        ranked = focused(playbook, task.input, focus)
        shown = [b for b, _ in ranked]
        close = [b for b, score in ranked if score >= TIE * ranked[0][1]] if ranked else []
    else:
        shown = close = relevant(playbook, task.input, focus)
    question = ""
    if shown:
        question = "MOST RELEVANT BULLETS:\n" + "\n".join(f"[{b.id}] {b.content}" for b in shown) + "\n\n"
    question += f"QUESTION:\n{task.input}"
    if hint:
        question += f"\n\nA PREVIOUS ATTEMPT WAS WRONG. What was learned:\n{hint}"
    messages = [
        Message("system", prompt("generator"), cache=True),
        Message("system", context if context is not None else _playbook_text(playbook, budget, layout), cache=True),
        Message("user", question),
    ]
    if copy:
        options = answer_options(close, task.input)
        if not options:  # nothing shown to copy from: the only possible reply, without a call
            out = GeneratorOutput(reasoning="", bullet_ids=[], final_answer=UNKNOWN)
            return _without_call(out)
        if len(options) == 1 and relevance == "bm25":  # one option: the constrained reply could only be it
            value = options[0]
            ids = [b.id for b in close if fact_value(b.content) == value or (
                fact_value(b.content) is None and value in b.content)]  # fmt: skip
            return _without_call(GeneratorOutput(reasoning="", bullet_ids=ids, final_answer=value))
        result = llm.call(messages, output=outputs.copy_generator_output(tuple(options)), role="generator")
        if result.parsed is not None:  # cite the focused bullets that state the value chosen
            answer = result.parsed.final_answer
            result.parsed.bullet_ids = [b.id for b in close if fact_value(b.content) == answer or (
                fact_value(b.content) is None and answer in b.content)]  # fmt: skip
        return result
    else:
        output = outputs.generator_output(tuple(b.id for b in playbook))
    return llm.call(messages, output=output, role="generator")


M = TypeVar("M", bound=BaseModel)


def _without_call(out: M) -> LLMResult[M]:
    """A role's result when its output is fixed without asking the model (no tokens, no time, no attempt)."""
    return LLMResult(out.model_dump_json(), out, Usage(), 0.0, 0.0, "none", "none", attempts=0)


UNKNOWN = "unknown"  # the copied answer when nothing shown could answer
TIE = 0.9  # focused bullets scoring at least this share of the first's are options of a copied answer (bm25)


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


_EVALUATOR_WORDS = re.compile(r"(?i)\s*(?:expected|answered|it replaces)\b")


def reflect_facts(
    llm: LLM, task: Task, playbook: Playbook, output: GeneratorOutput, feedback: Feedback, *, version: int = 2
) -> LLMResult[FactReflection]:
    """The copy-friendly reflector. A right answer needs no call: the bullets it copied from are tagged helpful and
    there is nothing new to learn. Otherwise the reflector tags the cited bullets and copies the fact the
    outcome revealed: its value from the feedback (the expected answer, when known, then the message), leaving out
    what the wrong answer or the question already said, and its subject, a clause of the message stating a rule,
    or the question itself."""
    ids = tuple(cited(playbook, output))
    if feedback.correct is True:  # nothing new to learn; what was copied was right: no call
        tags = [BulletTag(id=i, tag="helpful") for i in ids]
        out = FactReflection(value="", bullet_tags=tags)
        return _without_call(out)
    bullets = "\n".join(f"[{b.id}] {b.content}" for b in (playbook[i] for i in ids))
    verdict = "unknown (no ground truth)" if feedback.correct is None else "wrong"
    # what the fact is about: a clause of the feedback that states a rule (three words or more), or the question
    clauses = [c.strip() for c in re.split(r"[;\n]|\.\s", feedback.message) if len(words(c)) >= 3]
    if version >= 3:  # the evaluator's own words ("expected 'X' (it replaces 'Y')") state no subject
        clauses = [c for c in clauses if not _EVALUATOR_WORDS.match(c)]
    subjects = tuple(dict.fromkeys([*clauses, task.input.strip()]))
    # its value: the expected answer when known, then the spans of the message's clauses that look like a
    # value (a code, number or name: every word capitalised or with a digit), rule clauses first; never what
    # the wrong answer or the question said. Offered every span, the local model often chose "approved on".
    wrong, options = output.final_answer.casefold(), [feedback.target or ""]
    for clause in [*clauses, feedback.message]:
        options += [v for v in spans(clause, exclude=task.input, max_words=3) if looks_like_value(v)]
    stale = (feedback.replaces or "").strip().casefold() if version >= 3 else ""  # the value it replaces: not a fact
    values = tuple(
        v for v in dict.fromkeys(options) if v.strip() and v.casefold() not in wrong and v.strip().casefold() != stale
    )
    parts = [
        f"QUESTION:\n{task.input}",
        f"MODEL ANSWER: {output.final_answer}",
        f"OUTCOME: {verdict}. {feedback.message}".strip(),
    ]
    if feedback.target is not None:
        parts.append(f"EXPECTED ANSWER: {feedback.target}")
    parts.append(f"CITED BULLETS:\n{bullets or '(none)'}")
    messages = [Message("system", prompt("reflector_facts"), cache=True), Message("user", "\n\n".join(parts))]
    return llm.call(messages, output=outputs.fact_reflection(ids, subjects, values), role="reflector")


def tag_delta(
    playbook: Playbook, output: GeneratorOutput, reflection: Reflection | FactReflection, source: Source | None = None
) -> Delta:
    """TAG operations for the reflector's tags, kept only for bullets the generator cited (plain code, no LLM)."""
    allowed = set(cited(playbook, output))
    ops = [TagOp(id=t.id, tag=t.tag) for t in reflection.bullet_tags if t.id in allowed]
    return Delta(operations=ops, reasoning="reflector tags on cited bullets", source=source)


def curate(
    llm: LLM,
    playbook: Playbook,
    reflection: Reflection,
    *,
    budget: int | None = None,
    layout: Layout = "sections",
    refused: tuple[CuratorOutput, str] | None = None,
    version: int = 2,
    turned_down: Sequence[tuple[str, str]] = (),
    contents: Sequence[str] | None = None,
) -> LLMResult[CuratorOutput]:
    """Propose a delta from the reflection, given the playbook (under ``budget`` tokens) and its statistics. With
    ``refused`` (an earlier proposal and why the playbook's rules refused it), the curator is shown both and asked
    for a proposal with that fixed: the repair that follows a refusal. ``version=1`` is the first prompt and schema
    (any section name), what runs recorded before re-execute with. ``contents`` (``curator_content = "grounded"``,
    :func:`grounded_contents`): the statements an ADD's or UPDATE's content is chosen among, shown and held to by
    the schema (those of more than half the reply's ``max_tokens``, estimated, left out); and an UPDATE or REMOVE
    may name only a bullet the reflection tagged harmful (the embedded model, free to name any, removed the bullet it
    had added the step before, step after step)."""
    stats = playbook.stats()
    sections = ", ".join(playbook.sections) or "(none yet)"
    parts = [
        f"PLAYBOOK STATISTICS: {stats['bullets']} bullets in {stats['sections']} sections ({sections}); "
        f"token budget {budget if budget is not None else 'unlimited'}.",
        _playbook_text(playbook, budget, layout),
        f"REFLECTION:\nError: {reflection.error_identification}\nRoot cause: {reflection.root_cause_analysis}\n"
        f"Correct approach: {reflection.correct_approach}\nKey insight: {reflection.key_insight}",
    ]
    if contents is not None:  # grounded: the content is chosen, not written
        # a statement the reply could not hold within its tokens is not offered (chosen, the JSON would be cut off)
        contents = [c for c in contents if approx_tokens(c) <= llm.sampling.max_tokens // 2]
        listed = "\n".join(f"- {c}" for c in contents) or "(none: no ADD or UPDATE this time)"
        parts.append(f"CONTENT TO CHOOSE FROM (an ADD's or UPDATE's content is one of these, word for word):\n{listed}")
    if turned_down:  # lessons a reviewer turned down (ace review): shown only when there are some
        shown_down = "\n".join(f"- {text[:300]} (why: {why[:160]})" for text, why in turned_down[:10])
        parts.append(f"LESSONS A REVIEWER TURNED DOWN (do not propose them again):\n{shown_down}")
    if refused is not None:
        earlier, why = refused
        shown = earlier.model_dump_json(include={"operations"}, exclude_none=True)  # none of the hidden fields
        parts.append(
            f"YOUR LAST PROPOSAL WAS REFUSED:\n{shown}\nReason: {why}\n"
            "Propose again with this fixed (or no operations if nothing is worth keeping)."
        )
    system = prompt("curator" if version >= 2 else "curator_v1")
    messages = [Message("system", system, cache=True), Message("user", "\n\n".join(parts))]
    held_to = tuple(playbook.sections) if version >= 2 else None  # version 1: any section name
    ids = tuple(b.id for b in playbook)
    choices = None
    if contents is not None:  # grounded: change or remove only a bullet the reflection found misleading
        choices = tuple(contents)
        ids = tuple(dict.fromkeys(t.id for t in reflection.bullet_tags if t.tag == "harmful" and t.id in playbook))
    output = outputs.curator_output(ids, held_to, choices)
    if choices == () and not ids:  # nothing to choose and no bullet to change: no operation, and no call to ask it
        empty = output(reasoning="nothing to choose from", operations=[])
        return LLMResult(empty.model_dump_json(), empty, Usage(), 0.0, 0.0, llm.provider.model, llm.provider.name)
    return llm.call(messages, output=output, role="curator")


MAX_GROUNDED = 6  # statements a grounded curator chooses among


def grounded_contents(
    task: Task, feedback: Feedback | None, reflection: Reflection, rules: QualityRules | None, playbook: Playbook
) -> tuple[str, ...]:
    """What a grounded curator (``curator_content = "grounded"``) may write as a bullet, built by code: the fact the
    outcome revealed when the target is known (``question → target``, :func:`ace.playbook.focus.fact`), then the
    reflection's key insight and correct approach, then the clauses of the feedback that state something (three
    words or more, not the evaluator's own "expected ..."); each once, none the playbook holds already, and only
    those the quality gate (``rules``) accepts, so that a choice among them is never refused for its text. For a
    model that cannot write a bullet but can choose one (the embedded model: its free-text lessons were one or two
    words, and the gate refused 92 % of its deltas)."""
    found: list[str] = []
    if feedback is not None and feedback.target and (subject := " ".join(task.input.split()).rstrip("?").strip()):
        found.append(fact(subject, feedback.target.strip()))
    # the reflection's own statements: not a fragment ("The current ratio is a"), and no number the step did not
    # show (the embedded model's "The ROI is 2.00%" where the answer was 0.25)
    sources = " ".join([task.input, feedback.target or "", feedback.message] if feedback is not None else [task.input])
    shown = set(_NUMBER.findall(sources))
    found += [t for t in (reflection.key_insight, reflection.correct_approach)
              if not _ENDS_UNFINISHED.search(t) and set(_NUMBER.findall(t)) <= shown]  # fmt: skip
    if feedback is not None:
        message = _EVALUATOR_QUOTE.sub(" ", feedback.message)  # the evaluator's quoted values: stated above
        found += [c for c in _clauses(message) if not _GRADER_WORDS.match(c)]
    held = {b.content for b in playbook}
    kept: list[str] = []
    for text in dict.fromkeys(" ".join(t.split()).strip() for t in found):
        if len(words(text)) < 3 or len(text) > MAX_CONTENT or text in held:  # a long one is left out, never cut
            continue
        if rules is not None and content_problem(text, rules):
            continue
        kept.append(text)
        if len(kept) == MAX_GROUNDED:
            break
    return tuple(kept)


# the evaluators' words about an answer, not a rule: those above ("expected ..."), "the answer 'x' contains no
# number", "#2: expected 4, got 3"
_GRADER_WORDS = re.compile(
    r"(?i)\s*(?:(?:expected|answered|it replaces|the answer)\b|#\d+:|correct\s*$|no ground truth)"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# a statement cut off: it ends on an article, a preposition, a conjunction, a bare "is" or "not", or a hyphen
_ENDS_UNFINISHED = re.compile(
    r"(?i)(?:\b(?:a|an|the|is|are|was|were|be|has|have|not|no|of|to|and|or|but|in|into|on|for|with|by|at|from|as"
    r"|than|per|that|which|its)|-)\W*$"
)
MAX_CONTENT = 600  # characters of a grounded statement: a longer one is not offered (cut, it would state a wrong value)
# what the evaluators quote ("expected 'X'", "(it replaces 'Y')", "answered 3, expected 4"): the fact states it
_EVALUATOR_QUOTE = re.compile(r"""(?:answered\s+\S+,\s*)?expected\s+(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)"""
                              r"""|\(it replaces\s+(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^)]*)\)""")  # fmt: skip
# a sentence ends at . ! ? before a capital, unless the word before is an abbreviation ("Dr. Jonah", "St. Ives")
_ABBREVIATIONS = frozenset(
    [
        "dr",
        "mr",
        "mrs",
        "ms",
        "mx",
        "prof",
        "st",
        "mt",
        "no",
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "jr",
        "sr",
        "e.g",
        "i.e",
        "fig",
        "approx",
        "dept",
    ]
)


def _clauses(message: str) -> list[str]:
    """The statements of a feedback message: its lines and ";"-separated parts, cut into sentences at a ". " (or
    "! ", "? ") before a capital that does not follow an abbreviation."""
    out: list[str] = []
    for part in re.split(r"[;\n]", message):
        start = 0
        for m in re.finditer(r"[.!?]\s+(?=[A-Z])", part):
            before = part[start : m.start()].split()
            if before and before[-1].casefold().rstrip(".") in _ABBREVIATIONS:
                continue
            out.append(part[start : m.start() + 1])
            start = m.end()
        out.append(part[start:])
    return [c.strip() for c in out if c.strip()]


FACTS_SECTION = "facts"
SIMILAR = 3  # similar bullets the copy-friendly curator may update


def fact_actions(playbook: Playbook, reflection: FactReflection) -> tuple[tuple[str, ...], list[str]]:
    """The copy-friendly curator's choices for this lesson, and the similar bullets they name. Empty when there is
    nothing to decide: no lesson, or the playbook already holds exactly this text."""
    fact = reflection.fact
    if not fact or any(b.content == fact for b in playbook):
        return (), []
    similar = [b.id for b in relevant(playbook, fact, SIMILAR)]
    return ("ADD", *(f"UPDATE {i}" for i in similar), "NONE"), similar


def curate_facts(
    llm: LLM, playbook: Playbook, reflection: FactReflection, turned_down: Sequence[tuple[str, str]] = ()
) -> tuple[list[Operation], str]:
    """The copy-friendly curator: shown the lesson and the few bullets most like it, it chooses to ADD it, let it
    replace one of them (UPDATE), or do nothing. Code writes the operation; no LLM call when there is no choice,
    nor for a lesson a reviewer turned down (``turned_down``: ``(text, reason)``). Returns the operations and
    the choice made."""
    if same_lesson(reflection.fact, turned_down) is not None:
        return [], "turned down by a reviewer"
    actions, similar = fact_actions(playbook, reflection)
    if not actions:
        return [], "nothing new to curate"
    shown = "\n".join(f"[{i}] {playbook[i].content}" for i in similar) or "(none)"
    parts = [f"NEW LESSON:\n{reflection.fact}", f"SIMILAR BULLETS:\n{shown}", "ACTIONS: " + ", ".join(actions)]
    messages = [Message("system", prompt("curator_facts"), cache=True), Message("user", "\n\n".join(parts))]
    choice = llm.call(messages, output=outputs.fact_curation(actions), role="curator").parsed
    assert isinstance(choice, FactCuration)
    kind, _, target = choice.action.partition(" ")
    if kind == "ADD":
        return [AddOp(section=FACTS_SECTION, content=reflection.fact)], choice.action
    if kind == "UPDATE":
        return [UpdateOp(id=target, content=reflection.fact)], choice.action
    return [], choice.action


def _lesson_key(text: str) -> str:
    return " ".join(text.casefold().strip().strip(".").split())


def same_lesson(text: str, turned_down: Sequence[tuple[str, str]]) -> str | None:
    """The reason a reviewer gave for turning down this lesson (the same text, up to case, spacing and a final
    period), or None."""
    key = _lesson_key(text)
    return next((why for down, why in turned_down if _lesson_key(down) == key), None)


__all__ = [
    "FACTS_SECTION",
    "PROMPTS",
    "UNKNOWN",
    "cited",
    "curate",
    "curate_facts",
    "fact_actions",
    "generate",
    "prompt",
    "reflect",
    "reflect_facts",
    "same_lesson",
    "tag_delta",
]
