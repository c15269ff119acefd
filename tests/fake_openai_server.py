"""FakeOpenAIServer: a test double of a remote OpenAI-compatible API on 127.0.0.1, for fault injection.

It serves ``POST /v1/chat/completions`` (and ``/v1/embeddings``) from a script of replies, one per request:
``("ok", text)``, ``("status", code, retry_after)``, ``("slow", seconds, text)``, or, when ``responder`` is set,
from ``responder(request body) -> text`` (a reply chosen by what was asked). Every request is recorded with
the time it arrived. Requests after the script ends get the last reply again. Loopback only; it stops with the
fixture.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chat_body(
    text: str, prompt_tokens: int = 11, completion_tokens: int = 7, model: str = "fake-model"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FakeOpenAIServer:
    def __init__(self, port: int = 0) -> None:  # port 0: any free port
        self.script: list[tuple[Any, ...]] = [("ok", "hello")]
        self.requests: list[dict[str, Any]] = []
        self.usage = (11, 7)
        self.responder: Callable[[dict[str, Any]], str] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                index = len(server.requests)
                server.requests.append({"path": self.path, "body": body, "at": time.monotonic()})
                step = server.script[min(index, len(server.script) - 1)]
                if server.responder is not None and not self.path.endswith("/embeddings"):
                    step = ("ok", server.responder(body))
                if self.path.endswith("/embeddings"):
                    data = [
                        {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                        for i, t in enumerate(body["input"])
                    ]
                    return self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "model": body["model"],
                            "usage": {"prompt_tokens": 1, "total_tokens": 1},
                        },
                    )
                kind = step[0]
                if kind == "status":
                    headers = {"retry-after": str(step[2])} if len(step) > 2 and step[2] is not None else {}
                    return self._send(
                        step[1], {"error": {"message": f"injected {step[1]}", "type": "injected"}}, headers
                    )
                if kind == "slow":
                    time.sleep(step[1])
                    return self._send(200, chat_body(step[2], *server.usage))
                return self._send(200, chat_body(step[1], *server.usage))

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
