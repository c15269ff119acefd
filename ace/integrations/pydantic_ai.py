"""ACE for Pydantic AI (the ``pydantic-ai`` extra): a capability that puts the playbook into an agent's
instructions and sends each finished run as an episode to learn from.

::

    from pydantic_ai import Agent
    from ace.integrations.pydantic_ai import AcePlaybook

    ace = AcePlaybook(store, "support", namespace="team-a", outcome=lambda output: {"success": "refund" in output})
    agent = Agent("openai:gpt-4o-mini", instructions="You answer billing questions.", capabilities=[ace])
    result = agent.run_sync("Can I get my money back?")
    ace.last_episode   # queued: a worker (ace serve / ace worker) reflects, curates and commits

:class:`AcePlaybook` is a Pydantic AI *capability* (``Agent(capabilities=[...])``): its instructions are what
:meth:`Service.prompt <ace.service.core.Service.prompt>` gives every other front end (the serving channel under
``budget`` tokens, with the run's latest user message as the read's query; ``query=False``: without one), read
once per run in the service's read threads, so a run sees one version and the event loop never waits on the
database. Your own ``instructions=`` come first, as Pydantic AI joins them. When the run ends (``after_run``), the
run's messages (user prompts, assistant text, tool calls and their returns, retries; the instructions themselves
are not part of it) go to the episode queue in the format of ``ace learn``, with the version the run read and the
outcome: ``outcome(output)`` when given, none otherwise; ``send=False`` keeps the run (:attr:`last_run`) for you to
send with :meth:`AcePlaybook.report` once you know how it went (a test result, a user's rating).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_ai import AgentRunResult, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    BaseToolCallPart,
    BaseToolReturnPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    UserPromptPart,
)

from ace.errors import UsageError
from ace.playbook.render import Layout
from ace.runs.sessions import redact
from ace.service.auth import Grant
from ace.service.core import MAX_QUERY_CHARS, PROMPT_BUDGET, PROMPT_LAYOUT, Service, service_of
from ace.service.queue import Episode, EpisodeQueue
from ace.store import PlaybookStore

Outcome = Mapping[str, Any] | bool


@dataclass(frozen=True)
class _Read:
    version: int
    text: str


class AcePlaybook(AbstractCapability[Any]):
    """A capability that carries the playbook into an agent's instructions and each finished run back as an
    episode."""

    def __init__(
        self,
        store: PlaybookStore | Service,
        playbook: str,
        *,
        namespace: str = "default",
        budget: int | None = PROMPT_BUDGET,
        layout: Layout = PROMPT_LAYOUT,
        queue: EpisodeQueue | None = None,
        outcome: Callable[[Any], Outcome | None] | None = None,
        send: bool = True,
        task: str | None = None,
        author: str = "pydantic-ai",
        channel: str | None = None,
        query: bool = True,
    ) -> None:
        self.id, self.description, self.defer_loading = None, None, False  # AbstractCapability's fields
        self.service = service_of(store, queue=queue)
        self.playbook, self.namespace = playbook, namespace
        self.grant = Grant.local(author, [namespace])
        self.budget, self.layout, self.channel, self.query = budget, layout, channel, query  # channel None: serving
        self.outcome, self.send, self.task = outcome, send, task
        self._reads: dict[str, _Read] = {}  # by run id: what each run in flight read
        self.last_run: dict[str, Any] | None = None  # the last finished run's episode log, sent or not
        self.last_episode: Episode | None = None

    # -- the playbook in the instructions -----------------------------------------------------------------
    def get_instructions(self) -> Callable[[RunContext[Any]], Any]:
        async def playbook(ctx: RunContext[Any]) -> str:
            got = self._reads.get(ctx.run_id or "")
            if got is None:
                asked = latest_prompt(ctx.prompt, ctx.messages) if self.query else None
                options = {"budget": self.budget, "layout": self.layout, "channel": self.channel,
                           "query": asked[:MAX_QUERY_CHARS] if asked else None}  # fmt: skip
                read = await self.service.run(
                    "read", self.service.prompt, self.grant, self.namespace, self.playbook, **options
                )
                got = self._reads[ctx.run_id or ""] = _Read(read.version, read.text)
            return got.text

        return playbook

    # -- the run as an episode ------------------------------------------------------------------------------
    async def after_run(self, ctx: RunContext[Any], *, result: AgentRunResult[Any]) -> AgentRunResult[Any]:
        read = self._reads.pop(ctx.run_id or "", None)
        messages = chat_messages(result.all_messages())
        if not any(m["role"] == "assistant" for m in messages):  # the run never reached the model
            return result
        log: dict[str, Any] = {"messages": _redacted(messages), **({"task": self.task} if self.task else {})}
        if read is not None:
            log["playbook_version"] = read.version
        self.last_run = log
        if not self.send:
            return result
        try:
            outcome = self.outcome(result.output) if self.outcome is not None else None
        except Exception as e:  # the agent's result is not lost for it: the run stays in last_run, not sent
            warnings.warn(
                f"the outcome callback raised {type(e).__name__}: {e}; the run was not sent to ACE (kept in last_run: "
                "send it with report())",
                stacklevel=2,
            )
            return result
        await self.areport(outcome)
        return result

    async def on_run_error(self, ctx: RunContext[Any], *, error: BaseException) -> AgentRunResult[Any]:
        self._reads.pop(ctx.run_id or "", None)  # a failed run is no episode; what it read is let go
        raise error

    def report(self, outcome: Outcome | None, *, episode_id: str | None = None, target: str | None = None) -> Episode:
        """Send the last finished run with ``outcome`` (``{"success", "score", "message"}``, a bool, or None); from
        async code, ``await areport(...)``."""
        log = self._episode(outcome, episode_id, target)
        self.last_episode = self.service.submit_episode(self.grant, self.namespace, self.playbook, log)[0]
        return self.last_episode

    async def areport(
        self, outcome: Outcome | None, *, episode_id: str | None = None, target: str | None = None
    ) -> Episode:
        """:meth:`report` in the service's write threads (the end of a run uses it: the event loop never waits)."""
        log = self._episode(outcome, episode_id, target)
        submit = self.service.submit_episode
        sent, _ = await self.service.run("write", submit, self.grant, self.namespace, self.playbook, log)
        self.last_episode = sent
        return sent

    def _episode(self, outcome: Outcome | None, episode_id: str | None, target: str | None) -> dict[str, Any]:
        if self.last_run is None:
            raise UsageError("no finished run to report: run an agent with capabilities=[this] first")
        log = dict(self.last_run)
        if outcome is not None:
            log["outcome"] = outcome
        for key, value in (("id", episode_id), ("target", target)):
            if value is not None:
                log[key] = value
        return log


