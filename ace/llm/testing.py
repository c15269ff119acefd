"""A scripted provider for tests of logic that has nothing to do with the model (queues, leases, workers, hooks,
memory), like httpx's ``MockTransport`` or pydantic-ai's ``TestModel``.

>>> from ace.llm import LLM
>>> from ace.llm.testing import ScriptedProvider
>>> provider = ScriptedProvider(["first reply", {"final_answer": "42"}])
>>> LLM(provider).call("hello").text
'first reply'
>>> provider.calls[0].messages[-1].content
'hello'

A reply is one of:

- a ``str``: the completion's text, as it is;
- a ``dict``, ``list`` or pydantic model: sent as JSON (what a structured call parses);
- an exception instance: raised by the provider (a :class:`~ace.llm.ProviderError` with ``retryable=True`` is
  what an outage looks like to :class:`~ace.llm.LLM` and the workers);
- a callable ``(Request) -> reply``: called for that request (it may inspect ``request.schema_name`` to answer
  each role, or ``request.messages``), its result taken as above.

``ScriptedProvider(replies)`` answers with the replies in order and raises :class:`ScriptExhausted` after the last
one (a test that makes more calls than it scripted says so instead of hanging on a model), or with ``cycle=True``
starts again from the first;
``ScriptedProvider(function)`` answers every request with ``function(request)``. Every request is recorded in
``calls``, in order. ``get_provider("scripted:FILE.json")`` loads a script from a file (a JSON list of replies,
or ``{"replies": [...], "cycle": true}``) for a process started by a test (``ace worker --provider ...``).
The provider is safe to share between threads (workers) and has an async twin of ``complete``. It is a
public, documented test double: name it as such in the tests that use it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from pydantic import BaseModel

from ace.llm.types import Completion, LLMError, Request, Usage

Reply: TypeAlias = "str | dict[str, Any] | list[Any] | BaseModel | BaseException | Callable[[Request], Any]"


class ScriptExhausted(LLMError):
    """The script has no reply left for a request."""


def _text(reply: Any, request: Request) -> str:
    for _ in range(8):  # a callable may return another callable; a few levels at most
        if callable(reply) and not isinstance(reply, (BaseModel, type)):
            reply = reply(request)
            continue
        break
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, str):
        return reply
    if isinstance(reply, BaseModel):
        return reply.model_dump_json()
    if isinstance(reply, (dict, list)):
        return json.dumps(reply)
    raise TypeError(  # builtin-ok: a test's script is wrong (a programming error)
        "a scripted reply must be a str, a dict, a list, a pydantic model, an exception or a callable; "
        f"got {type(reply).__name__}"
    )


def _tokens(text: str) -> int:
    """A stand-in token count (words), enough for budgets and ledgers in tests."""
    return len(text.split())


class ScriptedProvider:
    """Replies from a script (see the module doc); ``calls`` records every request."""

    def __init__(
        self,
        script: Iterable[Any] | Callable[[Request], Any],
        *,
        model: str = "scripted",
        name: str = "scripted",
        cycle: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self._function: Callable[[Request], Any] | None = None
        self._replies: list[Any] = []
        if callable(script) and not isinstance(script, (list, tuple)):
            self._function = script
        else:
            self._replies = list(script)
        self._cycle = cycle and bool(self._replies)
        self._next = 0
        self._lock = threading.Lock()
        self.calls: list[Request] = []

    @property
    def remaining(self) -> int:
        """Replies not used yet (0 for a function-driven or cycling provider)."""
        return 0 if self._cycle else len(self._replies) - self._next

    def complete(self, request: Request) -> Completion:
        with self._lock:
            self.calls.append(request)
            if self._function is not None:
                reply: Any = self._function
            elif self._cycle or self._next < len(self._replies):
                reply = self._replies[self._next % len(self._replies)]
                self._next += 1
            else:
                raise ScriptExhausted(
                    f"the script's {len(self._replies)} replies are used up (call {len(self.calls)}); "
                    "script more replies or pass a function"
                )
        text = _text(reply, request)
        prompt = " ".join(m.content for m in request.messages)
        return Completion(text, Usage(_tokens(prompt), _tokens(text)), self.model, "stop")

    async def acomplete(self, request: Request) -> Completion:
        return self.complete(request)


def from_file(path: str) -> ScriptedProvider:
    """A provider scripted by a JSON file: a list of replies, or ``{"replies": [...], "cycle": bool}``."""
    from pathlib import Path

    from ace.errors import read_input

    try:
        data = json.loads(read_input(Path(path), what="script", limit=64 << 20))
    except OSError as e:
        raise LLMError(f"cannot read the script {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise LLMError(f"{path}: the script is not JSON ({e})") from None
    if isinstance(data, list):
        return ScriptedProvider(data)
    if isinstance(data, dict) and isinstance(data.get("replies"), list):
        return ScriptedProvider(data["replies"], cycle=bool(data.get("cycle", False)))
    raise LLMError(f'{path}: a script is a JSON list of replies or {{"replies": [...], "cycle": true}}')


__all__ = ["Reply", "ScriptExhausted", "ScriptedProvider", "from_file"]
