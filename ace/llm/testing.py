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

``valid_reply`` is a ready-made function: for a structured request it answers the first valid instance of the
request's JSON schema (the first option of every enum and union, the required fields only, one item in each list
that allows one, strings of a few words), for a text request a short sentence: like pydantic-ai's ``TestModel``,
every role gets an answer that validates without a script (``ScriptedProvider(valid_reply)``, or
``get_provider("scripted:valid")`` in a process a test starts), so a worker or a run on it commits: the curator adds
a bullet in the first section, the reflector tags the first cited bullet.

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
import math
import re
import threading
import time
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
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        if not (isinstance(delay_s, (int, float)) and math.isfinite(delay_s) and 0 <= delay_s <= 600):
            raise LLMError(f"delay_s is a number of seconds from 0 to 600, not {delay_s!r}")
        self.delay_s = float(delay_s)  # each reply waits this long, as a model would (for leases, timeouts, kills)
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
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        text = _text(reply, request)
        prompt = " ".join(m.content for m in request.messages)
        return Completion(text, Usage(_tokens(prompt), _tokens(text)), self.model, "stop")

    async def acomplete(self, request: Request) -> Completion:
        return self.complete(request)


# words of letters, the first of three or more: what the quality gate wants of a lesson, and a new section's name
TEXT_REPLY = "Scripted reply for tests."


def valid_reply(request: Request) -> Any:
    """The first valid instance of ``request``'s output schema, or :data:`TEXT_REPLY` for a text request."""
    if request.schema is None:
        return TEXT_REPLY
    return _instance(request.schema, request.schema.get("$defs", {}), depth=0)


def _instance(schema: dict[str, Any], defs: dict[str, Any], *, depth: int) -> Any:
    if depth > 32:
        raise LLMError("the schema nests deeper than 32 levels: no instance made")
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("oneOf", "anyOf"):
        if schema.get(union):
            return _instance(schema[union][0], defs, depth=depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return _instance(merged, defs, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: _instance(props[k], defs, depth=depth + 1) for k in schema.get("required", []) if k in props}
    if kind == "array":  # one item where the schema allows one: a curator proposes an operation, a reflector tags
        item = schema.get("items", {})
        n = max(schema.get("minItems", 0), min(1, schema.get("maxItems", 1)))
        return [_instance(item, defs, depth=depth + 1) for _ in range(n)]
    if kind == "string":
        text = TEXT_REPLY.rstrip(".")
        low, high = schema.get("minLength", 0), schema.get("maxLength", len(text))
        text = (text + " " + "x" * max(0, low - len(text) - 1) if low > len(text) else text)[:high]
        if (pattern := schema.get("pattern")) is not None and not re.search(pattern, text):
            raise LLMError(f"valid_reply has no string for the pattern {pattern!r}: script this reply")
        return text
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    if kind == "boolean":
        return False
    return None


def from_file(path: str) -> ScriptedProvider:
    """A provider scripted by a JSON file: a list of replies, or ``{"replies": [...] | "valid", "cycle": bool,
    "delay_s": seconds}`` (``"valid"``: :func:`valid_reply` for every request); the path ``valid`` is
    :func:`valid_reply` with no file."""
    from pathlib import Path

    from ace.errors import read_input

    if path == "valid":
        return ScriptedProvider(valid_reply)
    try:
        data = json.loads(read_input(Path(path), what="script", limit=64 << 20))
    except OSError as e:
        raise LLMError(f"cannot read the script {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise LLMError(f"{path}: the script is not JSON ({e})") from None
    if isinstance(data, list):
        return ScriptedProvider(data)
    shape = '{"replies": [...] | "valid", "cycle": true | false, "delay_s": SECONDS}'
    if not isinstance(data, dict):
        raise LLMError(f"{path}: a script is a JSON list of replies or {shape}")
    if unknown := sorted(set(data) - {"replies", "cycle", "delay_s"}):
        raise LLMError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} in the script; it is {shape}")
    replies, cycle, delay = data.get("replies"), data.get("cycle", False), data.get("delay_s", 0.0)
    if not (isinstance(replies, list) or replies == "valid"):
        raise LLMError(f'{path}: "replies" is a list of replies or "valid", not {str(replies)[:40]!r}')
    if not isinstance(cycle, bool):
        raise LLMError(f'{path}: "cycle" is true or false, not {cycle!r}')
    if (
        isinstance(delay, bool)
        or not isinstance(delay, (int, float))
        or not math.isfinite(delay)
        or not 0 <= delay <= 600
    ):
        raise LLMError(f'{path}: "delay_s" is a number of seconds from 0 to 600, not {delay!r}')
    return ScriptedProvider(valid_reply if replies == "valid" else replies, cycle=cycle, delay_s=float(delay))


__all__ = ["TEXT_REPLY", "Reply", "ScriptExhausted", "ScriptedProvider", "from_file", "valid_reply"]
