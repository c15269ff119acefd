"""Learn a playbook offline from the logs of an agent you already run: OpenAI-style chat messages with tool calls.

A log file is JSONL (or one JSON array), one conversation per item::

    {"id": "episode-7",                                   # optional (default: <file stem>:<line>)
     "task": "Cook the meal in the cookbook",             # optional (default: the first user message)
     "messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c1", "type": "function",
                                   "function": {"name": "act", "arguments": "{\\"command\\": \\"open fridge\\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "You open the fridge."},
                  {"role": "assistant", "content": "Done."}],
     "outcome": {"success": true, "score": 1.0, "message": "won in 5 moves"},   # success: or correct / won
     "target": "..."}                                     # optional ground truth

Content may be a string or a list of content blocks (``{"type": "text", "text": ...}``); the legacy
``function_call`` field is read like a single tool call. Nothing else is required, and unknown fields are ignored.

Each conversation becomes one step of the ACE loop with nothing generated: the logged transcript is the
generator's reasoning (cut in the middle to ``max_chars``: the start and the end of a long episode are kept), the
last assistant message (or the last tool call) its answer, the playbook ids it mentions its citations, and the
logged outcome the feedback. The reflector and curator then work as in any run — the step is committed, guarded,
checkpointed and written to a trajectory like any other, so ``ace replay`` verifies it and
``ace replay --provider`` re-executes it (the log travels in each task's metadata).

(Learning *from* logs: this module has nothing to do with Python's ``logging``.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from ace.config import UNSET, legacy_config
from ace.errors import InputFileError, InvalidInput, WrongType, read_input
from ace.llm import LLM
from ace.loop import Guard, LoopConfig, RunResult, StepRecord
from ace.loop.agents import citations
from ace.loop.refine import Refiner
from ace.loop.registry import register_evaluator, register_generator
from ace.loop.roles import GeneratorOutput
from ace.memory import Memory
from ace.playbook import Playbook
from ace.runs.factory import RunSetup, start
from ace.store import PlaybookStore
from ace.tasks import Feedback, Task

MAX_CHARS = 6000  # transcript characters shown to the reflector (the local model has a 4k-token window)


class LogError(InputFileError):
    """A log that cannot be read, with the file and line."""


@dataclass(frozen=True)
class Turn:
    role: str  # "user", "assistant", "tool", "system"
    text: str


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, Mapping) else str(b) for b in content)
    raise WrongType(f"content must be a string or a list of blocks, not {type(content).__name__}")


def _call(call: Mapping[str, Any]) -> str:
    fn = call.get("function", call)  # {"function": {"name", "arguments"}} or legacy {"name", "arguments"}
    name, args = fn.get("name"), fn.get("arguments", "")
    if not isinstance(name, str) or not name:
        raise InvalidInput("a tool call without a function name")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return f"{name}({args})"  # arguments that are not JSON are shown as they are
    if isinstance(args, Mapping):
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    return f"{name}({args!r})"


def turns(messages: list[Any]) -> list[Turn]:
    """The conversation as turns; a tool call is an assistant turn ``→ name(arg=value)``."""
    out: list[Turn] = []
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise InvalidInput(f"a message must be an object with a 'role', got {str(m)[:80]!r}")
        role = m["role"]
        if text := _text(m.get("content")).strip():
            out.append(Turn(role, text))
        calls = list(m.get("tool_calls") or [])
        if m.get("function_call"):
            calls.append(m["function_call"])
        out.extend(Turn("assistant", f"→ {_call(c)}") for c in calls)
    return out


def transcript(ts: list[Turn], max_chars: int = MAX_CHARS) -> str:
    """The agent's side of the conversation (assistant and tool turns), cut in the middle to ``max_chars``."""
    lines = [
        f"{'observation' if t.role == 'tool' else 'agent'}: {t.text}" for t in ts if t.role in ("assistant", "tool")
    ]
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    head, tail = text[: max_chars // 3], text[-(max_chars - max_chars // 3) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters of the episode left out ...]\n{tail}"


def _outcome(raw: Any) -> Feedback:
    if raw is None:
        return Feedback(correct=None, message="no outcome logged")
    if isinstance(raw, bool):
        return Feedback(correct=raw, score=float(raw))
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"'outcome' must be an object or a boolean, not {type(raw).__name__}")
    correct = next((raw[k] for k in ("success", "correct", "won") if k in raw), None)
    if correct is not None and not isinstance(correct, bool):
        raise InvalidInput(f"the outcome's success must be true or false, not {correct!r}")
    score = raw.get("score")
    return Feedback(
        correct=correct,
        score=None if score is None else float(score),
        message=str(raw.get("message") or raw.get("feedback") or ""),
    )


def to_task(log: Mapping[str, Any], default_id: str, *, max_chars: int = MAX_CHARS) -> Task:
    """A log as a task whose metadata carries what the loop needs (transcript, answer, outcome)."""
    messages = log.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("no 'messages' list")
    ts = turns(messages)
    question = log.get("task") or next((t.text for t in ts if t.role == "user"), None)
    if not question:
        raise InvalidInput("no 'task' and no user message to take it from")
    agent = [t for t in ts if t.role == "assistant"]
    if not agent:
        raise InvalidInput("the agent never spoke (no assistant message or tool call)")
    final = agent[-1].text.removeprefix("→ ")
    fb = _outcome(log.get("outcome"))
    target = log.get("target")
    return Task(
        id=str(log.get("id") or default_id),
        input=str(question),
        target=None if target is None else str(target),
        metadata={
            "kind": "log",
            "transcript": transcript(ts, max_chars),
            "final": final,
            "outcome": fb.model_dump_json(),
        },
    )


