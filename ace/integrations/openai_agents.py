"""ACE for the OpenAI Agents SDK (the ``agents`` extra): the playbook in an agent's instructions, and each finished
run sent as an episode to learn from.

::

    from agents import Agent, Runner
    from ace.integrations.openai_agents import AceHooks

    ace = AceHooks(store, "support", namespace="team-a", outcome=lambda output: {"success": "refund" in output})
    agent = Agent(name="support", instructions=ace.instructions("You answer billing questions."), model=...)
    result = await Runner.run(agent, "Can I get my money back?", hooks=ace)
    ace.last_episode   # queued: a worker (ace serve / ace worker) reflects, curates and commits

:meth:`AceHooks.instructions` makes dynamic instructions: your own, then the playbook's head rendered under
``budget`` (read at every model call, so a run sees what was learned before it), with the run's latest user input
as the read's query (half the budget then holds the bullets most relevant to it; ``query=False``: not). The hooks
keep the run's transcript as the model saw it (``on_llm_start`` / ``on_llm_end``: user input, assistant messages,
tool calls and their outputs) and, when the run ends (``on_agent_end``), send it with the outcome to the episode
queue: the ``outcome`` callable judges the final output, or call :meth:`AceHooks.report` yourself with what you
know (a test result, a user's rating). Episodes are the format of ``ace learn``; tool calls become ``tool_calls``
and ``tool`` messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents import Agent, RunContextWrapper, RunHooks

from ace.errors import UsageError
from ace.playbook.render import Layout
from ace.service.auth import Grant
from ace.service.core import MAX_QUERY_CHARS, PROMPT_BUDGET, PROMPT_LAYOUT, Service, service_of
from ace.service.queue import Episode, EpisodeQueue
from ace.store import PlaybookStore

Outcome = Mapping[str, Any] | bool


@dataclass
class _Run:
    system: str | None = None
    items: list[Any] = field(default_factory=list)
    output: list[Any] = field(default_factory=list)
    version: int | None = None


class AceHooks(RunHooks[Any]):
    """Run hooks that carry the playbook into an agent and the finished run back as an episode."""

    def __init__(
        self,
        store: PlaybookStore | Service,
        playbook: str,
        *,
        namespace: str = "default",
        budget: int | None = PROMPT_BUDGET,
        layout: Layout = PROMPT_LAYOUT,
        queue: EpisodeQueue | None = None,
        outcome: Callable[[Any], Outcome] | None = None,
        task: str | None = None,
        author: str = "openai-agents",
        channel: str | None = None,
        query: bool = True,
    ) -> None:
        self.service = service_of(store, queue=queue)
        self.store, self.playbook, self.namespace = self.service.store, playbook, namespace
        self.grant = Grant.local(author, [namespace])
        self.budget, self.layout, self.channel = budget, layout, channel  # channel None: serving
        self.outcome, self.task, self.query = outcome, task, query
        self._runs: dict[int, _Run] = {}
        self.last_run: dict[str, Any] | None = None  # the last finished run's episode log, sent or not
        self.last_episode: Episode | None = None

    # -- the playbook in the instructions -----------------------------------------------------------------
    def instructions(self, base: str = "") -> Callable[[RunContextWrapper[Any], Agent[Any]], Coroutine[Any, Any, str]]:
        """Dynamic instructions for ``Agent(instructions=...)``: ``base``, then the current playbook (read in the
        service's read threads: the SDK's event loop never waits on the database)."""

        async def build(context: RunContextWrapper[Any], agent: Agent[Any]) -> str:
            asked = latest_input(getattr(context, "turn_input", None) or []) if self.query else None
            options = {"budget": self.budget, "layout": self.layout, "channel": self.channel, "query": asked}
            got = await self.service.run(
                "read", self.service.prompt, self.grant, self.namespace, self.playbook, **options
            )
            self._run(context).version = got.version
            head = f"{base.rstrip()}\n\n" if base.strip() else ""
            return head + got.text

        return build

    def _run(self, context: RunContextWrapper[Any]) -> _Run:
        return self._runs.setdefault(id(context), _Run())

    # -- the run's transcript -----------------------------------------------------------------------------
    async def on_llm_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], system_prompt: str | None, input_items: list[Any]
    ) -> None:
        run = self._run(context)
        run.system, run.items, run.output = system_prompt, list(input_items), []

    async def on_llm_end(self, context: RunContextWrapper[Any], agent: Agent[Any], response: Any) -> None:
        self._run(context).output = list(response.output)

    async def on_agent_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        run = self._runs.pop(id(context), None)
        if run is None:  # the SDK may hand the end hook another wrapper of the same run
            run = self._runs.pop(next(iter(self._runs))) if len(self._runs) == 1 else _Run()
        messages = chat_messages([*run.items, *run.output])
        if not any(m["role"] == "assistant" for m in messages):  # the run never reached the model
            return
        final = output if isinstance(output, str) else json.dumps(output, default=str)
        if not messages or messages[-1].get("content") != final:
            messages.append({"role": "assistant", "content": final})
        self.last_run = {"messages": messages, **({"task": self.task} if self.task else {})}
        if run.version is not None:
            self.last_run["playbook_version"] = run.version
        if self.outcome is not None:
            await self.areport(self.outcome(output))

    def report(self, outcome: Outcome, *, episode_id: str | None = None, target: str | None = None) -> Episode:
        """Send the last finished run with ``outcome`` (``{"success", "score", "message"}`` or a bool); from async
        code, ``await areport(...)``."""
        log = self._episode(outcome, episode_id, target)
        self.last_episode = self.service.submit_episode(self.grant, self.namespace, self.playbook, log)[0]
        return self.last_episode

    async def areport(self, outcome: Outcome, *, episode_id: str | None = None, target: str | None = None) -> Episode:
        """:meth:`report` in the service's write threads (the end hook uses it: the event loop never waits)."""
        log = self._episode(outcome, episode_id, target)
        submit = self.service.submit_episode
        sent, _ = await self.service.run("write", submit, self.grant, self.namespace, self.playbook, log)
        self.last_episode = sent
        return self.last_episode

    def _episode(self, outcome: Outcome, episode_id: str | None, target: str | None) -> dict[str, Any]:
        if self.last_run is None:
            raise UsageError("no finished run to report: pass hooks=this to Runner.run first")
        log = {**self.last_run, "outcome": outcome}
        for key, value in (("id", episode_id), ("target", target)):
            if value is not None:
                log[key] = value
        return log


