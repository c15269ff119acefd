"""The provider protocol, and turning a string like ``"openai:gpt-4o-mini"`` into a provider.

A provider does one thing: send a :class:`Request` and return a :class:`Completion`, raising
:class:`ProviderError` (with ``retryable`` set for timeouts, 429 and 5xx). Retries, validation, repair,
accounting and budgets live in :class:`ace.llm.LLM`, once for every provider.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ace.llm.types import Completion, LLMError, Request


@runtime_checkable
class Provider(Protocol):
    name: str
    model: str

    def complete(self, request: Request) -> Completion: ...

    async def acomplete(self, request: Request) -> Completion: ...


def get_provider(spec: str | Provider) -> Provider:
    """Resolve a provider spec.

    ``"local"`` (the embedded default, SmolLM2-135M-Instruct on llama.cpp), ``"local:NAME"`` (a packaged model:
    ``smollm2-135m``, ``gemma3-270m``), ``"local:/path/model.gguf"`` (any GGUF file, run as a base model),
    ``"anthropic:claude-sonnet-4-5"``, ``"openai:gpt-4o-mini"``, ``"openai:MODEL@http://host:port/v1"`` (any
    OpenAI-compatible server), ``"scripted:FILE.json"`` (replies from a file, for tests: :mod:`ace.llm.testing`;
    ``"scripted:valid"`` answers every request with a valid instance of its schema), or a provider object,
    returned as it is.
    """
    if not isinstance(spec, str):
        return spec
    kind, _, rest = spec.partition(":")
    if kind == "local":
        from ace.llm.local import LocalProvider

        return LocalProvider(model_path=rest or None)
    if kind == "anthropic" and rest:
        from ace.llm.anthropic import AnthropicProvider

        return AnthropicProvider(rest)
    if kind == "scripted" and rest:
        from ace.llm.testing import from_file

        return from_file(rest)
    if kind == "openai" and rest:
        from ace.llm.openai import OpenAIProvider

        model, _, base_url = rest.partition("@")
        return OpenAIProvider(model, base_url=base_url or None)
    raise LLMError(
        f"unknown provider spec {spec!r}; use 'local', 'local:NAME|PATH.gguf', 'anthropic:MODEL', 'openai:MODEL', "
        "'openai:MODEL@URL' or, in tests, 'scripted:FILE.json' / 'scripted:valid'"
    )
