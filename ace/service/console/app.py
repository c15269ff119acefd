"""The console's ASGI application (Starlette + Jinja2), mounted by :func:`ace.service.app.create_app` at ``/ui``.

Sign-in: ``GET /login`` shows a form (with a sign-in nonce in an HttpOnly cookie and the form); ``POST /login`` checks
the token against the service's :class:`~ace.service.auth.Tokens` and sets the ``ace_console`` cookie (HttpOnly,
SameSite=Strict, Secure over https, scoped to the console's path): a signed session (:func:`session_cookie`: a random
nonce, the times it was issued and expires, a digest of the token, never the token, and an HMAC of them under the
token). A cookie changed in any part, expired, of a token no longer in the tokens file, or signed out is no session.
Signing out records the nonce as revoked in this process (``ace serve --processes N``: in the process that answered;
the others take the cookie until it expires, 12 h, or its token is removed from the tokens file). Every form of a
signed-in page carries ``csrf`` = HMAC-SHA256(token, nonce): no other origin can read the cookie to make one, and it
changes at every sign-in. Every POST must also name this origin in ``Origin`` (or ``Referer``). A read
token gets no write or review controls; a POST it makes anyway reaches the service's role check and is a 403.

Pages: ``/`` (namespaces and playbooks), ``/p/{ns}/{name}`` (prompt, sections, bullets, search), ``…/timeline``,
``…/diff?from=&to=``, ``…/blame/{id}``, ``…/review`` (approve whole or in part, edit, reject), ``…/episodes``
(the queue, and episode search in the episodic memory), ``…/check``, ``/n/{ns}/facts`` (the knowledge graph), and
``/runs``, ``/runs/{run}`` (the step table), ``/runs/{run}/report`` (:mod:`ace.service.console.runs`). Errors are
pages saying what went wrong, with the status the HTTP service would answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ace.errors import AceError
from ace.names import InvalidName
from ace.playbook.errors import DeltaError, PlaybookFormatError
from ace.runs.workspace import runs_dir as default_runs_dir
from ace.service.auth import Grant, Tokens, token_digest
from ace.service.console import runs as run_pages
from ace.service.console import views
from ace.service.console.runs import ReportRenderer, RunNotFound, RunsDir
from ace.service.core import MAX_NUMBER, PROMPT_BUDGET, AccessDenied, BadRequest, NoMemory, Service, TooMuchWork
from ace.service.queue import EpisodeNotFound
from ace.store import (
    ChannelMoved,
    ChannelNotFound,
    PlaybookNotFound,
    StaleVersionError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.visible import code, spans

HERE = Path(__file__).resolve().parent
COOKIE = "ace_console"  # the session: nonce.issued.expires.token digest.HMAC (session_cookie)
LOGIN_COOKIE = "ace_login"  # the sign-in form's nonce
MAX_TOKEN_CHARS = 2048  # a cookie holds about 4 KiB; a token longer than this is no token of ours
MAX_FORM_BYTES = 1 << 20  # a console form is a few fields, or a reviewer's edit (the API's body limit)
MAX_FORM_FIELDS = 1100  # a checkbox per version waiting for review (at most 1,000, as the API takes) and a few more
MAX_FIELD_CHARS = 2000  # a reason, as the service bounds it
MAX_EDIT_CHARS = 200_000  # a reviewer's edit: a delta as a curator writes it
SHOWN_CHARS = 600  # of a bullet's content in lists (the whole of it on its blame page)
SESSION_S = 12 * 3600  # a console cookie lasts this long (signing in again renews it)
FLASH_S = 120  # the review page's banner after an approval or a rejection is shown this long after it

log = logging.getLogger("ace.service.console")

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


def show(value: object, limit: int | None = None) -> Markup:
    """``value`` as HTML text: escaped, every invisible or direction-changing character shown as ``⟨U+XXXX⟩``
    (:mod:`ace.visible`), and cut to ``limit`` characters with how many more there are."""
    text = "" if value is None else str(value)
    cut = 0
    if limit is not None and len(text) > limit:
        text, cut = text[:limit], len(text) - limit
    parts = [
        f'<span class="cc" title="U+{ord(t):04X}">{code(t)}</span>' if is_code else str(escape(t))
        for t, is_code in spans(text)
    ]
    if cut:
        parts.append(f'<span class="more">… ({cut:,} more characters)</span>')
    return Markup("".join(parts))


def _when(value: object) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored)."""
    text = "" if value is None else str(value)
    return text[:19].replace("T", " ")


