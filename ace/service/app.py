"""The HTTP service over the store (``ace serve``): playbooks for agents that are not Python.

Every route but ``/v1/health`` and the API's description (``/docs``, its assets, ``/openapi.json``: no data) needs
``Authorization: Bearer TOKEN``; a token is bound to namespaces and a role (:mod:`ace.service.auth`): 401 without a
valid token, 403 outside its namespaces or above its role. Errors are JSON ``{"error": "..."}`` with a clear
message, never a stack trace. Bodies over ``max_body_bytes`` are refused (413) before they are read whole. The
routes are thin adapters over :class:`~ace.service.core.Service`; its work runs in worker threads, never on the
event loop, so a writer waiting for the database's lock does not hold up reads. OpenAPI docs are at ``/docs``,
served from the installed package (no CDN).

- ``GET  /v1/playbooks/{namespace}`` (read): the playbooks and their heads.
- ``GET  /v1/playbooks/{namespace}/{name}?version=&budget=&layout=&format=text|json&query=`` (read): the playbook
  rendered (``text/plain``, the prompt text; ``layout`` ``sections`` or ``stable``; with ``query`` and a budget, half
  of it holds the bullets most relevant to the query) or as lossless JSON; ``ETag`` is the version.
- ``POST /v1/playbooks/{namespace}/{name}/deltas`` (write), body a delta, ``If-Match: VERSION``: 201 with the new
  version; 409 with the head when ``VERSION`` is no longer the head; 422 with the delta's error. Without
  ``If-Match`` the delta is applied on whatever the head is.
- ``PUT  /v1/playbooks/{namespace}/{name}?format=`` (write), body a playbook file (ACE text, JSON, Markdown or a
  kayba skillbook; guessed if absent): imported as version 1 of a new playbook (409 if the name is taken).
- ``GET  /v1/playbooks/{namespace}/{name}/history?since=``, ``/diff?from=&to=``, ``/blame/{bullet_id}`` and
  ``/check?from=`` (the collapse detectors over the last versions, as many as :class:`~ace.service.core.Limits`
  allows one call; cached per head) (read).
- ``POST /v1/playbooks/{namespace}/{name}/rollback?to=VERSION`` (write, ``If-Match`` as for deltas).
- ``POST /v1/playbooks/{namespace}/{name}/episodes`` (write), body one episode in the format of ``ace learn``: queued
  for a worker (202; 200 with its status if it was sent before; 409 if its id was sent with another body).
  ``GET …/episodes?status=`` and ``GET …/episodes/{episode_id}`` (read): its status and the version it made.
- ``GET  /v1/memory/{namespace}/episodes?q=&k=`` (read): the episodic tier's most similar (or newest) episodes;
  ``GET /v1/memory/{namespace}/facts?subject=&relation=&all=`` (read): the knowledge graph's facts.
"""

import dataclasses
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ace.errors import AceError
from ace.names import InvalidName
from ace.playbook import Delta, DeltaError
from ace.playbook.errors import PlaybookFormatError
from ace.playbook.render import Layout
from ace.service.auth import Grant, Role, Tokens
from ace.service.core import (
    MAX_NUMBER,
    MAX_QUERY_CHARS,
    AccessDenied,
    BadRequest,
    Format,
    Limits,
    NoMemory,
    QuotaExceeded,
    ReadOptions,
    Service,
    TooMuchWork,
    version_tag,
)
from ace.service.queue import EpisodeConflict, EpisodeError, EpisodeNotFound, EpisodeQueue, Status
from ace.store import (
    ChannelMoved,
    ChannelNotFound,
    ImportRefused,
    PlaybookExists,
    PlaybookNotFound,
    PlaybookStore,
    StaleVersionError,
    StoreIntegrityError,
    VersionInfo,
    VersionNotFound,
)

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a delta is small; a playbook import goes through the CLI
BODY_TIMEOUT_S = 30.0  # from the first read of a request's body to its last byte

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

RouteFn = TypeVar("RouteFn", bound=Callable[..., Any])


