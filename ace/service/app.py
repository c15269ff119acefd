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
- ``GET  /v1/playbooks/{namespace}/{name}/history?since=`` and ``/diff?from=&to=`` (read).
"""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ace.errors import AceError
from ace.names import InvalidName, check_name
from ace.playbook import Delta, DeltaError, render
from ace.playbook.formats import to_json
from ace.playbook.render import Layout
from ace.service.auth import Grant, Role, Tokens
from ace.store import (
    PlaybookNotFound,
    PlaybookStore,
    StaleVersionError,
    StoreIntegrityError,
    VersionNotFound,
)

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


def create_app(store: PlaybookStore, tokens: Tokens, *, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The ASGI application (FastAPI, wrapped in the body limit) over ``store``, guarded by ``tokens``."""
    api = FastAPI(title="ACE", version="1", description=__doc__)

    def grant(authorization: Annotated[str | None, Header()] = None) -> Grant:
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
    def playbook(
        namespace: str,
        name: str,
        g: Auth,
        version: int | None = None,
        budget: Annotated[int | None, Query(ge=0)] = None,
        layout: Layout = "sections",
        format: Literal["text", "json"] = "text",
    ) -> Response:
        ns = allowed(g, namespace, "read")
        v, pb = store.load_versioned(name, version, namespace=ns)
        headers = {"ETag": f'"{v}"'}
        if format == "json":
            return Response(to_json(pb, indent=None), media_type="application/json", headers=headers)
        return PlainTextResponse(render(pb, budget=budget, layout=layout), headers=headers)

    @api.post("/v1/playbooks/{namespace}/{name}/deltas", status_code=201)
    async def commit(
        namespace: str, name: str, request: Request, g: Auth, if_match: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        ns = allowed(g, namespace, "write")
        expected = None
        if if_match is not None:
            tag = if_match.strip().strip('"')
            if not tag.isdigit():
                raise _HTTPError(422, f"If-Match must be a version number, got {if_match!r}")
            expected = int(tag)
        delta = Delta.parse(await request.body())
        author = f"token:{ns}"
        info = store.commit(name, delta, namespace=ns, expected_version=expected, author=author)
        return {"version": info.version, "digest": info.digest, "bullets": info.n_bullets}

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

    _errors(api)
    return _BodyLimit(api, max_body_bytes)


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
        if isinstance(e, PlaybookNotFound | VersionNotFound):
            return reply(404, str(e))
        if isinstance(e, StoreIntegrityError):
            return reply(500, str(e))
        return reply(422 if isinstance(e, InvalidName) else 400, str(e))

    @api.exception_handler(Exception)
    async def _any(_: Request, e: Exception) -> JSONResponse:
        return reply(500, f"internal error ({type(e).__name__}); the server log has the details")
