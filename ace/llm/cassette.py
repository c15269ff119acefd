"""Record and replay LLM calls, so a run can be re-executed call for call without any model.

A cassette is a JSONL file, one line per call::

    {"hash": "<sha256 of the normalized request>", "request": {...}, "response": {"text": ..., "usage": {...},
     "model": ..., "finish_reason": ...}, "provider": "local", "check": "<sha256 of hash and response>"}

The hash covers the messages, sampling options and output schema (JSON with sorted keys), so the same request
replays the same response. Every entry is validated when the cassette is loaded: its ``hash`` must be the hash of
its ``request``, and its ``check`` the hash of that and its ``response``, so an edited request or response is an
error naming the line, never replayed. (Entries written before ``check`` existed still load, with one warning per
cassette: their responses cannot be verified.) Identical requests made several times replay their recorded
responses in order.
Modes: ``record`` (call the wrapped provider and append), ``replay`` (strict: a request not on the cassette raises
:class:`CassetteMiss` naming the call), ``auto`` (replay what is there, record what is not).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Literal

from ace.errors import InvalidInput
from ace.llm.provider import Provider
from ace.llm.types import CassetteMiss, Completion, LLMError, Request, Usage
from ace.playbook.jsonio import JSONLimitError, json_line, load_json, split_lines

Mode = Literal["record", "replay", "auto"]


def _digest(obj: Any) -> str:
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def request_hash(request: Request) -> str:
    return _digest(request.to_dict())


def entry_check(hash_: str, response: dict[str, Any]) -> str:
    """What binds a recorded response to its request: the hash of both."""
    return _digest({"hash": hash_, "response": response})


def _describe(request: Request) -> str:
    last = request.messages[-1].content.replace("\n", " ") if request.messages else ""
    schema = f" for {request.schema_name}" if request.schema_name else ""
    return f"call{schema} ending {last[-80:]!r}"


log = logging.getLogger(__name__)


class Cassette:
    """A provider that records to, or replays from, a JSONL file."""

    def __init__(self, path: str | Path, provider: Provider | None = None, *, mode: Mode = "replay") -> None:
        if mode != "replay" and provider is None:
            raise LLMError(f"cassette mode {mode!r} needs a provider to record from")
        self.path = Path(path)
        self.provider = provider
        self.mode = mode
        self.name = f"cassette({provider.name})" if provider else "cassette"
        self.model = provider.model if provider else "replay"
        self._lock = threading.Lock()
        self._tape: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        if mode != "record" and self.path.exists():
            self._load()
        elif mode == "replay":
            raise LLMError(f"no cassette at {self.path} to replay")
        if mode == "record":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def _load(self) -> None:
        unchecked = 0  # entries written before "check" existed: their responses cannot be verified
        for n, line in enumerate(split_lines(self.path.read_text(encoding="utf-8")), start=1):
            if line.strip():
                try:
                    entry = load_json(line, what="the entry")
                    hash_, response = self._entry(entry)
                except (JSONLimitError, KeyError, TypeError, ValueError) as e:
                    raise LLMError(f"cassette {self.path}, line {n}: not a valid recorded call ({e})") from None
                unchecked += "check" not in entry
                self._tape[hash_].append(response)
        if unchecked:
            log.warning("cassette %s: %d entries have no check (an older cassette): not verified", self.path, unchecked)

    def _entry(self, entry: Any) -> tuple[str, dict[str, Any]]:
        """``(hash, response)`` of a cassette line, validated (raises :class:`~ace.errors.InvalidInput` saying what
        is wrong)."""
        if not isinstance(entry, dict):
            raise InvalidInput("expected an object")
        hash_, request, response = entry["hash"], entry["request"], entry["response"]
        if not isinstance(response, dict) or not isinstance(response.get("text"), str):
            raise InvalidInput("its response has no text")
        usage = response.get("usage")
        if not isinstance(usage, dict) or not all(
            isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool)
            for k in ("input_tokens", "output_tokens")
        ):
            raise InvalidInput("its response has no usage (input_tokens and output_tokens)")
        if _digest(request) != hash_:
            raise InvalidInput("its hash is not the hash of its request (the request was edited)")
        if "check" in entry and entry["check"] != entry_check(hash_, response):
            raise InvalidInput("its check does not match its response (the response was edited)")
        return hash_, response

    def _replayed(self, request: Request) -> Completion | None:
        with self._lock:
            queue = self._tape.get(request_hash(request))
            if not queue:
                return None
            r = queue.popleft()
        u = r["usage"]
        return Completion(
            r["text"],
            Usage(u["input_tokens"], u["output_tokens"], u.get("cached_tokens") or 0),
            str(r.get("model") or "replay"),
            r.get("finish_reason"),
        )

    def _append(self, request: Request, completion: Completion) -> None:
        hash_ = request_hash(request)
        response = {
            "text": completion.text,
            "usage": completion.usage.to_dict(),
            "model": completion.model,
            "finish_reason": completion.finish_reason,
        }
        entry = {
            "hash": hash_,
            "provider": self.provider.name if self.provider else None,
            "request": request.to_dict(),
            "response": response,
            "check": entry_check(hash_, response),
        }
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json_line(entry) + "\n")

    def _miss(self, request: Request) -> CassetteMiss:
        return CassetteMiss(
            f"cassette {self.path} has no recorded response for this {_describe(request)} "
            f"(request hash {request_hash(request)[:12]}); record it again, or use mode='auto'"
        )

    def complete(self, request: Request) -> Completion:
        if self.mode != "record" and (hit := self._replayed(request)) is not None:
            return hit
        if self.mode == "replay" or self.provider is None:
            raise self._miss(request)
        completion = self.provider.complete(request)
        self._append(request, completion)
        return completion

    async def acomplete(self, request: Request) -> Completion:
        if self.mode != "record" and (hit := self._replayed(request)) is not None:
            return hit
        if self.mode == "replay" or self.provider is None:
            raise self._miss(request)
        completion = await self.provider.acomplete(request)
        self._append(request, completion)
        return completion