def _stamp(value: object) -> str:
    """A POSIX time (a file's, an episode's) as ``YYYY-MM-DD HH:MM:SS`` UTC; anything else as it is."""
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "" if value is None else str(value)[:40]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["show"] = show
    env.filters["when"] = _when
    env.filters["stamp"] = _stamp
    env.filters["q"] = lambda v: quote(str(v), safe="")
    env.filters["signed"] = lambda n: "" if n is None else (f"+{n}" if n > 0 else str(n))
    return env


class _NotSignedIn(Exception):
    """No valid console cookie."""


class _Refused(Exception):
    """A POST without a valid CSRF token or from another origin (403)."""


def _session_mac(token: str, body: str) -> str:
    return hmac.new(token.encode("utf-8"), b"ace-console-session:" + body.encode("ascii"), hashlib.sha256).hexdigest()


def session_cookie(token: str, *, now: float | None = None) -> str:
    """A new session's cookie: ``nonce.issued.expires.digest.mac``: a random nonce, the times (POSIX seconds), the
    token's :func:`~ace.service.auth.token_digest` (never the token) and an HMAC-SHA256 of them under the token, so
    only the server (which holds the token) makes one and nothing in it can be changed."""
    issued = int(time.time() if now is None else now)
    body = f"{secrets.token_hex(16)}.{issued}.{issued + SESSION_S}.{token_digest(token)}"
    return body + "." + _session_mac(token, body)


_COOKIE_SHAPE = re.compile(r"([0-9a-f]{32})\.([0-9]{1,12})\.([0-9]{1,12})\.([0-9a-f]{32})\.([0-9a-f]{64})")


class Revoked:
    """The nonces of the sessions signed out in this process, until their cookie would have expired anyway."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, nonce: str, expires: int) -> None:
        with self._lock:
            now = time.time()
            if len(self._held) >= self.size:  # expired ones first; a full table drops those that expire soonest
                self._held = {n: e for n, e in self._held.items() if e > now}
                over = max(0, len(self._held) - self.size + 1)
                for n, _ in sorted(self._held.items(), key=lambda item: item[1])[:over]:
                    del self._held[n]
            self._held[nonce] = expires

    def __contains__(self, nonce: object) -> bool:
        with self._lock:
            return nonce in self._held


def _flash(session: Session, kind: str, *, now: float | None = None) -> str:
    """The review page's banner after this session's own POST: ``kind.time.mac`` (an HMAC under the session's CSRF
    value, which no other session or link can make), shown for :data:`FLASH_S` seconds."""
    body = f"{kind}.{int(time.time() if now is None else now)}"
    mac = hmac.new(session.csrf.encode(), b"ace-console-flash:" + body.encode(), hashlib.sha256).hexdigest()
    return body + "." + mac[:32]


def _flashed(session: Session, value: str | None, *, now: float | None = None) -> str | None:
    """The banner's kind if ``value`` is a flash this session made lately, else None (a link cannot fake one)."""
    kind, _, rest = (value or "").partition(".")
    stamp = rest.partition(".")[0]
    if kind not in ("approved", "part", "rejected") or not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return None
    age = (time.time() if now is None else now) - int(stamp)
    if not -5 <= age <= FLASH_S:
        return None
    return kind if hmac.compare_digest(_flash(session, kind, now=int(stamp)), value or "") else None


def _csrf(token: str, nonce: str) -> str:
    return hmac.new(token.encode("utf-8"), b"ace-console-csrf:" + nonce.encode("ascii"), hashlib.sha256).hexdigest()


class Form(dict[str, str]):
    """A form's fields, each its first value; every value of a repeated field (checkboxes) in :attr:`all`."""

    def __init__(self, fields: dict[str, list[str]] | None = None) -> None:
        self.all: dict[str, list[str]] = fields or {}
        super().__init__({k: v[0] for k, v in self.all.items()})


class Session:
    """A signed-in request: the grant, the token's CSRF value for forms, the session's nonce and expiry."""

    def __init__(self, grant: Grant, csrf: str, nonce: str = "", expires: int = 0) -> None:
        self.grant, self.csrf, self.nonce, self.expires = grant, csrf, nonce, expires


