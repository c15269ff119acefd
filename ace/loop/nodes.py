"""The loop's steps as plain functions ``node(state, ctx) -> update``: call and test them without the graph.

A step reads one version of the playbook (``base_version``, fixed when the task's first answer is generated),
curate applies the step's delta to it once and keeps the result as the step's :class:`Candidate`, refine extends
that candidate, guard judges it, and commit sends its delta with ``expected_version=base_version`` (the store
applies it a second time, inside the writer's lock). Only when another writer moved the head first is the delta
rebased: applied to the new head, judged by the guard again, and committed there.
"""

from __future__ import annotations

from typing import Any

from ace.llm import LLMError, ProviderError
from ace.loop.context import LoopContext
from ace.loop.roles import (
    CuratorOutput,
    FactReflection,
    GeneratorOutput,
    Reflection,
    curate,
    curate_facts,
    generate,
    grounded_contents,
    reflect,
    reflect_facts,
    same_lesson,
    tag_delta,
)
from ace.loop.state import Candidate, Failure, LoopState, StepRecord
from ace.memory import Episode
from ace.memory.episodic import Outcome
from ace.playbook import AddOp, Delta, DeltaError, Playbook, Source, UpdateOp, merge_deltas
from ace.playbook.supersede import consolidate
from ace.store import StaleVersionError, VersionInfo
from ace.tasks import Task

REBASES = 3  # commits retried on a moved head before the step gives up


def generate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task = ctx.task(state)
    base = state.get("base_version") if state.get("round") else None
    base = base if base is not None else ctx.head_version()
    pb = ctx.playbook_at(base)
    refl = state.get("reflection")
    hint = refl.lessons if refl is not None else None
    try:
        if ctx.generator is None:
            context = None
            if ctx.memory is not None:
                buffer = ctx.memory.buffer(state.get("buffer"))
                context = ctx.memory.context(task, pb, buffer=buffer, budget=ctx.config.playbook_budget).text
            cfg = ctx.config
            out = generate(
                ctx.llm,
                task,
                pb,
                budget=cfg.playbook_budget,
                hint=hint,
                context=context,
                focus=cfg.focus,
                layout=cfg.layout,
                copy=cfg.answers == "copy",
                relevance=cfg.relevance,
            ).parsed
        else:
            out = ctx.generator(task, pb, hint)
    except LLMError as e:
        return {"error": f"generator: {e}", "failure": _kind(e), "base_version": base}
    except Exception as e:  # a wrapped agent is user code: its failure fails the step, not the run
        if ctx.generator is None:
            raise
        return {"error": f"generator (agent): {type(e).__name__}: {e}", "failure": "agent", "base_version": base}
    # the plain class (not the id-constrained one the call validated with): the checkpointer imports it by name
    answer = GeneratorOutput.model_validate(out.model_dump() if isinstance(out, GeneratorOutput) else out)
    return {"answer": answer, "round": state.get("round", 0) + 1, "base_version": base}


def evaluate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    answer = _answer(state)
    fb = ctx.evaluator(ctx.task(state), answer.final_answer)
    update: LoopState = {"feedback": fb}
    if state.get("round", 1) == 1:
        update["first_correct"] = fb.correct
    return update


def reflect_node(state: LoopState, ctx: LoopContext) -> LoopState:
    task, answer, fb = ctx.task(state), _answer(state), state.get("feedback")
    assert fb is not None, "reflect runs after evaluate"
    if not ctx.config.ground_truth:  # execution feedback only: judge the answer without the target
        fb = ctx.evaluator(task.model_copy(update={"target": None}), answer.final_answer)
    plain: type[Reflection | FactReflection] = FactReflection if ctx.config.curation == "facts" else Reflection
    try:
        if plain is FactReflection:
            r: Any = reflect_facts(ctx.llm, task, _base(state, ctx), answer, fb, version=ctx.config.roles_version)
        else:
            r = reflect(ctx.llm, task, _base(state, ctx), answer, fb)
    except LLMError as e:
        return {"error": f"reflector: {e}", "failure": _kind(e)}
    assert r.parsed is not None
    # the plain class (not the constrained one the call validated with): the checkpointer imports it by name
    return {"reflection": plain.model_validate(r.parsed.model_dump())}


