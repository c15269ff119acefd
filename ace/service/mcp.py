"""``ace mcp``: the store and memory as a Model Context Protocol server (the official ``mcp`` SDK), over stdio (a
desktop client starts it) or streamable HTTP.

Tools:

- ``read_playbook(playbook, budget=2000, version=None, layout="stable", query=None)``: the playbook as prompt text,
  under a token budget (:meth:`~ace.service.core.Service.prompt`: the text an agent puts in its prompt, the same the
  LangGraph node and the Agents SDK hooks give; its version is on the first line); with ``query`` (the task at hand),
  half the budget holds the bullets most relevant to it.
- ``record_episode(playbook, messages, outcome, task=None, episode_id=None, target=None)``: an episode to learn
  from, in the format of ``ace learn`` (chat messages with tool calls, and an outcome); queued for a worker
  (``ace mcp`` runs one in-process unless ``--workers 0``); returns its status.
- ``episode_status(playbook, episode_id)``: queued / running / done (with the version it made) / failed.
- ``search_episodes(query, k=5)``: the episodic tier's most similar past episodes (with ``--memory``).
- ``query_facts(subject=None, relation=None, history=False)``: the knowledge graph's facts.
- ``list_playbooks()``.
- ``review_pending(playbook)``, ``review_approve(playbook, to, reason)``, ``review_reject(playbook, candidate,
  reason)``: what
  waits for review under the review policy (approving and rejecting need a token with the review role).

Resources: ``ace://playbooks/{namespace}/{name}`` (the head as prompt text) and
``ace://playbooks/{namespace}/{name}/versions/{version}``.

Access: over stdio the process may use the namespaces it was started with (``--namespace``, write). Over HTTP every
request needs ``Authorization: Bearer TOKEN`` from the same tokens file as ``ace serve``
(:mod:`ace.service.auth`), checked by the SDK's bearer middleware; each tool then checks the token's namespaces
and role. Errors are tool errors with a clear message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from ace.errors import AceError, UsageError
from ace.names import check_name
from ace.service.auth import Grant, Tokens
from ace.service.core import PROMPT_BUDGET, PROMPT_LAYOUT, AccessDenied, Limits, Service
from ace.service.queue import EpisodeQueue
from ace.store import PlaybookNotFound, PlaybookStore, VersionNotFound

INSTRUCTIONS = (
    "ACE keeps a versioned playbook of lessons learned from past episodes. Call read_playbook before a task and "
    "follow its bullets (cite their ids, e.g. [shr-00001], when you use one); after the task call record_episode "
    "with the conversation and whether it succeeded, so that the playbook learns from it."
)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _expected(not_found: type[Exception], other: type[Exception]) -> Callable[[F], F]:
    """Expected failures (ours: a bad name, an unknown playbook, a denied namespace) reach the client with their
    message, as ``not_found`` for an unknown playbook or version and ``other`` for the rest; anything else stays the
    SDK's generic error, with the trace only in the server's log."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (PlaybookNotFound, VersionNotFound) as e:
                raise not_found(str(e)) from None
            except (AceError, ValueError) as e:
                raise other(str(e)) from None

        return wrapped  # type: ignore[return-value]

    return decorate


_tool = _expected(ToolError, ToolError)
_resource = _expected(ResourceNotFoundError, ResourceError)