def create_console(
    svc: Service, tokens: Tokens, *, runs_dir: Path | None = None, run_report: ReportRenderer | None = None
) -> Starlette:
    """The console over ``svc``, signed in with ``tokens`` (those of the HTTP service). Its runs page reads
    ``runs_dir`` (default :func:`ace.runs.workspace.runs_dir`), and shows a run's report made by ``run_report`` (a
    run directory or trajectory -> ``ace report``'s HTML page; without one, no report page)."""
    env = _environment()
    states, reviews, alerts = views.States(), views.Reviews(), views.Alerts()
    runs = RunsDir(runs_dir if runs_dir is not None else default_runs_dir(), run_report)
    revoked = Revoked()

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def page(
        request: Request, template: str, context: dict[str, Any], *, status: int = 200, session: Session | None = None
    ) -> HTMLResponse:
        root = base(request)
        html = env.get_template(template).render(
            **context, base=root, session=session, grant=None if session is None else session.grant
        )
        return HTMLResponse(html, status_code=status, headers=_headers())

    def session_of(request: Request) -> Session:
        """The session of the request's cookie: its MAC checks under a token of the tokens file (as it is now: a
        token removed there ends its sessions), it has not expired and it was not signed out."""
        m = _COOKIE_SHAPE.fullmatch(request.cookies.get(COOKIE, ""))
        if m is None:
            raise _NotSignedIn
        nonce, issued, expires, digest, mac = m.groups()
        now = time.time()
        if not int(issued) - 60 <= now < int(expires) or int(expires) - int(issued) > SESSION_S or nonce in revoked:
            raise _NotSignedIn
        found = tokens.by_digest(digest)
        if found is None:
            raise _NotSignedIn
        token, grant = found
        if not hmac.compare_digest(_session_mac(token, f"{nonce}.{issued}.{expires}.{digest}"), mac):
            raise _NotSignedIn
        return Session(grant, _csrf(token, nonce), nonce, int(expires))

    def same_origin(request: Request) -> bool:
        claimed = request.headers.get("origin") or request.headers.get("referer")
        if not claimed or claimed == "null":
            return False
        parts = urlsplit(claimed)
        host = request.headers.get("host", "")
        return parts.scheme == request.url.scheme and parts.netloc == host

    async def form(request: Request) -> Form:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return Form()  # not a form of ours: no fields, so no CSRF token (403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadRequest(f"a console form is at most {MAX_FORM_BYTES:,} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the form is not UTF-8 text") from None
        try:
            fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
        except ValueError:
            raise BadRequest(f"a console form has at most {MAX_FORM_FIELDS:,} fields") from None
        return Form(fields)

    async def checked_post(request: Request) -> tuple[Session, Form]:
        """A signed-in POST from this origin with the session's CSRF token, and its fields."""
        session = session_of(request)
        if not same_origin(request):
            raise _Refused("this form was not sent from the console's own page (Origin)")
        fields = await form(request)
        if not hmac.compare_digest(fields.get("csrf", "").encode(), session.csrf.encode()):
            raise _Refused("the form's CSRF token is missing or stale: reload the page and try again")
        return session, fields

    def signed_in(handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request, session_of(request))
            except _NotSignedIn:
                if request.method != "GET":
                    return page(request, "error.html", {"status": 401, "message": "sign in first"}, status=401)
                target = base(request) + "/login?next=" + quote(request.url.path + _query(request), safe="")
                response = RedirectResponse(target, status_code=303, headers=_headers())
                response.delete_cookie(COOKIE, path=base(request) + "/")
                return response
            except _Refused as e:
                return page(request, "error.html", {"status": 403, "message": str(e)}, status=403)
            except AceError as e:
                status, message = _status(e)
                return page(
                    request,
                    "error.html",
                    {"status": status, "message": message},
                    status=status,
                    session=_maybe(request),
                )

        return run

    def _maybe(request: Request) -> Session | None:
        try:
            return session_of(request)
        except _NotSignedIn:
            return None

    async def run(kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await svc.run("heavy" if kind == "heavy" else "read", fn, *args, **kwargs)

    # -- sign-in ----------------------------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        nonce = secrets.token_hex(16)
        nxt = _safe_next(request.query_params.get("next"), base(request))
        response = page(request, "login.html", {"nonce": nonce, "next": nxt, "error": None})
        _set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    async def login(request: Request) -> Response:
        try:
            fields = await form(request)
        except BadRequest as e:
            return page(request, "error.html", {"status": 422, "message": str(e)}, status=422)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not same_origin(request) or not nonce or not hmac.compare_digest(fields.get("csrf", ""), nonce):
            return page(
                request,
                "error.html",
                {
                    "status": 403,
                    "message": "sign in from the console's own sign-in "
                    "page (its form was stale or sent from elsewhere): reload it",
                },
                status=403,
            )
        token = fields.get("token", "").strip()
        nxt = _safe_next(fields.get("next"), base(request))
        grant = tokens.grant(token) if token and len(token) <= MAX_TOKEN_CHARS else None
        if grant is None:
            log.info("console: a sign-in with an unknown token")
            fresh = secrets.token_hex(16)
            failed = page(
                request, "login.html", {"nonce": fresh, "next": nxt, "error": "that token is not valid"}, status=401
            )
            _set_cookie(failed, request, LOGIN_COOKIE, fresh, max_age=3600)
            return failed
        response = RedirectResponse(nxt, status_code=303, headers=_headers())
        _set_cookie(response, request, COOKIE, session_cookie(token), max_age=SESSION_S)
        response.delete_cookie(LOGIN_COOKIE, path=base(request) + "/")
        return response

    async def logout(request: Request, session: Session) -> Response:
        await checked_post(request)
        revoked.add(session.nonce, session.expires)  # this cookie, wherever it was copied, is signed out here
        response = RedirectResponse(base(request) + "/login", status_code=303, headers=_headers())
        response.delete_cookie(COOKIE, path=base(request) + "/")
        return response

    # -- pages ----------------------------------------------------------------------------------------------------
    async def home(request: Request, session: Session) -> Response:
        ctx = await run("read", views.index, svc, session.grant, page=_int(request, "page", 1))
        await run("heavy", views.index_alerts, svc, session.grant, ctx["rows"], alerts)
        return page(request, "index.html", {**ctx, "alert_versions": views.ALERT_VERSIONS}, session=session)

    def where(request: Request) -> tuple[str, str]:
        return request.path_params["namespace"], request.path_params["name"]

    def pb_page(request: Request, template: str, ctx: dict[str, Any], session: Session, tab: str) -> Response:
        ns, name = where(request)
        can = {r: session.grant.allows(ns, r) for r in ("write", "review", "admin")}
        pb = f"{base(request)}/p/{quote(ns, safe='')}/{quote(name, safe='')}"
        return page(
            request, template, {**ctx, "ns": ns, "name": name, "tab": tab, "can": can, "pb": pb}, session=session
        )

    async def overview(request: Request, session: Session) -> Response:
        ns, name = where(request)
        budget_text = request.query_params.get("budget", "")
        budget = None if budget_text == "all" else _int(request, "budget", PROMPT_BUDGET, low=0)
        ctx = await run(
            "read",
            views.playbook,
            svc,
            session.grant,
            ns,
            name,
            states,
            q=_text(request, "q"),
            section=_text(request, "section"),
            page=_int(request, "page", 1),
            budget=budget,
            version=_int(request, "version", None),
        )
        return pb_page(request, "playbook.html", ctx, session, "overview")

    async def timeline(request: Request, session: Session) -> Response:
        ns, name = where(request)
        ctx = await run("read", views.timeline, svc, session.grant, ns, name, page=_int(request, "page", 1))
        ctx["alerts"] = await run("heavy", alerts.get, svc, session.grant, ns, name, ctx["head"], ctx["head_bullets"])
        return pb_page(request, "timeline.html", ctx, session, "timeline")

    async def diff(request: Request, session: Session) -> Response:
        ns, name = where(request)
        v2 = _int(request, "to", None)
        if v2 is None:  # the head's last change
            head = next(
                c["version"]
                for c in await svc.run("read", svc.channels, session.grant, ns, name)
                if c["channel"] == "candidate"
            )
            v2 = head
        v1 = _int(request, "from", max(1, v2 - 1))
        ctx = await run(
            "read", views.diff, svc, session.grant, ns, name, v1, v2, page=_int(request, "page", 1), states=states
        )
        return pb_page(request, "diff.html", ctx, session, "diff")

    async def blame(request: Request, session: Session) -> Response:
        ns, name = where(request)
        bullet_id = request.path_params["bullet_id"]
        ctx = await run("read", views.blame, svc, session.grant, ns, name, bullet_id, states)
        status = 200 if ctx["rows"] else 404
        response = pb_page(request, "blame.html", ctx, session, "blame")
        response.status_code = status
        return response

    async def review(request: Request, session: Session) -> Response:
        ns, name = where(request)
        ctx = await run("heavy", views.review, svc, session.grant, ns, name, states, reviews)
        ctx["done"] = _flashed(session, request.query_params.get("done"))  # only after this session's own POST
        return pb_page(
            request, "review.html", {**ctx, "csrf": session.csrf, "form": None, "form_error": None}, session, "review"
        )

    async def approve(request: Request, session: Session) -> Response:
        """Serve the candidate reviewed, or (the form's checkboxes and edit) part of the change, or the change as
        the reviewer edited it (:meth:`Service.approve` with ``only`` and ``edit``). What the service refuses (a
        version kept that needs one left out, an edit that is no valid delta, learning that moved on since) is
        shown on the review page above the form as it was sent; nothing is written."""
        ns, name = where(request)
        session, fields = await checked_post(request)
        to = _field_int(fields, "to")
        reason = fields.get("reason", "").strip() or None
        edit = fields.get("edit", "")
        part = fields.get("part") == "1"
        sent = {"reason": reason or "", "edit": edit[:MAX_EDIT_CHARS], "keep": set(fields.all.get("keep", []))}
        try:
            if reason is not None and len(reason) > MAX_FIELD_CHARS:  # as the API and the reject form: never cut
                raise BadRequest(f"a reason is at most {MAX_FIELD_CHARS:,} characters, not {len(reason):,}")
            if len(edit) > MAX_EDIT_CHARS:
                raise BadRequest(f"an edit is at most {MAX_EDIT_CHARS:,} characters")
            keep = sorted({_number(v, "keep", 1) for v in fields.all.get("keep", [])}) if part else None
            done = await svc.run("write", views.approve, svc, session.grant, ns, name, to=to, reason=reason,
                                 keep=keep, edit=edit)  # fmt: skip
        except AccessDenied:
            raise
        except AceError as e:  # shown on the page, the form as it was sent
            status, message = _status(e)
            reviews.forget(ns, name)
            ctx = await run("heavy", views.review, svc, session.grant, ns, name, states, reviews)
            ctx.update(done=None, csrf=session.csrf, form=sent, form_error=message)
            response = pb_page(request, "review.html", ctx, session, "review")
            response.status_code = status
            return response
        reviews.forget(ns, name)
        return _back(request, "/review?done=" + _flash(session, "part" if done["part"] else "approved"))

    async def reject(request: Request, session: Session) -> Response:
        ns, name = where(request)
        session, fields = await checked_post(request)
        candidate = _field_int(fields, "candidate")
        reason = fields.get("reason", "")
        await svc.run("write", svc.reject, session.grant, ns, name, candidate=candidate, reason=reason)
        reviews.forget(ns, name)
        return _back(request, "/review?done=" + _flash(session, "rejected"))

    def _back(request: Request, suffix: str) -> Response:
        ns, name = where(request)
        target = f"{base(request)}/p/{quote(ns, safe='')}/{quote(name, safe='')}{suffix}"
        return RedirectResponse(target, status_code=303, headers=_headers())

    async def episodes(request: Request, session: Session) -> Response:
        ns, name = where(request)
        status = request.query_params.get("status") or None
        ctx = await run("read", views.episodes, svc, session.grant, ns, name, status=status)
        q, every = _text(request, "q"), request.query_params.get("all") == "1"
        found = await run("heavy", views.search, svc, session.grant, ns, name, q, every=every)
        ctx.update(q=q, every=every, hits=found["hits"], search_problem=found["problem"])
        return pb_page(request, "episodes.html", ctx, session, "episodes")

    async def check(request: Request, session: Session) -> Response:
        ns, name = where(request)
        ctx = await run("heavy", views.check, svc, session.grant, ns, name, first=_int(request, "from", None))
        return pb_page(request, "check.html", ctx, session, "check")

    async def facts(request: Request, session: Session) -> Response:
        ns = request.path_params["namespace"]
        ctx = await run(
            "read",
            views.facts,
            svc,
            session.grant,
            ns,
            subject=_text(request, "subject"),
            relation=_text(request, "relation"),
            history=request.query_params.get("all") == "1",
        )
        return page(request, "facts.html", {**ctx, "ns": ns}, session=session)

    async def runs_index(request: Request, session: Session) -> Response:
        ctx = await run("read", run_pages.listing, runs, session.grant)
        return page(request, "runs.html", ctx, session=session)

    async def run_one(request: Request, session: Session) -> Response:
        name = request.path_params["run"]
        file = _text(request, "t") or None
        ctx = await run(
            "heavy", run_pages.run_page, runs, session.grant, name, file=file, page=_int(request, "page", 1)
        )
        return page(request, "run.html", ctx, session=session)

    async def run_report_page(request: Request, session: Session) -> Response:
        """``ace report``'s page of a run, as it is (its own style and embedded plots, no script): served under a
        policy that lets it have only those, in a sandbox."""
        run_pages.may_read_runs(session.grant)
        html = await run("heavy", runs.report_page, request.path_params["run"])
        return HTMLResponse(html, headers={**_headers(), "Content-Security-Policy": REPORT_POLICY})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = "no such page" if status == 404 else str(getattr(exc, "detail", "refused"))
        return page(
            request, "error.html", {"status": status, "message": message}, status=status, session=_maybe(request)
        )

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return page(request, "error.html", {"status": 500, "message": message}, status=500)

    pb = "/p/{namespace}/{name}"
    routes = [
        Route("/", signed_in(home)),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", signed_in(logout), methods=["POST"]),
        Route(pb, signed_in(overview)),
        Route(pb + "/timeline", signed_in(timeline)),
        Route(pb + "/diff", signed_in(diff)),
        Route(pb + "/blame/{bullet_id}", signed_in(blame)),
        Route(pb + "/review", signed_in(review)),
        Route(pb + "/review/approve", signed_in(approve), methods=["POST"]),
        Route(pb + "/review/reject", signed_in(reject), methods=["POST"]),
        Route(pb + "/episodes", signed_in(episodes)),
        Route(pb + "/check", signed_in(check)),
        Route("/n/{namespace}/facts", signed_in(facts)),
        Route("/runs", signed_in(runs_index)),
        Route("/runs/{run}", signed_in(run_one)),
        Route("/runs/{run}/report", signed_in(run_report_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crashed})


# a run's report page has its own inline style and embedded images, and no script: nothing else, in a sandbox
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
                 "frame-ancestors 'none'; base-uri 'none'; sandbox")  # fmt: skip


def _headers() -> dict[str, str]:
    """What every console answer carries: a strict content policy (only this origin's scripts and styles, no
    framing), no sniffing, no caching of pages that hold a playbook."""
    return {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _set_cookie(response: Response, request: Request, key: str, value: str, *, max_age: int) -> None:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    response.set_cookie(
        key,
        value,
        max_age=max_age,
        path=root + "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _safe_next(value: str | None, root: str) -> str:
    """Where to go after signing in: a path of the console itself (its dot segments resolved, ``%2e`` too, as a
    browser resolves them), never another site."""
    home = root + "/"
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return home
    if any(not ch.isprintable() for ch in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return home
    segments: list[str] = []
    for segment in parts.path.split("/")[1:]:
        dots = unquote(segment)
        if dots == "..":
            if segments:
                segments.pop()
        elif dots != ".":
            segments.append(segment)
    if unquote(parts.path.rsplit("/", 1)[-1]) in (".", ".."):
        segments.append("")  # "/ui/p/.." is the directory "/ui/"
    path = "/" + "/".join(segments)
    if not path.startswith(home):
        return home
    return path + ("?" + parts.query if parts.query else "")


def _query(request: Request) -> str:
    return "?" + request.url.query if request.url.query else ""


def _text(request: Request, key: str) -> str:
    value = request.query_params.get(key, "")
    if len(value) > MAX_FIELD_CHARS:
        raise BadRequest(f"{key} is at most {MAX_FIELD_CHARS} characters")
    return value


def _int(request: Request, key: str, default: Any, *, low: int = 1) -> Any:
    value = request.query_params.get(key)
    if value is None or value == "":
        return default
    return _number(value, key, low)


def _field_int(fields: dict[str, str], key: str) -> int:
    return _number(fields.get(key, ""), key, 1)


def _number(value: str, key: str, low: int) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or not low <= int(value) <= MAX_NUMBER:
        raise BadRequest(f"{key} must be a whole number from {low} to {MAX_NUMBER}, got {value[:20]!r}")
    return int(value)


def _status(e: AceError) -> tuple[int, str]:
    """The status and message of an error, as the HTTP service answers it."""
    if isinstance(e, AccessDenied):
        return 403, str(e)
    if isinstance(e, PlaybookNotFound | VersionNotFound | EpisodeNotFound | NoMemory | ChannelNotFound | RunNotFound):
        return 404, str(e)
    if isinstance(e, StaleVersionError | ChannelMoved):
        return 409, f"{e} (someone moved it since the page was shown: look again)"
    if isinstance(e, BadRequest | TooMuchWork | InvalidName | PlaybookFormatError | DeltaError):
        return 422, str(e)
    if isinstance(e, StoreIntegrityError):
        return 500, str(e)
    return 400, str(e)
