"""The HTTP service over the store (``ace serve``): playbooks for agents that are not Python.

Every route but ``/v1/health`` needs ``Authorization: Bearer TOKEN``; a token is bound to namespaces and a role
(:mod:`ace.service.auth`): 401 without a valid token, 403 outside its namespaces or above its role. Errors are JSON
``{"error": "..."}`` with a clear message, never a stack trace. Bodies over ``max_body_bytes`` are refused (413)
before they are read whole. OpenAPI docs are at ``/docs``.

- ``GET  /v1/playbooks/{namespace}`` (read): the playbooks and their heads.
- ``GET  /v1/playbooks/{namespace}/{name}?version=&budget=&layout=&format=text|json`` (read): the playbook rendered
  (``text/plain``, the prompt text; ``layout`` ``sections`` or ``stable``) or as lossless JSON; ``ETag`` is the
  version.
- ``POST /v1/playbooks/{namespace}/{name}/deltas`` (write), body a delta, ``If-Match: VERSION``: 201 with the new
  version; 409 with the head when ``VERSION`` is no longer the head; 422 with the delta's error. Without
  ``If-Match`` the delta is applied on whatever the head is.
- ``PUT  /v1/playbooks/{namespace}/{name}?format=`` (write), body a playbook file (ACE text, JSON, Markdown or a
  kayba skillbook; guessed if absent): imported as version 1 of a new playbook (409 if the name is taken).
- ``GET  /v1/playbooks/{namespace}/{name}/history?since=``, ``/diff?from=&to=``, ``/blame/{bullet_id}`` and
  ``/check?from=`` (the collapse detectors over the last :data:`CHECK_SPAN` versions at most) (read).
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
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ace.errors import AceError
from ace.names import InvalidName, check_name
from ace.playbook import Delta, DeltaError, render
from ace.playbook.errors import PlaybookFormatError
from ace.playbook.formats import dumps, loads, to_json
from ace.playbook.render import Layout
from ace.service.auth import Grant, Role, Tokens
from ace.service.queue import EpisodeConflict, EpisodeError, EpisodeNotFound, EpisodeQueue, Status
from ace.store import (
    PlaybookExists,
    PlaybookNotFound,
    PlaybookStore,
    StaleVersionError,
    StoreIntegrityError,
    VersionInfo,
    VersionNotFound,
)

CHECK_SPAN = 200  # versions one /check rebuilds and compares (default: the last ones)
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a delta is small; a playbook import goes through the CLI

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _BodyLimit:
    """ASGI middleware: a request whose declared or streamed body exceeds ``limit`` bytes gets 413, unread."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
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


class _TooLarge(Exception):
    """A streamed body passed the limit while being read."""


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"the request body is over the limit of {limit} bytes"}, status_code=413)