def load_logs(path: str | Path, *, limit: int | None = None, max_chars: int = MAX_CHARS) -> list[Task]:
    """The conversations of a log file (see the module doc) as tasks; a bad one is a :class:`LogError` naming it."""
    p = Path(path)
    raw = read_input(p, what="log file")
    if raw.lstrip().startswith("["):
        try:
            items = list(enumerate(json.loads(raw), start=1))
        except json.JSONDecodeError as e:
            raise LogError(f"{p}: not a JSON array ({e})") from None
        where = "item"
    else:
        items = []
        for n, line in enumerate(raw.split("\n"), start=1):  # not splitlines: U+2028 in a text is text
            if line.strip():
                try:
                    items.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise LogError(f"{p}, line {n}: not JSON ({e})") from None
        where = "line"
    tasks: list[Task] = []
    for n, item in items:
        try:
            if not isinstance(item, Mapping):
                raise InvalidInput("expected an object with 'messages'")
            tasks.append(to_task(item, f"{p.stem}:{n}", max_chars=max_chars))
        except (ValueError, TypeError) as e:
            raise LogError(f"{p}, {where} {n}: {e}") from None
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise LogError(f"{p}: no conversations")
    return tasks


class LoggedAgent:
    """The generator of a log replay: answers each task with what the log says the agent did."""

    spec: ClassVar[dict[str, Any]] = {"name": "logged"}

    def __call__(self, task: Task, playbook: Playbook, hint: str | None) -> GeneratorOutput:
        if "transcript" not in task.metadata:
            raise InvalidInput(f"task {task.id} is not a logged conversation (see ace.runs.from_logs.load_logs)")
        reasoning, final = task.metadata["transcript"], task.metadata["final"]
        return GeneratorOutput(
            reasoning=reasoning, bullet_ids=citations(playbook, reasoning, final), final_answer=final
        )


class LoggedOutcome:
    """The evaluator of a log replay: the logged outcome (the ground truth, when the log has one, as target)."""

    spec: ClassVar[dict[str, Any]] = {"name": "logged"}

    def __call__(self, task: Task, answer: str) -> Feedback:
        fb = Feedback.model_validate_json(task.metadata["outcome"])
        return fb.model_copy(update={"target": task.target})


logged_outcome = LoggedOutcome()


def learn(
    tasks: list[Task],
    llm: LLM,
    store: PlaybookStore,
    playbook: str,
    *,
    run_id: str,
    workdir: str | Path,
    namespace: str = "default",
    config: LoopConfig | None = None,
    refiner: Refiner | None = None,
    guard: Guard | None = None,
    memory: Memory | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    batch_size: int = UNSET,
    playbook_budget: int | None = UNSET,
    curation: Literal["free", "facts"] = UNSET,
) -> RunResult:
    """Reflect on and curate from logged conversations (:func:`load_logs`) into ``playbook`` (created empty if it
    does not exist), with the loop's options ``config`` (``max_rounds`` is 1: a logged answer is not retried).
    Resumable by ``run_id``; the trajectory is ``<workdir>/<run_id>.trajectory.jsonl``. ``batch_size``,
    ``playbook_budget`` and ``curation`` are the deprecated way to pass those options.

    A step that could not learn (the provider failed: see :attr:`StepRecord.could_not_learn`) says so in its
    record (``error``, ``failure``); :func:`ace.runs.runners.learning_summary` sums them up for the run. Calling
    again with the same ``run_id`` after the run finished tries those steps once more, as a follow-up run
    ``<run_id>.retry-<n>`` over their conversations only (the steps that learned are not learned twice); the
    result has every conversation's latest record."""
    cfg = legacy_config(config, "learn", batch_size=batch_size, playbook_budget=playbook_budget, curation=curation)
    store.ensure(playbook, namespace=namespace, author=f"ace learn {run_id}")
    setup = RunSetup(
        llm=llm,
        store=store,
        playbook=playbook,
        namespace=namespace,
        evaluator=logged_outcome,
        config=replace(cfg, max_rounds=1),
        refiner=refiner,
        guard=guard,
        generator=LoggedAgent(),
        memory=memory,
        on_step=on_step,
    )
    result = start(setup, tasks, run_id=run_id, workdir=workdir)
    records, resumed, n = list(result.results), result.resumed, 0
    # a finished run called again: its steps that could not learn are tried again, in a run of their own (n),
    # and the runs after it until one that ran now (not resumed) or nothing is left to learn
    while resumed and (todo := [k for k, r in enumerate(records) if r.could_not_learn]):
        n += 1
        again = start(setup, [tasks[records[k].index] for k in todo], run_id=f"{run_id}.retry-{n}", workdir=workdir)
        for k, r in zip(todo, again.results, strict=False):
            records[k] = r.model_copy(update={"index": records[k].index})
        resumed = again.resumed
    return RunResult(result.run_id, records, result.resumed)


def register() -> None:
    """Make the ``logged`` evaluator and generator rebuildable by name (an ``ace.plugins`` entry point)."""
    register_evaluator("logged", LoggedOutcome)
    register_generator("logged", lambda _llm: LoggedAgent())  # nothing is generated: no model needed


register()

__all__ = [
    "MAX_CHARS",
    "LogError",
    "LoggedAgent",
    "LoggedOutcome",
    "Turn",
    "learn",
    "load_logs",
    "logged_outcome",
    "register",
    "to_task",
    "transcript",
    "turns",
]
