"""``ace mcp``: the store and memory as a Model Context Protocol server (the official ``mcp`` SDK), over stdio (a
desktop client starts it) or streamable HTTP.

Tools:

- ``read_playbook(playbook, budget=2000, version=None, layout="stable")``: the playbook as prompt text, under a
  token budget (the text an agent puts in its prompt; its version is on the first line).
- ``record_episode(playbook, messages, outcome, task=None, episode_id=None, target=None)``: an episode to learn
  from, in the format of ``ace learn`` (chat messages with tool calls, and an outcome); queued for a worker
  (``ace mcp`` runs one in-process unless ``--workers 0``); returns its status.
- ``episode_status(playbook, episode_id)``: queued / running / done (with the version it made) / failed.
- ``search_episodes(query, k=5)``: the episodic tier's most similar past episodes (with ``--memory``).
- ``query_facts(subject=None, relation=None, history=False)``: the knowledge graph's facts.
- ``list_playbooks()``.

Resources: ``ace://playbooks/{namespace}/{name}`` (the head as prompt text) and
``ace://playbooks/{namespace}/{name}/versions/{version}``.

Access: over stdio the process may use the namespaces it was started with (``--namespace``, write). Over HTTP every
request needs ``Authorization: Bearer TOKEN`` from the same tokens file as ``ace serve``
(:mod:`ace.service.auth`), checked by the SDK's bearer middleware; each tool then checks the token's namespaces
and role. Errors are tool errors with a clear message.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from ace.errors import AceError
from ace.names import check_name
from ace.playbook import render
from ace.service.auth import Grant, Role, Tokens
from ace.service.queue import EpisodeQueue
from ace.store import PlaybookNotFound, PlaybookStore, VersionNotFound

INSTRUCTIONS = (
    "ACE keeps a versioned playbook of lessons learned from past episodes. Call read_playbook before a task and "
    "follow its bullets (cite their ids, e.g. [shr-00001], when you use one); after the task call record_episode "
    "with the conversation and whether it succeeded, so that the playbook learns from it."
)


class AccessDenied(AceError):
    """The caller's token does not allow this namespace or role."""


F = TypeVar("F", bound=Callable[..., Any])


def _tool(fn: F) -> F:
    """Expected failures (ours: a bad name, an unknown playbook, a denied namespace) reach the client with their
    message; anything else stays the SDK's generic error, with the trace only in the server's log."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AceError, ValueError) as e:
            raise ToolError(str(e)) from None

    return wrapped  # type: ignore[return-value]


def _resource(fn: F) -> F:
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (PlaybookNotFound, VersionNotFound) as e:
            raise ResourceNotFoundError(str(e)) from None
        except (AceError, ValueError) as e:
            raise ResourceError(str(e)) from None

    return wrapped  # type: ignore[return-value]


class _Verifier:
    """The SDK's bearer-token check, backed by the tokens file of ``ace serve``."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.tokens.grant(token)
        if grant is None:
            return None
        return AccessToken(token=token, client_id=f"ace-{grant.role}", scopes=[grant.role])