def create_app(
    store: PlaybookStore,
    tokens: Tokens,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    queue: EpisodeQueue | None = None,
    episodes: Callable[[str], Any] | None = None,
) -> Any:
    """The ASGI application (FastAPI, wrapped in the body limit) over ``store``, guarded by ``tokens``.

    ``queue`` holds sent episodes (one is made on ``store`` if not given); ``episodes(namespace)`` opens the
    episodic memory tier of a namespace (an :class:`~ace.memory.EpisodicStore`) or returns None where there is
    none; without it, episode search answers 404."""
    api = FastAPI(title="ACE", version="1", description=__doc__)
    queue = queue or EpisodeQueue(store)

    async def grant(authorization: Annotated[str | None, Header()] = None) -> Grant:
        scheme, _, presented = (authorization or "").partition(" ")
        found = tokens.grant(presented.strip()) if scheme.lower() == "bearer" and presented.strip() else None
        if found is None:
            raise _HTTPError(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)")
        return found

    def allowed(g: Grant, namespace: str, role: Role) -> str:
        try:
            namespace = check_name(namespace, "namespace")
        except InvalidName as e:
            raise _HTTPError(422, str(e)) from None
        if not g.allows(namespace, role):
            raise _HTTPError(403, f"this token may not {role} in namespace {namespace!r}")
        return namespace

    Auth = Annotated[Grant, Depends(grant)]

    @api.get("/v1/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @api.get("/v1/playbooks/{namespace}")
    def playbooks(namespace: str, g: Auth) -> list[dict[str, Any]]:
        ns = allowed(g, namespace, "read")
        return [{"name": p.name, "head": p.head, "created_at": p.created_at.isoformat()} for p in store.list(ns)]

    @api.get("/v1/playbooks/{namespace}/{name}")
    async def playbook(
        namespace: str,
        name: str,
        g: Auth,
        version: int | None = None,
        budget: Annotated[int | None, Query(ge=0)] = None,
        layout: Layout = "sections",
        format: Literal["text", "json", "ace", "md", "skillbook"] = "text",
    ) -> Response:
        ns = allowed(g, namespace, "read")
        v, pb = store.load_versioned(name, version, namespace=ns)
        headers = {"ETag": f'"{v}"'}
        if format == "json":
            return Response(to_json(pb, indent=None), media_type="application/json", headers=headers)
        if format == "skillbook":
            return Response(dumps(pb, format), media_type="application/json", headers=headers)
        if format != "text":  # an export in the paper's text format or Markdown
            return PlainTextResponse(dumps(pb, format), headers=headers)
        return PlainTextResponse(render(pb, budget=budget, layout=layout), headers=headers)

    @api.put("/v1/playbooks/{namespace}/{name}", status_code=201)
    async def import_(
        namespace: str,
        name: str,
        request: Request,
        g: Auth,
        format: Literal["ace", "json", "md", "skillbook"] | None = None,
    ) -> dict[str, Any]:
        ns = allowed(g, namespace, "write")
        name = check_name(name, "playbook")
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise _HTTPError(422, "the playbook file is not UTF-8 text") from None
        pb = loads(text, format)
        info = store.create(name, pb, namespace=ns, author=f"token:{ns}", message="import over HTTP")
        return _made(info)

    @api.post("/v1/playbooks/{namespace}/{name}/deltas", status_code=201)
    async def commit(
        namespace: str, name: str, request: Request, g: Auth, if_match: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        ns = allowed(g, namespace, "write")
        delta = Delta.parse(await request.body())
        info = store.commit(name, delta, namespace=ns, expected_version=_if_match(if_match), author=f"token:{ns}")
        return _made(info)

    @api.post("/v1/playbooks/{namespace}/{name}/rollback", status_code=201)
    def rollback(
        namespace: str,
        name: str,
        g: Auth,
        to: Annotated[int, Query(ge=1)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        ns = allowed(g, namespace, "write")
        info = store.rollback(name, to, namespace=ns, expected_version=_if_match(if_match), author=f"token:{ns}")
        return _made(info)

    @api.get("/v1/playbooks/{namespace}/{name}/history")
    def history(namespace: str, name: str, g: Auth, since: Annotated[int, Query(ge=1)] = 1) -> list[dict[str, Any]]:
        ns = allowed(g, namespace, "read")
        return [
            {
                "version": h.version,
                "kind": h.kind,
                "digest": h.digest,
                "bullets": h.n_bullets,
                "created_at": h.created_at.isoformat(),
                "author": h.author,
                "message": h.message,
                "delta": json.loads(h.delta.to_json()) if h.delta else None,
            }
            for h in store.history(name, namespace=ns, since=since)
        ]

    @api.get("/v1/playbooks/{namespace}/{name}/diff")
    def diff(
        namespace: str,
        name: str,
        g: Auth,
        from_: Annotated[int, Query(alias="from", ge=1)],
        to: Annotated[int, Query(ge=1)],
    ) -> dict[str, Any]:
        ns = allowed(g, namespace, "read")
        d = store.diff(name, from_, to, namespace=ns)
        return {
            "added": [b.to_dict() for b in d.added],
            "removed": [b.to_dict() for b in d.removed],
            "changed": [{"id": c.after.id, "fields": list(c.fields), "after": c.after.to_dict()} for c in d.changed],
        }

    @api.get("/v1/playbooks/{namespace}/{name}/blame/{bullet_id}")
    def blame(namespace: str, name: str, bullet_id: str, g: Auth) -> list[dict[str, Any]]:
        ns = allowed(g, namespace, "read")
        return [
            {
                "version": e.version,
                "op": e.op,
                "author": e.author,
                "message": e.message,
                "created_at": e.created_at.isoformat(),
                "source": {k: v for k, v in dataclasses.asdict(e.source).items() if v is not None}
                if e.source
                else None,
            }
            for e in store.blame(name, bullet_id, namespace=ns)
        ]

    @api.get("/v1/playbooks/{namespace}/{name}/check")
    def check(
        namespace: str, name: str, g: Auth, from_: Annotated[int | None, Query(alias="from", ge=1)] = None
    ) -> dict[str, Any]:
        from ace.collapse import Detectors

        ns = allowed(g, namespace, "read")
        head = store.head_version(name, namespace=ns)
        first = from_ if from_ is not None else max(1, head - CHECK_SPAN + 1)
        if head - first + 1 > CHECK_SPAN:  # every version is rebuilt: a read token must not be able to ask for all
            raise _HTTPError(
                422, f"check at most {CHECK_SPAN} versions at a time: from={head - CHECK_SPAN + 1} or later"
            )
        history = store.history(name, namespace=ns, since=first)
        alerts = Detectors().scan([(h.version, store.load(name, h.version, namespace=ns)) for h in history])
        return {
            "versions": [history[0].version, history[-1].version] if history else [],
            "alerts": [
                {"versions": list(a.versions), "detector": a.detector, "severity": a.severity, "message": a.message}
                for a in alerts
            ],
        }

    @api.post("/v1/playbooks/{namespace}/{name}/episodes", status_code=202)
    async def send_episode(namespace: str, name: str, request: Request, g: Auth) -> Response:
        ns = allowed(g, namespace, "write")
        try:
            log = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _HTTPError(422, f"the body is not JSON: {e}") from None
        episode, new = queue.submit(name, log, namespace=ns)
        return JSONResponse(episode.to_dict(), status_code=202 if new else 200)

    @api.get("/v1/playbooks/{namespace}/{name}/episodes")
    def list_episodes(
        namespace: str,
        name: str,
        g: Auth,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        ns = allowed(g, namespace, "read")
        return [e.to_dict() for e in queue.list(namespace=ns, playbook=name, status=status, limit=limit)]

    @api.get("/v1/playbooks/{namespace}/{name}/episodes/{episode_id}")
    def episode(namespace: str, name: str, episode_id: str, g: Auth) -> dict[str, Any]:
        ns = allowed(g, namespace, "read")
        return queue.get(name, episode_id, namespace=ns).to_dict()

    @api.get("/v1/memory/{namespace}/episodes")
    def search_episodes(
        namespace: str,
        g: Auth,
        q: Annotated[str | None, Query(max_length=2000)] = None,
        k: Annotated[int, Query(ge=1, le=100)] = 5,
        playbook: str | None = None,
    ) -> list[dict[str, Any]]:
        ns = allowed(g, namespace, "read")
        tier = episodes(ns) if episodes is not None else None
        if tier is None:
            raise _HTTPError(404, "this service has no episodic memory (start it with --memory)")
        if q:
            return [
                {**dataclasses.asdict(h.episode), "similarity": round(h.similarity, 4)}
                for h in tier.search(q, k, playbook=playbook)
            ]
        return [dataclasses.asdict(e) for e in tier.recent(k) if playbook is None or e.playbook == playbook]

    @api.get("/v1/memory/{namespace}/facts")
    def facts(
        namespace: str,
        g: Auth,
        subject: str | None = None,
        relation: str | None = None,
        all: bool = False,
    ) -> list[dict[str, Any]]:
        from ace.memory import KnowledgeGraph

        ns = allowed(g, namespace, "read")
        found = KnowledgeGraph(store, namespace=ns).query(subject, relation, history=all)
        return [dataclasses.asdict(f) for f in found]

    _errors(api)
    return _BodyLimit(api, max_body_bytes)


def _if_match(header: str | None) -> int | None:
    """The version an ``If-Match`` header names (``7`` or the ETag ``"7"``), or None without one."""
    if header is None:
        return None
    tag = header.strip().strip('"')
    if not tag.isdigit():
        raise _HTTPError(422, f"If-Match must be a version number, got {header!r}")
    return int(tag)


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
    return create_app(
        PlaybookStore(settings.get("db")),
        Tokens.load(None if tokens is None else Path(tokens)),
        max_body_bytes=int(settings.get("max_body") or MAX_BODY_BYTES),
        episodes=episodic_tiers(settings.get("memory")),
    )


def episodic_tiers(location: str | None) -> Callable[[str], Any] | None:
    """Opens a namespace's episodic tier at ``location`` (a Chroma directory or server URL) for the search route;
    the embedder loads on the first search. None without a location."""
    if location is None:
        return None
    lock = threading.Lock()
    opened: dict[str, Any] = {}
    http = location.startswith(("http://", "https://"))

    def episodic(namespace: str) -> Any:
        from ace.llm.embeddings import MiniLMEmbedder
        from ace.memory import EpisodicStore

        if not http and not Path(location).is_dir():
            return None
        with lock:
            if "embedder" not in opened:
                opened["embedder"] = MiniLMEmbedder()
            if namespace not in opened:
                opened[namespace] = EpisodicStore(location, opened["embedder"], namespace=namespace)
            return opened[namespace]

    return episodic


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _errors(api: FastAPI) -> None:
    """Every error is JSON with a message; nothing else (no trace) leaves the service."""

    def reply(status: int, message: str, **extra: Any) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @api.exception_handler(_HTTPError)
    async def _http(_: Request, e: _HTTPError) -> JSONResponse:
        return reply(e.status, str(e))

    @api.exception_handler(StarletteHTTPException)
    async def _route(_: Request, e: StarletteHTTPException) -> JSONResponse:  # no such route, wrong method
        return reply(e.status_code, str(e.detail))

    @api.exception_handler(_TooLarge)
    async def _large(_: Request, e: _TooLarge) -> JSONResponse:
        return reply(413, "the request body is over the size limit")

    @api.exception_handler(StaleVersionError)
    async def _stale(_: Request, e: StaleVersionError) -> JSONResponse:
        return reply(409, str(e), head=e.actual)

    @api.exception_handler(DeltaError)
    async def _delta(_: Request, e: DeltaError) -> JSONResponse:
        return reply(422, f"the delta was not applied: {e}")

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return reply(422, f"{where}: {first.get('msg', 'invalid request')}")

    @api.exception_handler(AceError)
    async def _ace(_: Request, e: AceError) -> JSONResponse:
        if isinstance(e, PlaybookNotFound | VersionNotFound | EpisodeNotFound):
            return reply(404, str(e))
        if isinstance(e, PlaybookExists | EpisodeConflict):
            return reply(409, str(e))
        if isinstance(e, EpisodeError):
            return reply(422, str(e))
        if isinstance(e, StoreIntegrityError):
            return reply(500, str(e))
        return reply(422 if isinstance(e, InvalidName | PlaybookFormatError) else 400, str(e))

    @api.exception_handler(Exception)
    async def _any(_: Request, e: Exception) -> JSONResponse:
        return reply(500, f"internal error ({type(e).__name__}); the server log has the details")