class _BodyLimit:
    """ASGI middleware: a request whose declared or streamed body exceeds ``limit`` bytes gets 413, unread; one whose
    body has not arrived whole ``timeout_s`` seconds after the route started reading it gets 408 (a body trickled a
    byte at a time would otherwise hold its connection for ever). Both close the connection: the rest of the body
    is never taken for a next request."""

    def __init__(self, app: Any, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0
        deadline: float | None = None

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen, deadline
            if deadline is None:
                deadline = anyio.current_time() + self.timeout_s
            try:
                with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
                    message = await receive()
            except TimeoutError:
                raise _TooSlow from None
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:  # raised while a route read the body; the route's handler normally answers it
            if not started:
                await _too_large(self.limit)(scope, receive, send)
        except _TooSlow:
            if not started:
                await _too_slow(self.timeout_s)(scope, receive, send)


class _TooLarge(Exception):
    """A streamed body passed the limit while being read."""


class _TooSlow(Exception):
    """A body that did not arrive within the time allowed."""


_CLOSE = {"Connection": "close"}


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": f"the request body is over the limit of {limit} bytes"}, status_code=413, headers=_CLOSE
    )


def _too_slow(timeout_s: float) -> JSONResponse:
    return JSONResponse(
        {"error": f"the request body did not arrive within {timeout_s:g} s"}, status_code=408, headers=_CLOSE
    )