def _plain(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else {}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(_plain(c).get("text") or _plain(c).get("refusal") or "") for c in content)
    return "" if content is None else str(content)


def latest_input(items: Sequence[Any]) -> str | None:
    """The text of the latest user message among a run's input items (the SDK sets them on the context before it
    asks for the instructions), its first :data:`~ace.service.core.MAX_QUERY_CHARS` characters; None without one."""
    for raw in reversed(items):
        item = _plain(raw)
        if item.get("type") in (None, "message") and item.get("role") == "user":
            text = _text(item.get("content"))
            return text[:MAX_QUERY_CHARS] if text.strip() else None
    return None


def chat_messages(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Responses-API items (what the Agents SDK passes around) as OpenAI chat messages, the format of
    ``ace learn``: user / system / assistant messages, function calls as ``tool_calls``, their outputs as ``tool``
    messages. Reasoning and other items are left out."""
    out: list[dict[str, Any]] = []
    for raw in items:
        item = _plain(raw)
        kind = item.get("type")
        if kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or f"call-{len(out)}",
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or ""},
            }
            if out and out[-1]["role"] == "assistant" and not out[-1].get("content"):
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id", ""),
                        "content": output if isinstance(output, str) else json.dumps(output, default=str)})  # fmt: skip
        elif kind in (None, "message") and item.get("role") in ("user", "system", "developer", "assistant"):
            role = "system" if item["role"] == "developer" else item["role"]
            text = _text(item.get("content"))
            if text:
                out.append({"role": role, "content": text})
    return out


__all__ = ["AceHooks", "chat_messages", "latest_input"]