def curate_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """The step's one delta: the reflector's tags on cited bullets (plain code) and the curator's operations,
    applied once to the base version; the result is the step's candidate. A curator delta the playbook's rules
    refuse (the quality gate, an unknown id) goes back to the curator with the reason, up to
    ``config.curator_repairs`` times; the step records how many proposals were refused and whether one was
    repaired."""
    task, pb, refl = ctx.task(state), _base(state, ctx), state.get("reflection")
    assert refl is not None, "curate runs after reflect"
    source = Source(task_id=task.id, step=state["index"] + 1, run_id=ctx.run_id, role="curator")
    tags = tag_delta(pb, _answer(state), refl, source)
    tries = 1 if isinstance(refl, FactReflection) else 1 + ctx.config.curator_repairs  # facts: bullets by code
    refused: tuple[CuratorOutput, str] | None = None
    why = ""
    down = ctx.turned_down()
    for attempt in range(tries):
        try:
            if isinstance(refl, FactReflection):
                ops, reasoning = curate_facts(ctx.llm, pb, refl, down)
                proposal = None
            else:
                cfg = ctx.config
                contents = None
                if cfg.curator_content == "grounded":  # the content chosen among statements built by code
                    contents = grounded_contents(task, state.get("feedback"), refl, ctx.store.policy.quality, pb)
                proposal = curate(ctx.llm, pb, refl, budget=cfg.playbook_budget, layout=cfg.layout,
                                  refused=refused, version=cfg.roles_version, turned_down=down,
                                  contents=contents).parsed  # fmt: skip
                assert proposal is not None
                ops, reasoning = list(proposal.to_delta(source).operations), proposal.reasoning
                # a lesson a reviewer turned down is not proposed again, whatever the curator says
                ops = [op for op in ops if not (isinstance(op, AddOp | UpdateOp) and same_lesson(op.content, down))]
        except LLMError as e:
            return {"error": f"curator: {e}", "failure": _kind(e), "refused": attempt}
        if ctx.config.supersede:  # one bullet per fact: a changed fact UPDATEs its bullet, a restated one TAGs it
            fb = state.get("feedback")
            replaces = fb.replaces if fb is not None else None
            fact_form = ctx.config.curation == "facts" or ctx.config.curator_content == "grounded"
            asked = task.input if ctx.config.wordings > 1 and fact_form else None
            ops, swapped, dups = consolidate(
                pb,
                ops,
                source,
                replaces=replaces,
                asked=asked,
                wordings=ctx.config.wordings,
                version=ctx.config.facts_version,
            )
            notes = [f"{s.bullet} {s.old!r} -> {s.new!r}" for s in swapped] + [f"again: {d.bullet}" for d in dups]
            if notes:
                reasoning = f"{reasoning} [{'; '.join(notes)}]"
        delta = Delta(operations=[*tags.operations, *ops], reasoning=reasoning, source=source)
        try:
            candidate = Candidate.build(pb, _base_version(state), delta, ctx.store.policy)
        except DeltaError as e:  # the quality gate (or the playbook's rules) refused the delta
            why = str(e)
            refused = (proposal, why) if proposal is not None else None
            continue
        return {"candidate": candidate, "refused": attempt, "repaired": attempt > 0}
    return {"error": f"curator: {why}", "failure": "gate", "refused": tries}