def create_app(
    store: PlaybookStore,
    tokens: Tokens,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    queue: EpisodeQueue | None = None,
    episodes: Callable[[str], Any] | None = None,
    limits: Limits | None = None,
    runs_dir: Path | None = None,
    run_report: Callable[[Path], str] | None = None,
) -> Any:
    """The ASGI application (FastAPI, wrapped in the body limit) over ``store``, guarded by ``tokens``.

    ``queue`` holds sent episodes (one is made on ``store`` if not given); ``episodes(namespace)`` opens the
    episodic memory tier of a namespace (an :class:`~ace.memory.EpisodicStore`) or returns None where there is
    none; without it, episode search answers 404. ``limits``: what one caller may ask (:class:`Limits`). The
    console's runs page reads ``runs_dir`` (default: ``ace.runs.workspace.runs_dir()``) and shows a run's report made
    by ``run_report`` (``ace serve`` and ``ace ui`` give :func:`ace.app.console_report.report_html`)."""
    limits = dataclasses.replace(limits or Limits(), max_body_bytes=max_body_bytes)
    svc = Service(store, queue=queue, episodes=episodes, limits=limits)
    api = FastAPIOffline(
        title="ACE",
        version="1",
        description=__doc__,
        static_url="/docs/assets",
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False, description="A token from the tokens file (ace serve --tokens).")

    async def grant(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None) -> Grant:
        presented = credentials.credentials.strip() if credentials is not None else ""
        found = tokens.grant(presented) if presented and len(presented) <= MAX_TOKEN_CHARS else None
        if found is None:
            raise _HTTPError(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)")
        return found

    Auth = Annotated[Grant, Depends(grant)]
    Version = Annotated[int | None, Query(ge=1, le=MAX_NUMBER)]
    QUERY_HELP = "The task at hand: with a budget, half of it holds the bullets most relevant to it"
    Number = Annotated[int, Query(ge=1, le=MAX_NUMBER)]  # a version, a start
    From = Annotated[int, Query(alias="from", ge=1, le=MAX_NUMBER)]

    def sends(
        method: Callable[..., Callable[[RouteFn], RouteFn]], path: str, status: int, body: dict[str, Any], summary: str
    ) -> Callable[[RouteFn], RouteFn]:
        """A route that reads a body (documented by ``body``), answering ``status`` and the errors' JSON."""
        return method(path, status_code=status, responses=_ERRORS, openapi_extra=body, summary=summary)

    async def body_of(request: Request, g: Grant, namespace: str, role: Role = "write") -> bytes:
        """The request's body, read only once ``g`` may ``role`` in ``namespace``: a token that may not write never
        holds a connection with a body."""
        svc.allowed(g, namespace, role)
        return await request.body()

    @api.get("/v1/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @api.get("/v1/playbooks/{namespace}", responses=_ERRORS)
    async def playbooks(namespace: str, g: Auth) -> list[dict[str, Any]]:
        return await svc.run("read", svc.list_playbooks, g, namespace)

    @api.get(
        "/v1/playbooks/{namespace}/{name}",
        responses=_ERRORS,
        response_class=PlainTextResponse,
        summary="Read a playbook: prompt text under a budget, or an export",
    )
    async def playbook(
        namespace: str,
        name: str,
        g: Auth,
        version: Version = None,
        channel: Annotated[str | None, Query(max_length=128, description="serving (default), candidate, ...")] = None,
        budget: Annotated[int | None, Query(ge=0, le=MAX_NUMBER)] = None,
        layout: Layout = "sections",
        format: Format = "text",
        query: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description=QUERY_HELP)] = None,
    ) -> Response:
        options: ReadOptions = {"version": version, "channel": channel, "budget": budget, "layout": layout,
                                "format": format, "query": query}  # fmt: skip
        got = svc.read_now(g, namespace, name, **options)  # the held head: on the loop, no thread hop, never waits
        if got is None:
            got = await svc.run("read", svc.read, g, namespace, name, **options)
        return Response(got.text, media_type=got.media_type, headers={"ETag": f'"{got.version}"'})

    @sends(
        api.put,
        "/v1/playbooks/{namespace}/{name}",
        201,
        _body("A playbook file: ACE text, JSON, Markdown or a kayba skillbook.", _PLAYBOOK_FILE),
        "Import a playbook as version 1 of a new one",
    )
    async def import_(
        namespace: str,
        name: str,
        request: Request,
        g: Auth,
        format: Literal["ace", "json", "md", "skillbook"] | None = None,
        force: Annotated[bool, Query(description="Import past the quality gate (admin tokens; recorded).")] = False,
    ) -> dict[str, Any]:
        try:
            text = (await body_of(request, g, namespace, "admin" if force else "write")).decode("utf-8")
        except UnicodeDecodeError:
            raise _HTTPError(422, "the playbook file is not UTF-8 text") from None
        info = await svc.run(
            "write",
            svc.import_playbook,
            g,
            namespace,
            name,
            text,
            format=format,
            force=force,
            message="import over HTTP",
        )
        return _made(info)

    @sends(
        api.post,
        "/v1/playbooks/{namespace}/{name}/deltas",
        201,
        _body("A delta, as a curator writes it.", _DELTA_SCHEMA, json_body=True),
        "Commit a delta (If-Match: the version it was made against)",
    )
    async def commit(
        namespace: str, name: str, request: Request, g: Auth, if_match: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        expected = version_tag(if_match)
        body = await body_of(request, g, namespace)
        info = await svc.run("write", svc.commit, g, namespace, name, body, expected_version=expected)
        return _made(info)

    @api.post("/v1/playbooks/{namespace}/{name}/rollback", status_code=201, responses=_ERRORS)
    async def rollback(  # 200 with the head when it has the state asked for already
        namespace: str,
        name: str,
        g: Auth,
        to: Number,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        expected = version_tag(if_match)
        info, made = await svc.run("write", svc.rollback, g, namespace, name, to, expected_version=expected)
        return JSONResponse(_made(info), status_code=201 if made else 200)

    @api.get("/v1/playbooks/{namespace}/{name}/channels", responses=_ERRORS)
    async def channels(namespace: str, name: str, g: Auth) -> list[dict[str, Any]]:
        return await svc.run("read", svc.channels, g, namespace, name)

    @api.get("/v1/playbooks/{namespace}/{name}/channels/log", responses=_ERRORS)
    async def channel_log(
        namespace: str, name: str, g: Auth, channel: Annotated[str | None, Query(max_length=128)] = None
    ) -> list[dict[str, Any]]:
        return await svc.run("read", svc.channel_log, g, namespace, name, channel)

    @api.post(
        "/v1/playbooks/{namespace}/{name}/channels/{channel}",
        responses=_ERRORS,
        summary="Move a channel (serving: what agents read) to a version, or back to the head (admin)",
    )
    async def move_channel(
        namespace: str,
        name: str,
        channel: str,
        g: Auth,
        to: Annotated[int | None, Query(ge=1, le=MAX_NUMBER, description="The version; none: follow the head")] = None,
        reason: Annotated[str | None, Query(max_length=2000)] = None,
        if_match: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        expected = version_tag(if_match)
        move = svc.move_channel
        return await svc.run("write", move, g, namespace, name, channel, to, reason=reason, expected=expected)

    @api.get("/v1/playbooks/{namespace}/{name}/review", responses=_ERRORS)
    async def pending(namespace: str, name: str, g: Auth) -> dict[str, Any]:
        return await svc.run("heavy", svc.pending, g, namespace, name)

    @api.post(
        "/v1/playbooks/{namespace}/{name}/review/approve",
        responses=_ERRORS,
        summary="Serve the candidate version reviewed (to), after the one served now (review role)",
    )
    async def approve(
        namespace: str, name: str, request: Request, g: Auth,
        to: Annotated[int, Query(ge=1, le=MAX_NUMBER, description="The candidate version reviewed: it is served")],
        reason: Annotated[str | None, Query(max_length=2000)] = None,
        only: Annotated[list[int] | None, Query(max_length=1000, description="Keep only these versions waiting; "
                                                "the rest are turned down (give the reason)")] = None,
    ) -> dict[str, Any]:  # fmt: skip
        edit = await body_of(request, g, namespace, "review")  # a delta the reviewer wrote (optional)
        return await svc.run("write", svc.approve, g, namespace, name, to=to, reason=reason, only=only,
                             edit=edit or None)  # fmt: skip

    @api.post(
        "/v1/playbooks/{namespace}/{name}/review/reject",
        responses=_ERRORS,
        summary="Turn down what learning added: the head rolls back to what agents read (review role)",
    )
    async def reject(
        namespace: str, name: str, g: Auth,
        candidate: Annotated[int, Query(ge=1, le=MAX_NUMBER, description="The head reviewed (409 if it moved on)")],
        reason: Annotated[str, Query(min_length=1, max_length=2000)],
    ) -> dict[str, Any]:  # fmt: skip
        return await svc.run("write", svc.reject, g, namespace, name, candidate=candidate, reason=reason)

    @api.put(
        "/v1/playbooks/{namespace}/{name}/policy",
        responses=_ERRORS,
        summary="Set the promotion policy: immediate or review (admin)",
    )
    async def set_policy(
        namespace: str, name: str, g: Auth, policy: Annotated[str, Query(max_length=32)]
    ) -> dict[str, Any]:
        return await svc.run("write", svc.set_promotion, g, namespace, name, policy)

    @api.get("/v1/playbooks/{namespace}/{name}/history", responses=_ERRORS)
    async def history(
        namespace: str, name: str, g: Auth, since: Number = 1,
        limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many versions, from since")] = 1000,
    ) -> list[dict[str, Any]]:  # fmt: skip
        return await svc.run("read", svc.history, g, namespace, name, since=since, limit=limit)

    @api.get("/v1/playbooks/{namespace}/{name}/diff", responses=_ERRORS)
    async def diff(namespace: str, name: str, g: Auth, from_: From, to: Number) -> dict[str, Any]:
        return await svc.run("read", svc.diff, g, namespace, name, from_, to)

    @api.get("/v1/playbooks/{namespace}/{name}/blame/{bullet_id}", responses=_ERRORS)
    async def blame(namespace: str, name: str, bullet_id: str, g: Auth) -> list[dict[str, Any]]:
        return await svc.run("read", svc.blame, g, namespace, name, bullet_id)

    @api.get("/v1/playbooks/{namespace}/{name}/check", responses=_ERRORS)
    async def check(
        namespace: str,
        name: str,
        g: Auth,
        from_: Annotated[int | None, Query(alias="from", ge=1, le=MAX_NUMBER)] = None,
    ) -> dict[str, Any]:
        return await svc.run("heavy", svc.check, g, namespace, name, first=from_)

    @sends(
        api.post,
        "/v1/playbooks/{namespace}/{name}/episodes",
        202,
        _body("An episode, in the format of `ace learn`.", _EPISODE_SCHEMA, json_body=True),
        "Queue an episode for a worker to learn from",
    )
    async def send_episode(namespace: str, name: str, request: Request, g: Auth) -> Response:
        body = await body_of(request, g, namespace)
        episode, new = await svc.run("write", svc.submit_episode, g, namespace, name, body)
        return JSONResponse(episode.to_dict(), status_code=202 if new else 200)

    @api.get("/v1/playbooks/{namespace}/{name}/episodes", responses=_ERRORS)
    async def list_episodes(
        namespace: str,
        name: str,
        g: Auth,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        found = await svc.run("read", svc.episodes, g, namespace, name, status=status, limit=limit)
        return [e.to_dict() for e in found]

    @api.get("/v1/playbooks/{namespace}/{name}/episodes/{episode_id}", responses=_ERRORS)
    async def episode(namespace: str, name: str, episode_id: str, g: Auth) -> dict[str, Any]:
        return (await svc.run("read", svc.episode, g, namespace, name, episode_id)).to_dict()

    @api.get("/v1/memory/{namespace}/episodes", responses=_ERRORS)
    async def search_episodes(
        namespace: str,
        g: Auth,
        q: Annotated[str | None, Query(max_length=2000)] = None,
        k: Annotated[int, Query(ge=1, le=100)] = 5,
        playbook: str | None = None,
    ) -> list[dict[str, Any]]:
        return await svc.run("heavy", svc.search_episodes, g, namespace, q, k=k, playbook=playbook)

    @api.get("/v1/memory/{namespace}/facts", responses=_ERRORS)
    async def facts(
        namespace: str,
        g: Auth,
        subject: str | None = None,
        relation: str | None = None,
        all: bool = False,
    ) -> list[dict[str, Any]]:
        return await svc.run("read", svc.facts, g, namespace, subject=subject, relation=relation, history=all)

    from starlette.responses import RedirectResponse

    from ace.service.console import create_console  # the console in a browser: the same tokens, the same Service

    @api.get("/ui", include_in_schema=False)
    async def console_home() -> Response:
        return RedirectResponse("/ui/", status_code=308)

    api.mount("/ui", create_console(svc, tokens, runs_dir=runs_dir, run_report=run_report))
    _errors(api, limits.body_timeout_s)
    _document(api)
    return _BodyLimit(api, max_body_bytes, limits.body_timeout_s)


MAX_TOKEN_CHARS = 4096  # a presented token longer than this is no token of ours: refused before it is compared
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid bearer token", "content": _ERROR_BODY},
    403: {"description": "The token does not allow this namespace or role", "content": _ERROR_BODY},
    404: {"description": "No such playbook, version or episode", "content": _ERROR_BODY},
    409: {
        "description": "A stale If-Match (with the head), a taken name, a conflicting episode",
        "content": _ERROR_BODY,
    },
    413: {"description": "The body is over the size limit", "content": _ERROR_BODY},
    422: {"description": "A parameter or body that is not valid (the message says why)", "content": _ERROR_BODY},
    429: {"description": "The namespace's queue of episodes is full", "content": _ERROR_BODY},
}
_PLAYBOOK_FILE: dict[str, Any] = {"type": "string"}
_DELTA_SCHEMA = Delta.model_json_schema(ref_template="#/components/schemas/{model}")
for _op in _DELTA_SCHEMA.get("$defs", {}).values():  # the discriminator: a client must send it (the model defaults it)
    if "const" in _op.get("properties", {}).get("type", {}):
        _op["required"] = ["type", *[r for r in _op.get("required", []) if r != "type"]]
_EPISODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "id": {"type": "string", "description": "The episode's id (sending it again does not queue it twice)"},
        "task": {"type": "string"},
        "target": {"type": "string", "description": "The expected answer, when known"},
        "messages": {
            "type": "array",
            "items": {"type": "object"},
            "description": "Chat messages (OpenAI style, with tool_calls and tool results)",
        },
        "outcome": {
            "description": "true/false, or {success, score, message}",
            "anyOf": [{"type": "boolean"}, {"type": "object"}],
        },
    },
}


def _body(description: str, schema: dict[str, Any], *, json_body: bool = False) -> dict[str, Any]:
    """An ``openapi_extra`` declaring the raw body a route reads itself (so that a generated client can send it);
    nested definitions go to the document's components (:func:`_document`)."""
    inline = {k: v for k, v in schema.items() if k != "$defs"}
    media = "application/json" if json_body else "text/plain"
    return {"requestBody": {"required": True, "description": description, "content": {media: {"schema": inline}}}}


def _document(api: FastAPI) -> None:
    """The OpenAPI document with what the routes' own signatures cannot tell FastAPI: the error body and the
    delta's nested models (the bearer scheme comes from the HTTPBearer dependency)."""
    make = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = make()
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components["Error"] = {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "head": {"type": "integer"}},
            }
            components.update(_DELTA_SCHEMA.get("$defs", {}))
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _made(info: VersionInfo) -> dict[str, Any]:
    """What a write answers: the version it made, its digest and size."""
    return {"version": info.version, "digest": info.digest, "bullets": info.n_bullets}


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