def _redacted(value: Any) -> Any:
    """``value`` (an episode's messages) with every text redacted as ``ace learn`` redacts coding-agent sessions
    (:func:`ace.runs.sessions.redact`: keys with a known shape, secret names' values, passwords in URLs and flags)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _content(content: Any) -> str:
    """A user prompt's content (a string, or text and media parts) as text; media as ``[image]``, ``[file]``."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for c in content:
            if isinstance(c, str):
                parts.append(c)
            else:
                kind = str(getattr(c, "kind", "") or type(c).__name__)
                parts.append("[image]" if "image" in kind.lower() else f"[{kind}]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def latest_prompt(prompt: Any, messages: Sequence[ModelMessage]) -> str | None:
    """The run's user prompt, or the latest user message of its history (a run continued from one)."""
    if prompt is not None and (text := _content(prompt).strip()):
        return text
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in reversed(message.parts):
                if isinstance(part, UserPromptPart) and (text := _content(part.content).strip()):
                    return text
    return None


def chat_messages(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    """Pydantic AI's messages (``result.all_messages()``) as OpenAI chat messages, the format of ``ace learn``:
    system prompts and user prompts, assistant text with its tool calls as ``tool_calls``, tool returns and retry
    prompts of a tool as ``tool`` messages (a retry of the output as a user message). Thinking and the run's
    instructions are left out."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    out.append({"role": "system", "content": part.content})
                elif isinstance(part, UserPromptPart):
                    if text := _content(part.content):
                        out.append({"role": "user", "content": text})
                elif isinstance(part, BaseToolReturnPart):
                    out.append({"role": "tool", "tool_call_id": part.tool_call_id,
                                "content": part.model_response_str()})  # fmt: skip
                elif isinstance(part, RetryPromptPart):
                    said = part.model_response()
                    if part.tool_name and part.tool_call_id:
                        out.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": said})
                    else:
                        out.append({"role": "user", "content": said})
        elif isinstance(message, ModelResponse):
            text = "\n".join(p.content for p in message.parts if isinstance(p, TextPart) and p.content)
            calls = [
                {"id": p.tool_call_id, "type": "function",
                 "function": {"name": p.tool_name, "arguments": _arguments(p)}}
                for p in message.parts
                if isinstance(p, BaseToolCallPart)
            ]  # fmt: skip
            if text or calls:
                out.append({"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})})
    return out


def _arguments(part: BaseToolCallPart) -> str:
    try:
        return part.args_as_json_str()
    except (TypeError, ValueError):  # arguments a model sent that are not JSON: kept as they came
        return part.args if isinstance(part.args, str) else json.dumps(part.args, default=str)


__all__ = ["AcePlaybook", "chat_messages", "latest_prompt"]