def refine_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Grow-and-refine on the candidate: merge near-duplicates and prune harmful bullets, in the same delta."""
    if ctx.refiner is None:
        return {}
    candidate = _candidate(state, ctx)
    extra = ctx.refiner.refine(candidate.playbook, source=candidate.delta.source)
    if not extra.operations:
        return {}
    try:
        return {"candidate": candidate.extend(extra, ctx.store.policy)}
    except DeltaError as e:
        return {"error": f"refine: {e}", "failure": "gate"}


def guard_node(state: LoopState, ctx: LoopContext) -> LoopState:
    if ctx.guard is None:
        return {}
    reason = ctx.guard(_base(state, ctx), _candidate(state, ctx).playbook)
    return {"error": f"guard: {reason}", "failure": "guard"} if reason else {}


def commit_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Commit the step's candidate, or with ``batch_size > 1`` hold it until the batch is complete and then commit
    the batch's deltas merged into one version (a delta that no longer applies after the others is dropped, with
    why).

    Every step passes here, failed ones too, so that the last step of a batch flushes it either way. The commit key
    is ``"<run id>:<first task index of the batch>"``: repeated after a crash, it finds the version it made.
    """
    index, size = state["index"], ctx.config.batch_size
    candidate = state.get("candidate")
    # an empty delta (nothing tagged, nothing curated) changes nothing: it is not worth a version
    step_ok = candidate is not None and not state.get("error") and bool(candidate.delta.operations)
    pending = [*(state.get("pending") or []), *([candidate] if step_ok and candidate else [])]
    if (index + 1) % size and index + 1 < len(ctx.tasks):
        return {"pending": pending, "committed": False}
    update: LoopState = {"pending": [], "committed": False}
    if not pending:
        return update
    base = pending[0].base_version
    if len(pending) == 1:
        delta, dropped = pending[0].delta, []
    else:
        merged = merge_deltas(ctx.playbook_at(base), [c.delta for c in pending], policy=ctx.store.policy)
        delta = merged.delta.model_copy(update={"source": Source(run_id=ctx.run_id, step=index + 1, role="batch")})
        dropped = merged.rejected
    if dropped:
        reason = "batch: " + "; ".join(f"delta {i + 1} of {len(pending)} dropped ({why})" for i, why in dropped)
        update["error"] = _also(state, reason)
        update["failure"] = state.get("failure") or "gate"  # the merge refused them, as the gate would
    if not delta.operations:  # every delta of the batch was dropped: nothing to commit
        return update
    try:
        _commit(ctx, delta, base, key=f"{ctx.run_id}:{index - index % size}")
    except (DeltaError, _Vetoed, StaleVersionError) as e:  # the head moved under us and the delta no longer fits
        kind: Failure = "guard" if isinstance(e, _Vetoed) else "commit"
        failure = update.get("failure") or state.get("failure") or kind
        return {**update, "error": _also({**state, **update}, f"commit: {e}"), "failure": failure}
    update["committed"] = step_ok and len(pending) - 1 not in {i for i, _ in dropped}  # this step's is the last
    return update


class _Vetoed(Exception):
    """The guard rejected a delta rebased onto a head another writer moved."""


