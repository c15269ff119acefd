"""Running the service's ASGI apps under uvicorn with the limits an exposed server needs.

uvicorn's fast HTTP parser (httptools) takes headers of any size and gives a connection that sends its request
head slowly all the time it wants: a 64 MiB ``Authorization`` header stalled every request of ``ace serve`` for
11 s, and 500 connections trickling their headers were all held open. :class:`GuardedHttpTools` adds what it
lacks:

- a request head (request line and headers) larger than :data:`MAX_HEAD_BYTES` or with more than
  :data:`MAX_HEADERS` headers is answered ``431`` and the connection closed, before more of it is read;
- a head that is not complete :data:`HEAD_TIMEOUT_S` seconds after its first byte (or after the connection opened)
  closes the connection (slowloris);
- from :data:`SHED_AT` open connections on, each new connection closes the ones that have waited longest (over
  :data:`SHED_AFTER_S`) for a request head, so that connections opened and left silent cannot fill the bound and
  lock every client out; uvicorn's "Exceeded concurrency limit" warning is logged at most once per 10 s;

and :func:`run` starts uvicorn with them, an idle keep-alive timeout and a bound on open connections (503 beyond).
Without httptools uvicorn's h11 parser is used, with the same head limit (``h11_max_incomplete_event_size``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ace.errors import InvalidInput

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; a browser sends a few KiB at most
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0  # from a connection's first byte (or its opening) to the end of the request's head
KEEP_ALIVE_S = 5.0  # an idle keep-alive connection is closed after this long
MAX_CONNECTIONS = 2048  # open connections and requests in progress; beyond, 503
SHED_AT = MAX_CONNECTIONS * 3 // 4  # from this many open connections, each new one closes stalled ones
SHED_AFTER_S = 1.0  # a connection waiting this long for a request head may be closed under pressure
SHED_BATCH = 8  # closed per new connection, oldest first (at least as many as bring the count under SHED_AT)

log = logging.getLogger("ace.server")

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools not installed: h11 with its own head limit
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _OncePer(logging.Filter):
    """Lets a record whose message starts with ``prefix`` through at most once per ``seconds`` (a flood of
    refused connections must not become a flood of log lines); says how many were held back."""

    def __init__(self, prefix: str, seconds: float) -> None:
        super().__init__()
        self.prefix, self.seconds, self.last, self.held = prefix, seconds, -float("inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < self.seconds:
            self.held += 1
            return False
        if self.held:
            record.msg = f"{record.msg} ({self.held} more in the last {now - self.last:.0f} s)"
        self.last, self.held = now, 0
        return True


def _quiet_concurrency_warnings(logger: logging.Logger) -> None:
    if not any(isinstance(f, _OncePer) for f in logger.filters):
        logger.addFilter(_OncePer("Exceeded concurrency limit", 10.0))


def _status_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP response that closes the connection, its body JSON ``{"error": ...}`` like every other error."""
    body = json.dumps({"error": message}).encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


if HttpToolsProtocol is not None:

    class GuardedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol with a bound on each request head's size, its header count and the time it
        takes to arrive."""

        max_head_bytes = MAX_HEAD_BYTES
        max_headers = MAX_HEADERS
        head_timeout_s = HEAD_TIMEOUT_S
        shed_at, shed_after_s, shed_batch = SHED_AT, SHED_AFTER_S, SHED_BATCH

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0  # bytes received while in the head (a head that never ends)
            self._parsed_head = 0  # the parsed head's size (a whole head that came in one piece)
            self._too_big = False
            self._n_headers = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._waiting_since = 0.0
            _quiet_concurrency_warnings(self.logger)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._waiting_since = self.loop.time()
            self._arm()
            if len(self.connections) >= self.shed_at:
                self._shed()

        def _shed(self) -> None:
            """Near the connection bound, close the connections that have been waiting longest for a request
            head (slow or idle ones): a client holding many of them must not lock everyone else out."""
            now = self.loop.time()
            waiting = sorted(
                (c for c in self.connections if isinstance(c, GuardedHttpTools) and c is not self and c._in_head),
                key=lambda c: c._waiting_since,
            )
            for c in waiting[: max(self.shed_batch, len(self.connections) - self.shed_at + 1)]:
                if now - c._waiting_since < self.shed_after_s:
                    break
                c._disarm()
                c.transport.write(_status_response(408, "Request Timeout", "the server is busy: no request came"))
                c.transport.close()
                self.connections.discard(c)  # counted out now, not when the loop gets to its connection_lost

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                log.info("closing a connection whose request head took over %.0f s", self.head_timeout_s)
                self.transport.write(_status_response(408, "Request Timeout", "the request head came too slowly"))
                self.transport.close()

        def _refuse(self, why: str) -> None:
            self._disarm()
            self.transport.write(_status_response(431, "Request Header Fields Too Large", why))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            if self._in_head:
                self._arm()
                self._head_bytes += len(data)
            super().data_received(data)
            # still in the head after this chunk (a chunk may also hold the body, so this is checked after it)
            if self._in_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                self._refuse(f"the request head is over {self.max_head_bytes} bytes")

        def on_url(self, url: bytes) -> None:
            self._parsed_head += len(url)
            if self._parsed_head > self.max_head_bytes:
                self._too_big = True
                raise InvalidInput("head too large")
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._n_headers += 1
            self._parsed_head += len(name) + len(value) + 4
            if self._parsed_head > self.max_head_bytes:
                self._too_big = True
            if self._too_big or self._n_headers > self.max_headers:  # the parser stops on an error raised here
                raise InvalidInput("head too large")
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._too_big:
                self._refuse(f"the request head is over {self.max_head_bytes} bytes")
            elif self._n_headers > self.max_headers:
                self._refuse(f"the request has more than {self.max_headers} headers")
            else:
                super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            # the next request's head starts now (its timer starts with its first byte)
            self._in_head, self._head_bytes, self._parsed_head, self._n_headers = True, 0, 0, 0
            self._waiting_since = self.loop.time()
            super().on_response_complete()

else:  # pragma: no cover
    GuardedHttpTools = None  # type: ignore[assignment,misc]


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings every ACE server runs with (the limits in this module's doc)."""
    options: dict[str, Any] = {
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": MAX_CONNECTIONS,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
    if GuardedHttpTools is not None:
        options["http"] = GuardedHttpTools
    return options


def run(app: Any, *, host: str, port: int, processes: int = 1, factory: bool = False, **kwargs: Any) -> None:
    """``uvicorn.run`` with :func:`uvicorn_options`; ``app`` is an import string when ``processes > 1``."""
    import uvicorn

    options = uvicorn_options()
    if processes > 1 and GuardedHttpTools is not None:
        options["http"] = f"{__name__}:GuardedHttpTools"
    uvicorn.run(
        app, host=host, port=port, workers=processes if processes > 1 else None, factory=factory, **options, **kwargs
    )


__all__ = ["HEAD_TIMEOUT_S", "MAX_HEADERS", "MAX_HEAD_BYTES", "GuardedHttpTools", "run", "uvicorn_options"]
