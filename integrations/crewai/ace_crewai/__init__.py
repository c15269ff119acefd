"""ACE for CrewAI, over ACE's HTTP API (``ace serve``): the serving playbook in a crew's agents, and each finished
run sent as an episode to learn from.

::

    from crewai import Agent, Crew, Task
    from ace_crewai import AcePlaybook

    ace = AcePlaybook("http://127.0.0.1:8000", "support", namespace="team-a", token=TOKEN,
                      outcome=lambda out: {"success": "30 days" in out.raw})
    crew = ace.attach(Crew(agents=[agent], tasks=[task]))
    result = crew.kickoff()
    ace.last_episode   # queued: a worker (ace serve / ace worker) reflects, curates and commits

This package depends on CrewAI and httpx only, not on ACE: CrewAI 1.15 pins ``mcp<2``, ``openai<3``,
``pydantic<2.13`` and ``httpx~=0.28``, which ACE's own environment cannot take, so a CrewAI project installs this
package and talks to ``ace serve`` (a token with the ``write`` role on the namespace).

:meth:`AcePlaybook.attach` adds a ``before_kickoff`` and an ``after_kickoff`` callback to the crew. Before the crew
starts, the playbook is read once from ``GET /v1/playbooks/{namespace}/{name}`` (the serving channel, or ``channel``,
under ``budget`` tokens in the ``stable`` layout, with the crew's task descriptions as the read's ``query``;
``query=False``: without one) and handed to the crew as the input ``{ace_playbook}``; each agent's backstory ends with
that placeholder unless you put it somewhere yourself (an agent's role, goal or backstory, a task's description).
CrewAI fills it in with its own interpolation of inputs, so braces in the playbook are never read as placeholders.
When the crew finishes, its agents' messages (system prompts without the playbook, the task prompts, the answers,
tool calls and their results; in the ``ace learn`` format) are sent to ``POST …/episodes`` with the version the run
read and ``outcome(crew_output)`` (none without ``outcome``). A run that fails sends nothing. ``send=False`` keeps the
run in :attr:`AcePlaybook.last_run` until :meth:`AcePlaybook.report` sends it with what you learned later.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from crewai import Crew
    from crewai.crews.crew_output import CrewOutput

__all__ = ["AceCrewError", "AcePlaybook", "PlaybookRead", "chat_messages", "crew_query"]

Outcome = Mapping[str, Any] | bool
PROMPT_BUDGET = 2000  # ACE's default for every agent-facing front end (ace.service.core.PROMPT_BUDGET)
# the layout that keeps a provider's prompt cache warm (ace.service.core.PROMPT_LAYOUT)
PROMPT_LAYOUT: Literal["stable", "sections"] = "stable"
MAX_QUERY_CHARS = 2000  # the longest query ACE's read route takes (ace.service.core.MAX_QUERY_CHARS)
PLACEHOLDER = "ace_playbook"
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)}")  # what CrewAI's interpolate_only reads as a placeholder


class AceCrewError(RuntimeError):
    """ACE could not be reached, or answered with an error (its message says why: a token, a namespace, a name)."""


@dataclass(frozen=True)
class PlaybookRead:
    """What one run read: the version (the response's ETag) and the prompt text put into the agents."""

    version: int
    text: str


class AcePlaybook:
    """Carries the serving playbook into a crew's agents and each finished run back to ACE as an episode."""

    def __init__(
        self,
        url: str,
        playbook: str,
        *,
        namespace: str = "default",
        token: str | None = None,
        budget: int | None = PROMPT_BUDGET,
        layout: Literal["stable", "sections"] = PROMPT_LAYOUT,
        channel: str | None = None,
        query: bool = True,
        outcome: Callable[[CrewOutput], Outcome | None] | None = None,
        send: bool = True,
        task: str | None = None,
        placeholder: str = PLACEHOLDER,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        token = token if token is not None else os.environ.get("ACE_TOKEN")
        if not token:
            raise AceCrewError("a token is needed: AcePlaybook(..., token=...) or $ACE_TOKEN (ace serve --tokens)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", placeholder):
            raise ValueError(f"placeholder {placeholder!r} is not a CrewAI input name (letters, digits, _)")
        self.url, self.playbook, self.namespace = url.rstrip("/"), playbook, namespace
        self.budget, self.layout, self.channel, self.query = budget, layout, channel, query
        self.outcome, self.send, self.task, self.placeholder = outcome, send, task, placeholder
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}
        # what the run in this context read: CrewAI calls both callbacks in the kickoff's own context (a thread, an
        # asyncio task), so concurrent kickoffs of copies of a crew (kickoff_for_each, akickoff) keep theirs apart
        self._read: contextvars.ContextVar[PlaybookRead | None] = contextvars.ContextVar(
            f"ace_crewai_read_{id(self)}", default=None
        )
        self.last_read: PlaybookRead | None = None  # the latest read, of any run
        self.last_run: dict[str, Any] | None = None  # the last finished run's episode log, sent or not
        self.last_episode: dict[str, Any] | None = None  # what ACE answered for the last episode sent
        self.last_error: Exception | None = None  # why the last run's episode could not be sent (kept in last_run)

    # -- the crew -------------------------------------------------------------------------------------------
    def attach(self, crew: Crew) -> Crew:
        """Add the playbook read (``before_kickoff``) and the episode (``after_kickoff``) to ``crew``; returns it."""
        placed = self._placed(crew)  # the crew names {ace_playbook} itself: left where it is
        if not placed:
            self._place(crew)

        def before(inputs: dict[str, Any] | None) -> dict[str, Any]:
            inputs = dict(inputs or {})
            if self.placeholder in inputs:
                raise AceCrewError(f"the crew's inputs already have {self.placeholder!r}: ACE puts the playbook there")
            if not placed:
                self._place(crew)  # agents added since attach
            asked = crew_query(crew, inputs) if self.query else None
            got = self.read(asked)
            self._read.set(got)
            return {**inputs, self.placeholder: got.text}

        def after(result: CrewOutput) -> CrewOutput:
            read = self._read.get()
            self._read.set(None)
            self._finished(result, read)
            return result

        crew.before_kickoff_callbacks.append(before)
        crew.after_kickoff_callbacks.append(after)
        return crew

    def _placed(self, crew: Crew) -> bool:
        """Whether ``{placeholder}`` is in an agent's role, goal or backstory or a task's description or output."""
        mark = "{" + self.placeholder + "}"
        texts = [getattr(a, k, None) for a in _agents(crew) for k in ("role", "goal", "backstory")]
        texts += [getattr(t, k, None) for t in crew.tasks for k in ("description", "expected_output")]
        return any(isinstance(t, str) and mark in t for t in texts)

    def _place(self, crew: Crew) -> None:
        """Put ``{placeholder}`` at the end of each agent's backstory (once)."""
        mark = "{" + self.placeholder + "}"
        for agent in _agents(crew):
            agent.backstory = _with_mark(agent.backstory, mark)
            if getattr(agent, "_original_backstory", None) is not None:  # kicked off before: CrewAI reads this copy
                agent._original_backstory = _with_mark(agent._original_backstory, mark)

    # -- ACE's HTTP API -------------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        names = (quote(p, safe="") for p in (self.namespace, self.playbook))
        return "/".join([self.url, "v1", "playbooks", *names, *parts])

    def read(self, query: str | None = None) -> PlaybookRead:
        """The playbook as an agent reads it: a line naming it, its version and how to use it, then its bullets
        (``GET /v1/playbooks/{namespace}/{name}`` under the budget, with ``query``: the bullets relevant to it)."""
        params: dict[str, Any] = {"layout": self.layout}
        for key, value in (("budget", self.budget), ("channel", self.channel)):
            if value is not None:
                params[key] = value
        if query and query.strip():
            params["query"] = query.strip()[:MAX_QUERY_CHARS]
        response = self._call("GET", self._path(), params=params)
        tag = response.headers.get("ETag", "").strip('W/"')
        if not tag.isdigit():
            raise AceCrewError(f"ACE's read of {self.namespace}/{self.playbook} has no version (ETag {tag!r})")
        version = int(tag)
        header = (
            f"# playbook {self.namespace}/{self.playbook} v{version}: lessons learned from earlier episodes. Follow "
            "the bullets that apply and cite their ids (e.g. [shr-00001]) when you use one.\n\n"
        )
        self.last_read = PlaybookRead(version, header + response.text)
        return self.last_read

    def report(
        self, outcome: Outcome | None = None, *, episode_id: str | None = None, target: str | None = None
    ) -> dict[str, Any]:
        """Send the last finished run with ``outcome`` (``{"success", "score", "message"}``, a bool, or None) to
        ``POST …/episodes``; returns ACE's answer (the episode: its id, status, ...)."""
        if self.last_run is None:
            raise AceCrewError("no finished run to report: kick off a crew this AcePlaybook is attached to first")
        log = dict(self.last_run)
        if outcome is not None:
            log["outcome"] = dict(outcome) if isinstance(outcome, Mapping) else outcome
        for key, value in (("id", episode_id), ("target", target)):
            if value is not None:
                log[key] = value
        response = self._call("POST", self._path("episodes"), json=log)
        self.last_episode = response.json()
        self.last_error = None
        return self.last_episode

    def episode(self, episode_id: str) -> dict[str, Any]:
        """An episode's status and the version it made (``GET …/episodes/{id}``)."""
        return self._call("GET", self._path("episodes", quote(episode_id, safe=""))).json()  # type: ignore[no-any-return]

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as e:
            raise AceCrewError(f"ACE at {self.url} could not be reached: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            try:
                said = response.json().get("error", response.text)
            except (ValueError, AttributeError):
                said = response.text
            raise AceCrewError(f"ACE answered {response.status_code} to {method} {url}: {said}")
        return response

    def close(self) -> None:
        self._client.close()

    # -- the run as an episode ------------------------------------------------------------------------------
    def _finished(self, result: CrewOutput, read: PlaybookRead | None) -> None:
        messages: list[dict[str, Any]] = []
        for out in getattr(result, "tasks_output", None) or []:
            said = chat_messages(getattr(out, "messages", None) or [], read.text if read else None)
            if not any(m["role"] == "user" for m in said) and out.description:
                said.append({"role": "user", "content": out.description})
            final = out.raw or ""  # CrewAI keeps the final answer out of the agent's messages: it is the task's output
            if final and (not said or said[-1]["role"] != "assistant" or said[-1].get("content") != final):
                said.append({"role": "assistant", "content": final})
            messages += said
        if not any(m["role"] == "assistant" for m in messages):  # the run never reached a model
            return
        log: dict[str, Any] = {"messages": messages, **({"task": self.task} if self.task else {})}
        if read is not None:
            log["playbook_version"] = read.version
        self.last_run, self.last_episode = log, None
        if not self.send:
            return
        try:
            self.report(self.outcome(result) if self.outcome is not None else None)
        except AceCrewError as e:  # the crew's result is not lost for it: the run stays in last_run for report()
            self.last_error = e
            warnings.warn(f"the run was not sent to ACE (kept in last_run; send it with report()): {e}", stacklevel=2)


def _agents(crew: Crew) -> list[Any]:
    seen: dict[int, Any] = {id(a): a for a in crew.agents}
    for task in crew.tasks:
        if task.agent is not None:
            seen.setdefault(id(task.agent), task.agent)
    return list(seen.values())


def _with_mark(text: str | None, mark: str) -> str:
    text = text or ""
    return text if mark in text else (f"{text.rstrip()}\n\n{mark}" if text.strip() else mark)


def crew_query(crew: Crew, inputs: Mapping[str, Any]) -> str | None:
    """What the crew is asked: its tasks' descriptions with the inputs filled in (CrewAI's ``{name}`` placeholders;
    one that is not an input stays as written), the read's query (ACE takes at most 2,000 characters)."""

    def fill(text: str) -> str:
        return _VARIABLE.sub(lambda m: str(inputs[m.group(1)]) if m.group(1) in inputs else m.group(0), text)

    tasks = [getattr(t, "_original_description", None) or t.description for t in crew.tasks]
    asked = "\n".join(fill(t).strip() for t in tasks if t and t.strip())
    return asked[:MAX_QUERY_CHARS] or None


def _text(content: Any) -> str:
    """A message's content (a string, or text and media parts) as text; media parts as ``[image]``, ``[file]``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                kind = str(part.get("type", ""))
                media = f"[{kind.removesuffix('_url') or 'part'}]"
                parts.append(str(part.get("text", "")) if kind == "text" else media)
        return "\n".join(p for p in parts if p)
    return str(content)


def chat_messages(messages: Iterable[Mapping[str, Any]], playbook: str | None = None) -> list[dict[str, Any]]:
    """CrewAI's messages (``TaskOutput.messages``: OpenAI-style dicts) as the chat messages of ``ace learn``:
    system, user, assistant (with ``tool_calls``) and ``tool`` messages; the playbook's text (``playbook``) is taken
    out of the prompts it was put into, and a prompt left empty by that is dropped."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        text = _text(message.get("content"))
        if role in ("system", "user"):
            if playbook:
                text = text.replace(playbook, "").strip()
            if text:
                out.append({"role": role, "content": text})
        elif role == "assistant":
            calls = [_call(c) for c in message.get("tool_calls") or []]
            if text or calls:
                out.append({"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})})
        elif role == "tool":
            said: dict[str, Any] = {"role": "tool", "content": text}
            if message.get("tool_call_id"):
                said["tool_call_id"] = message["tool_call_id"]
            if message.get("name"):
                said["name"] = message["name"]
            out.append(said)
    return out


def _call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, default=str)
    return {"id": str(call.get("id", "")), "type": "function",
            "function": {"name": str(function.get("name", "")), "arguments": arguments}}  # fmt: skip