def _commit(ctx: LoopContext, delta: Delta, base: int, *, key: str) -> VersionInfo:
    """Commit ``delta`` as computed on ``base``; if another writer moved the head, rebase it there (the guard
    judges the rebased version again) and retry."""
    for attempt in range(REBASES + 1):
        try:
            return ctx.store.commit(
                ctx.playbook,
                delta,
                namespace=ctx.namespace,
                expected_version=base,
                key=key,
                author=f"ace run {ctx.run_id}",
                message=delta.reasoning,
            )
        except StaleVersionError as e:
            if attempt == REBASES:
                raise
            base = e.actual
            if ctx.guard is not None:
                head = ctx.playbook_at(base)
                reason = ctx.guard(head, Candidate.build(head, base, delta, ctx.store.policy).playbook)
                if reason:
                    raise _Vetoed(f"guard, after rebasing onto v{base}: {reason}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def record_node(state: LoopState, ctx: LoopContext) -> LoopState:
    """Close the step: one record, written to memory and the trajectory, then reset the per-task fields."""
    task = ctx.task(state)
    fb, error, candidate = state.get("feedback"), state.get("error"), state.get("candidate")
    correct = state.get("first_correct")
    if correct is None and error and not state.get("round") and task.target is not None:
        correct = False  # no answer could be produced: scored as a wrong answer, as an evaluation scores it
    record = StepRecord(
        index=state["index"],
        task_id=task.id,
        correct=correct,
        final_correct=fb.correct if fb else None,
        score=fb.score if fb else None,
        feedback=fb.message if fb else None,
        rounds=state.get("round", 0),
        error=error,
        failure=state.get("failure") if error else None,
        version=ctx.head_version(),
        committed=bool(state.get("committed")),
        pending=bool(state.get("pending")),
        delta=candidate.delta if candidate is not None and not error and candidate.delta.operations else None,
        refused=state.get("refused") or 0,
        repaired=bool(state.get("repaired")),
    )
    update: LoopState = {}
    if ctx.memory is not None and ctx.config.learn:
        update["buffer"], problems = _remember(state, ctx, task, record)
        record = record.model_copy(update={"memory": problems})
    if ctx.trajectory is not None:
        ctx.trajectory.step(record, task)
    if ctx.on_step:
        ctx.on_step(record)
    return {
        **update,
        "results": [record],
        "index": state["index"] + 1,
        "round": 0,
        "base_version": None,
        "first_correct": None,
        "answer": None,
        "feedback": None,
        "reflection": None,
        "candidate": None,
        "refused": 0,
        "repaired": False,
        "committed": None,
        "error": None,
        "failure": None,
    }


def _remember(
    state: LoopState, ctx: LoopContext, task: Task, record: StepRecord
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write the finished step to the memory tiers: an episode, facts from its reflection, a short-term entry.
    Runs after the commit, so a memory failure never touches the playbook; it is noted in the step's record."""
    assert ctx.memory is not None
    answer, fb, refl = state.get("answer"), state.get("feedback"), state.get("reflection")
    outcome: Outcome = "unknown" if fb is None or fb.correct is None else "success" if fb.correct else "failure"
    lessons = refl.lessons if refl is not None else ""
    if answer is not None:
        summary = f"answered {answer.final_answer!r}; {fb.message if fb else ''}"
    else:
        summary = f"failed: {record.error}"
    episode = Episode(
        id=f"{ctx.run_id}:{state['index']}",
        task=task.input,
        summary=summary,
        outcome=outcome,
        reflection=lessons,
        playbook=ctx.playbook,
        version=record.version,
        task_id=task.id,
        run_id=ctx.run_id,
    )
    buffer = ctx.memory.buffer(state.get("buffer"))
    try:
        problems = ctx.memory.remember(episode, step=state["index"] + 1, llm=ctx.llm, lessons=lessons, buffer=buffer)
    except Exception as e:
        problems = [f"memory: {type(e).__name__}: {e}"]
    return (buffer.to_list() if buffer is not None else []), problems


# -- small readers of the state ------------------------------------------------------------------------------------
def _answer(state: LoopState) -> GeneratorOutput:
    answer = state.get("answer")
    assert answer is not None, "this node runs after generate"
    return answer


def _base_version(state: LoopState) -> int:
    base = state.get("base_version")
    assert base is not None, "this node runs after generate"
    return base


def _base(state: LoopState, ctx: LoopContext) -> Playbook:
    return ctx.playbook_at(_base_version(state))


def _candidate(state: LoopState, ctx: LoopContext) -> Candidate:
    """The step's candidate with its applied result (rebuilt once after a resume from a checkpoint)."""
    candidate = state.get("candidate")
    assert candidate is not None, "this node runs after curate"
    return candidate.on(_base(state, ctx), ctx.store.policy)


def _kind(e: LLMError) -> Failure:
    """``"provider"`` for a provider that failed (unreachable, timed out, 5xx, 429, refused the request), ``"llm"``
    for the rest of the LLM layer's failures (replies that never validated, a spent budget, a cassette miss)."""
    return "provider" if isinstance(e, ProviderError) else "llm"


def _also(state: LoopState, reason: str) -> str:
    return f"{state['error']}; {reason}" if state.get("error") else reason


__all__ = [
    "commit_node",
    "curate_node",
    "evaluate_node",
    "generate_node",
    "guard_node",
    "record_node",
    "refine_node",
    "reflect_node",
]