def create_server(
    store: PlaybookStore,
    *,
    namespace: str = "default",
    tokens: Tokens | None = None,
    url: str | None = None,
    queue: EpisodeQueue | None = None,
    episodes: Callable[[str], Any] | None = None,
) -> MCPServer:
    """The MCP server over ``store``. Without ``tokens`` (stdio) the caller may read and write ``namespace``; with
    them (HTTP at ``url``, e.g. ``http://127.0.0.1:8001``) each call needs a token that allows its namespace."""
    local = Grant("write", frozenset({check_name(namespace, "namespace")}))
    queue = queue or EpisodeQueue(store)
    auth: dict[str, Any] = {}
    if tokens is not None:
        base = (url or "http://127.0.0.1:8001").rstrip("/")
        auth = {
            "token_verifier": _Verifier(tokens),
            "auth": AuthSettings(issuer_url=base, resource_server_url=f"{base}/mcp"),
        }
    server = MCPServer("ace", instructions=INSTRUCTIONS, log_level="WARNING", **auth)

    def allowed(ns: str | None, role: Role) -> str:
        ns = check_name(ns or namespace, "namespace")
        grant = local
        if tokens is not None:
            access = get_access_token()
            found = tokens.grant(access.token) if access is not None else None
            if found is None:
                raise AccessDenied("a valid bearer token is needed")
            grant = found
        if not grant.allows(ns, role):
            raise AccessDenied(f"this caller may not {role} in namespace {ns!r}")
        return ns

    @server.tool()
    @_tool
    def read_playbook(
        playbook: str,
        budget: int | None = 2000,
        version: int | None = None,
        layout: Literal["stable", "sections"] = "stable",
        namespace: str | None = None,
    ) -> str:
        """The playbook as prompt text under a token budget (null: all of it). Follow its bullets and cite their
        ids when you use one. The first line names the version."""
        ns = allowed(namespace, "read")
        if budget is not None and budget < 0:
            raise AceError("budget must be >= 0")
        v, pb = store.load_versioned(playbook, version, namespace=ns)
        return f"# playbook {ns}/{playbook} v{v} ({len(pb)} bullets)\n{render(pb, budget=budget, layout=layout)}"

    @server.tool()
    @_tool
    def record_episode(
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
        ns = allowed(namespace, "write")
        log: dict[str, Any] = {"messages": messages, "outcome": outcome}
        for key, value in (("task", task), ("id", episode_id), ("target", target)):
            if value is not None:
                log[key] = value
        episode, new = queue.submit(playbook, log, namespace=ns)
        return {**episode.to_dict(), "queued_now": new}

    @server.tool()
    @_tool
    def episode_status(playbook: str, episode_id: str, namespace: str | None = None) -> dict[str, Any]:
        """What became of a recorded episode: queued, running, done (with the playbook version after it) or
        failed (with the reason)."""
        ns = allowed(namespace, "read")
        return queue.get(playbook, episode_id, namespace=ns).to_dict()

    @server.tool()
    @_tool
    def search_episodes(
        query: str, k: int = 5, playbook: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The past episodes most similar to the query, with their outcome and lesson."""
        ns = allowed(namespace, "read")
        tier = episodes(ns) if episodes is not None else None
        if tier is None:
            raise AceError("this server has no episodic memory (start it with --memory)")
        return [
            {**dataclasses.asdict(h.episode), "similarity": round(h.similarity, 4)}
            for h in tier.search(query, max(1, min(k, 50)), playbook=playbook)
        ]

    @server.tool()
    @_tool
    def query_facts(
        subject: str | None = None, relation: str | None = None, history: bool = False, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Facts of the knowledge graph: current ones, or with history=true every fact with the versions it held
        for; optionally about one subject and relation."""
        from ace.memory import KnowledgeGraph

        ns = allowed(namespace, "read")
        found = KnowledgeGraph(store, namespace=ns).query(subject, relation, history=history)
        return [dataclasses.asdict(f) for f in found]

    @server.tool()
    @_tool
    def list_playbooks(namespace: str | None = None) -> list[dict[str, Any]]:
        """The namespace's playbooks and their head versions."""
        ns = allowed(namespace, "read")
        return [{"name": p.name, "head": p.head} for p in store.list(ns)]

    @server.resource("ace://playbooks/{ns}/{name}", mime_type="text/plain")
    @_resource
    def head(ns: str, name: str) -> str:
        """The head of a playbook, as prompt text."""
        return render(store.load(name, namespace=allowed(ns, "read")))

    @server.resource("ace://playbooks/{ns}/{name}/versions/{version}", mime_type="text/plain")
    @_resource
    def at_version(ns: str, name: str, version: str) -> str:
        """One version of a playbook, as prompt text."""
        if not version.isdigit():
            raise AceError(f"a version is a number, not {version!r}")
        return render(store.load(name, int(version), namespace=allowed(ns, "read")))

    return server


__all__ = ["INSTRUCTIONS", "AccessDenied", "create_server"]