SERVE_ENV = "ACE_SERVE"


def from_environment() -> Any:
    """The application as ``ace serve --processes N`` starts it in each process: its settings come from
    ``$ACE_SERVE`` (JSON: ``db``, ``tokens`` (a file, or null for ``$ACE_TOKENS``), ``max_body``, ``memory``)."""
    import os

    settings = json.loads(os.environ[SERVE_ENV])
    tokens = settings.get("tokens")
    from ace.llm.injection_probe import with_probe

    return create_app(
        PlaybookStore(settings.get("db"), policy=with_probe()),
        Tokens.load(None if tokens is None else Path(tokens)),
        max_body_bytes=int(settings.get("max_body") or MAX_BODY_BYTES),
        episodes=episodic_tiers(settings.get("memory")),
    )


def episodic_tiers(location: str | None) -> Callable[[str], Any] | None:
    """Opens a namespace's episodic tier at ``location`` (a Chroma directory or server URL, or a PostgreSQL URL for
    pgvector) for the search route; the embedder loads on the first search. None without a location."""
    if location is None:
        return None
    lock = threading.Lock()
    opened: dict[str, Any] = {}
    server = "://" in location  # a Chroma server or a PostgreSQL database, not a directory

    def episodic(namespace: str) -> Any:
        from ace.llm.embeddings import MiniLMEmbedder
        from ace.memory import open_episodic

        if not server and not Path(location).is_dir():
            return None
        with lock:
            if "embedder" not in opened:
                opened["embedder"] = MiniLMEmbedder()
            if namespace not in opened:
                opened[namespace] = open_episodic(location, opened["embedder"], namespace=namespace)
            return opened[namespace]

    return episodic


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _errors(api: FastAPI, body_timeout_s: float = BODY_TIMEOUT_S) -> None:
    """Every error is JSON with a message; nothing else (no trace) leaves the service."""

    def reply(status: int, message: str, request: Request | None = None, **extra: Any) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if request is not None and request.method in ("POST", "PUT", "PATCH") and status >= 400:
            headers |= _CLOSE  # refused before its body was read (or part way): the rest must not be parsed as a head
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @api.exception_handler(_HTTPError)
    async def _http(request: Request, e: _HTTPError) -> JSONResponse:
        return reply(e.status, str(e), request)

    @api.exception_handler(StarletteHTTPException)
    async def _route(request: Request, e: StarletteHTTPException) -> JSONResponse:  # no such route, wrong method
        return reply(e.status_code, str(e.detail), request)

    @api.exception_handler(_TooLarge)
    async def _large(_: Request, e: _TooLarge) -> JSONResponse:
        return JSONResponse({"error": "the request body is over the size limit"}, status_code=413, headers=_CLOSE)

    @api.exception_handler(_TooSlow)
    async def _slow(_: Request, e: _TooSlow) -> JSONResponse:
        return _too_slow(body_timeout_s)

    @api.exception_handler(ClientDisconnect)
    async def _gone(_: Request, e: ClientDisconnect) -> Response:  # nobody to answer, nothing to log as a bug
        return Response(status_code=400, headers=_CLOSE)

    @api.exception_handler(StaleVersionError)
    async def _stale(request: Request, e: StaleVersionError) -> JSONResponse:
        return reply(409, str(e), request, head=e.actual)

    @api.exception_handler(DeltaError)
    async def _delta(request: Request, e: DeltaError) -> JSONResponse:
        return reply(422, f"the delta was not applied: {e}", request)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return reply(422, f"{where}: {first.get('msg', 'invalid request')}", request)

    @api.exception_handler(AceError)
    async def _ace(request: Request, e: AceError) -> JSONResponse:
        if isinstance(e, AccessDenied):
            return reply(403, str(e), request)
        if isinstance(e, QuotaExceeded):
            return JSONResponse({"error": str(e)}, status_code=429, headers={"Retry-After": "30", **_CLOSE})
        if isinstance(e, BadRequest | TooMuchWork | ImportRefused):
            return reply(422, str(e), request)
        if isinstance(e, PlaybookNotFound | VersionNotFound | EpisodeNotFound | NoMemory | ChannelNotFound):
            return reply(404, str(e), request)
        if isinstance(e, PlaybookExists | EpisodeConflict | ChannelMoved):
            return reply(409, str(e), request)
        if isinstance(e, EpisodeError):
            return reply(422, str(e), request)
        if isinstance(e, StoreIntegrityError):
            return reply(500, str(e), request)
        return reply(422 if isinstance(e, InvalidName | PlaybookFormatError) else 400, str(e), request)

    @api.exception_handler(Exception)
    async def _any(request: Request, e: Exception) -> JSONResponse:
        return reply(500, f"internal error ({type(e).__name__}); the server log has the details", request)
