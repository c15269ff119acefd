"""Use an agent you already have as the ACE Generator.

The loop asks its generator for ``GeneratorOutput(reasoning, bullet_ids, final_answer)`` given a task, the
playbook and (on a retry) what the reflector learned. Two adapters turn existing agents into one:

- :func:`wrap_callable` for a plain function ``agent(question, playbook_text) -> answer``;
- :func:`wrap_graph` for a compiled LangGraph graph (anything with ``invoke(input) -> state``): by default it is
  invoked with ``{"messages": [system playbook, user question]}`` (the shape of LangGraph's prebuilt agents) and
  the answer is the content of the last message.

The answer may be a string, a mapping with ``final_answer`` (and optionally ``reasoning`` / ``bullet_ids``), or a
``GeneratorOutput``. When the agent does not list the bullets it used, its citations are the playbook ids that
appear in its answer or reasoning text (the playbook is rendered with ids, and the instructions ask to cite them
in brackets), so the reflector still tags only bullets the agent really referred to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ace.errors import InvalidInput, WrongType
from ace.loop.roles import GeneratorOutput
from ace.playbook import Playbook, render
from ace.tasks import Task

CITE_INSTRUCTIONS = (
    "Use the playbook below where it helps. When you use a bullet, cite its id in brackets, e.g. [fin-00001]."
)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # the shape of a bullet id (ace.playbook.model.ID_RE)


def citations(playbook: Playbook, *texts: str) -> list[str]:
    """Playbook ids mentioned in ``texts``, in order of first mention, once each; unknown ids are ignored."""
    seen: dict[str, None] = {}
    for text in texts:
        for m in _TOKEN.finditer(text or ""):
            token = m.group(0).rstrip(".:-")  # "see sai-00001." ends a sentence
            if token in playbook:
                seen.setdefault(token, None)
    return list(seen)


def to_output(playbook: Playbook, answer: Any) -> GeneratorOutput:
    """An agent's answer (text, mapping or GeneratorOutput) as a GeneratorOutput with citations filled in."""
    if isinstance(answer, GeneratorOutput):
        return answer
    if isinstance(answer, Mapping):
        final, reasoning = str(answer.get("final_answer", "")), str(answer.get("reasoning", ""))
        ids = answer.get("bullet_ids")
        if not final:
            raise InvalidInput(f"the agent's answer has no 'final_answer' (keys: {sorted(answer)})")
    elif isinstance(answer, str):
        final, reasoning, ids = answer, "", None
    else:
        raise WrongType(f"an agent must answer with a string, a mapping or a GeneratorOutput, not {type(answer)}")
    cited = [i for i in ids if i in playbook] if ids is not None else citations(playbook, reasoning, final)
    return GeneratorOutput(reasoning=reasoning, bullet_ids=cited, final_answer=final)


def playbook_prompt(playbook: Playbook, budget: int | None, hint: str | None = None) -> str:
    """The system text a wrapped agent receives: instructions to cite, the playbook, and a retry hint if any."""
    text = f"{CITE_INSTRUCTIONS}\n\nPLAYBOOK:\n{render(playbook, budget=budget) or '(empty)'}"
    if hint:
        text += f"\n\nA PREVIOUS ATTEMPT WAS WRONG. What was learned:\n{hint}"
    return text


def wrap_callable(agent: Callable[[str, str], Any], *, budget: int | None = 2000) -> Callable[..., GeneratorOutput]:
    """A generator from ``agent(question, playbook_text) -> answer``."""

    def generator(task: Task, playbook: Playbook, hint: str | None) -> GeneratorOutput:
        return to_output(playbook, agent(task.input, playbook_prompt(playbook, budget, hint)))

    return generator


class Invocable(Protocol):
    def invoke(self, input: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def _messages_input(question: str, system: str) -> dict[str, Any]:
    return {"messages": [("system", system), ("user", question)]}


def _content(message: Any) -> str:
    content = getattr(message, "content", None)
    if content is None and isinstance(message, Mapping):
        content = message.get("content")
    if content is None and isinstance(message, tuple):
        content = message[-1]
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") if isinstance(b, Mapping) else str(b) for b in content)
    return "" if content is None else str(content)


def _role(message: Any) -> str:
    role = getattr(message, "type", None) or getattr(message, "role", None)
    if role is None and isinstance(message, Mapping):
        role = message.get("role")
    if role is None and isinstance(message, tuple):
        role = message[0]
    return str(role)


def _last_message(state: Any) -> Any:
    """The answer in a graph's final state: its ``final_answer`` if it has one, else the last message; the
    reasoning is what the agent said before it (assistant and tool messages), where its citations are found."""
    if isinstance(state, Mapping) and "final_answer" in state:
        return state
    messages = state.get("messages") if isinstance(state, Mapping) else None
    if not messages:
        raise InvalidInput("the graph's final state has neither 'final_answer' nor 'messages'")
    said = [_content(m) for m in messages[:-1] if _role(m) in ("assistant", "ai", "tool")]
    return {"final_answer": _content(messages[-1]), "reasoning": "\n".join(said)}


def wrap_graph(
    graph: Invocable,
    *,
    budget: int | None = 2000,
    make_input: Callable[[str, str], Any] = _messages_input,
    read_output: Callable[[Any], Any] = _last_message,
    config: dict[str, Any] | None = None,
) -> Callable[..., GeneratorOutput]:
    """A generator from a compiled LangGraph graph (or any object with ``invoke``).

    ``make_input(question, system_text)`` builds the graph's input (default: a ``messages`` list);
    ``read_output(final_state)`` extracts the answer (default: ``final_answer`` if the state has one, else the last
    message's content).
    """

    def generator(task: Task, playbook: Playbook, hint: str | None) -> GeneratorOutput:
        state = graph.invoke(make_input(task.input, playbook_prompt(playbook, budget, hint)), config)
        return to_output(playbook, read_output(state))

    return generator


__all__ = ["CITE_INSTRUCTIONS", "citations", "playbook_prompt", "to_output", "wrap_callable", "wrap_graph"]