class _Verifier:
    """The SDK's bearer-token check, backed by the tokens file of ``ace serve``."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.tokens.grant(token) if len(token) <= 4096 else None
        if grant is None:
            return None
        return AccessToken(token=token, client_id=f"ace-{grant.name}", scopes=[grant.role])


def create_server(
    store: PlaybookStore,
    *,
    namespace: str = "default",
    tokens: Tokens | None = None,
    url: str | None = None,
    queue: EpisodeQueue | None = None,
    episodes: Callable[[str], Any] | None = None,
    limits: Limits | None = None,
) -> MCPServer:
    """The MCP server over ``store``. Without ``tokens`` (stdio) the caller may read and write ``namespace``; with
    them (HTTP at ``url``, e.g. ``http://127.0.0.1:8001``) each call needs a token that allows its namespace."""
    local_ns = check_name(namespace, "namespace")
    local = Grant.local("mcp-stdio", [local_ns])
    svc = Service(store, queue=queue, episodes=episodes, limits=limits)
    auth: dict[str, Any] = {}
    if tokens is not None:
        base = (url or "http://127.0.0.1:8001").rstrip("/")
        auth = {
            "token_verifier": _Verifier(tokens),
            # our tokens are opaque keys from a file, issued for no particular resource: no audience to check
            "auth": AuthSettings(issuer_url=base, resource_server_url=f"{base}/mcp", validate_token_resource=False),
        }
    server = MCPServer("ace", instructions=INSTRUCTIONS, log_level="WARNING", **auth)

    def caller() -> Grant:
        if tokens is None:
            return local
        access = get_access_token()
        found = tokens.grant(access.token) if access is not None else None
        if found is None:
            raise AccessDenied("a valid bearer token is needed")
        return found

    @server.tool()
    @_tool
    async def read_playbook(
        playbook: str,
        budget: int | None = PROMPT_BUDGET,
        version: int | None = None,
        layout: Literal["stable", "sections"] = PROMPT_LAYOUT,
        namespace: str | None = None,
        channel: str | None = None,
        query: str | None = None,
    ) -> str:
        """The playbook as prompt text under a token budget (null: all of it), from its serving channel unless a
        channel or version is named. Follow its bullets and cite their ids when you use one. The first line names
        the version. Pass the task at hand as query (at most 2,000 characters) to get, beside the most useful
        bullets, the ones most relevant to it."""
        ns, options = (
            namespace or local_ns,
            {"version": version, "channel": channel, "budget": budget, "layout": layout, "query": query},
        )
        got = await svc.run("read", svc.prompt, caller(), ns, playbook, **options)
        return got.text

    @server.tool()
    @_tool
    async def record_episode(
        playbook: str,
        messages: list[dict[str, Any]],
        outcome: dict[str, Any] | bool,
        task: str | None = None,
        episode_id: str | None = None,
        target: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Send a finished episode to learn from: the chat messages (OpenAI style, with tool_calls and tool
        results) and its outcome ({"success": bool, "score": float, "message": str}). Queued for a worker; the
        same episode_id sent again is not queued twice. Returns its status."""
        log: dict[str, Any] = {"messages": messages, "outcome": outcome}
        for key, value in (("task", task), ("id", episode_id), ("target", target)):
            if value is not None:
                log[key] = value
        episode, new = await svc.run("write", svc.submit_episode, caller(), namespace or local_ns, playbook, log)
        return {**episode.to_dict(), "queued_now": new}

    @server.tool()
    @_tool
    async def episode_status(playbook: str, episode_id: str, namespace: str | None = None) -> dict[str, Any]:
        """What became of a recorded episode: queued, running, done (with the playbook version after it) or
        failed (with the reason)."""
        found = await svc.run("read", svc.episode, caller(), namespace or local_ns, playbook, episode_id)
        return found.to_dict()

    @server.tool()
    @_tool
    async def search_episodes(
        query: str, k: int = 5, playbook: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The past episodes most similar to the query, with their outcome and lesson."""
        k = max(1, min(k, 50))
        return await svc.run(
            "heavy", svc.search_episodes, caller(), namespace or local_ns, query, k=k, playbook=playbook
        )

    @server.tool()
    @_tool
    async def query_facts(
        subject: str | None = None, relation: str | None = None, history: bool = False, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Facts of the knowledge graph: current ones, or with history=true every fact with the versions it held
        for; optionally about one subject and relation."""
        return await svc.run(
            "read", svc.facts, caller(), namespace or local_ns, subject=subject, relation=relation, history=history
        )

    @server.tool()
    @_tool
    async def review_pending(playbook: str, namespace: str | None = None) -> dict[str, Any]:
        """What learning added since the version agents read (under the review policy it waits for a reviewer):
        each version with where it came from, the diff, the collapse detectors' alerts."""
        return await svc.run("heavy", svc.pending, caller(), namespace or local_ns, playbook)

    @server.tool()
    @_tool
    async def review_approve(
        playbook: str,
        to: int,
        reason: str | None = None,
        namespace: str | None = None,
        only: list[int] | None = None,
        edit: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Serve version ``to``, the candidate version you reviewed (a review token): agents read it next. With
        ``only`` (some of the versions waiting) or ``edit`` (a delta you write, as a curator would), a new head is
        made of what agents read now, the versions kept and the edit, and served; the versions left out are turned
        down with ``reason``."""
        text = None if edit is None else json.dumps(edit)
        return await svc.run("write", svc.approve, caller(), namespace or local_ns, playbook, to=to, reason=reason,
                             only=only, edit=text)  # fmt: skip

    @server.tool()
    @_tool
    async def review_reject(playbook: str, candidate: int, reason: str, namespace: str | None = None) -> dict[str, Any]:
        """Turn down what learning added up to ``candidate`` (the head you reviewed; a review token), with the
        reason: the head rolls back to what agents read."""
        return await svc.run(
            "write", svc.reject, caller(), namespace or local_ns, playbook, candidate=candidate, reason=reason
        )

    @server.tool()
    @_tool
    async def list_playbooks(namespace: str | None = None) -> list[dict[str, Any]]:
        """The namespace's playbooks and their head versions."""
        found = await svc.run("read", svc.list_playbooks, caller(), namespace or local_ns)
        return [{"name": p["name"], "head": p["head"]} for p in found]

    @server.resource("ace://playbooks/{ns}/{name}", mime_type="text/plain")
    @_resource
    async def head(ns: str, name: str) -> str:
        """The head of a playbook, as prompt text."""
        return (await svc.run("read", svc.read, caller(), ns, name)).text

    @server.resource("ace://playbooks/{ns}/{name}/versions/{version}", mime_type="text/plain")
    @_resource
    async def at_version(ns: str, name: str, version: str) -> str:
        """One version of a playbook, as prompt text."""
        if not (version.isascii() and version.isdigit()) or len(version) > 10:
            raise AceError(f"a version is a number, not {ascii(version)[:40]}")
        return (await svc.run("read", svc.read, caller(), ns, name, version=int(version))).text

    return server


MAX_SESSIONS = 1_000  # open MCP sessions over HTTP, all tokens together
SESSIONS_PER_TOKEN = 16  # open sessions one token may hold: one client cannot take every session
SESSION_IDLE_S = 300.0  # a session with no request for this long is closed


def http_app(
    server: MCPServer,
    *,
    host: str = "127.0.0.1",
    max_sessions: int = MAX_SESSIONS,
    per_token: int = SESSIONS_PER_TOKEN,
    idle_s: float = SESSION_IDLE_S,
) -> Any:
    """The streamable-HTTP ASGI app of ``server`` with bounded sessions: at most ``max_sessions`` open, at most
    ``per_token`` for one token (a new one beyond is refused with 503 until one closes), each closed after
    ``idle_s`` seconds without a request."""
    app = server.streamable_http_app(host=host, max_sessions=max_sessions, session_idle_timeout=idle_s)
    manager = getattr(getattr(server, "_lowlevel_server", None), "_session_manager", None)
    admit = getattr(manager, "_admit_session", None)
    owners = getattr(manager, "_session_owners", None)
    if admit is None or not isinstance(owners, dict):  # an SDK that manages sessions otherwise: say so, don't guess
        raise UsageError("this version of the mcp SDK has no session manager to bound per token; pin mcp 2.3")

    def admit_per_token(requestor: Any) -> Any:
        if requestor is not None and sum(1 for o in owners.values() if o == requestor) >= per_token:
            return None  # the SDK answers 503 "Too many open sessions"
        return admit(requestor)

    manager._admit_session = admit_per_token  # type: ignore[union-attr]
    return app


__all__ = ["INSTRUCTIONS", "MAX_SESSIONS", "SESSIONS_PER_TOKEN", "AccessDenied", "create_server", "http_app"]
