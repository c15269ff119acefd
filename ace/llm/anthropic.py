"""Anthropic's Messages API through the official SDK, with prompt caching of the stable prefix.

System messages become the ``system`` blocks; a :class:`Message` with ``cache=True`` (the system prompt, the
rendered playbook) gets ``cache_control: ephemeral`` on its block, so repeated calls read the prefix from the
cache. Structured output uses the API's native JSON output format (``output_config.format``), or the schema in
the system prompt with ``structured="prompt"``; either way the reply is validated (and repaired) by
:class:`ace.llm.LLM`. The current Messages API takes no temperature or top_p, so those sampling options are not
sent; ``max_tokens`` and ``stop`` are. The SDK's own retries are off: :class:`ace.llm.LLM` retries.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from ace.llm.openai import map_http_error
from ace.llm.structured import schema_instruction
from ace.llm.types import Completion, ProviderError, Request, Usage


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        structured: Literal["native", "prompt"] = "native",
        timeout_s: float = 120.0,
        http_client: Any = None,
        async_http_client: Any = None,
    ) -> None:
        import anthropic

        self.model = model
        self.structured = structured
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if key is None:
            raise ProviderError(
                f"anthropic:{model} needs an API key: set ANTHROPIC_API_KEY, or use the local model "
                "with --provider local"
            )
        common: dict[str, Any] = {"api_key": key, "base_url": base_url, "max_retries": 0, "timeout": timeout_s}
        self._client = anthropic.Anthropic(**common, **({"http_client": http_client} if http_client else {}))
        self._aclient = anthropic.AsyncAnthropic(
            **common, **({"http_client": async_http_client} if async_http_client else {})
        )
        self._errors = (anthropic.APIError,)

    def params(self, request: Request) -> dict[str, Any]:
        """The Messages API request body (public so tests can check caching marks)."""
        system: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for m in request.messages:
            block: dict[str, Any] = {"type": "text", "text": m.content}
            if m.cache:
                block["cache_control"] = {"type": "ephemeral"}
            if m.role == "system":
                system.append(block)
            else:
                messages.append({"role": m.role, "content": [block]})
        s = request.sampling
        params: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": s.max_tokens}
        if request.schema is not None:
            if self.structured == "native":
                params["output_config"] = {"format": {"type": "json_schema", "schema": request.schema}}
            else:
                system.append({"type": "text", "text": schema_instruction(request.schema)})
        if system:
            params["system"] = system
        if s.stop:
            params["stop_sequences"] = list(s.stop)
        return params

    def _completion(self, resp: Any) -> Completion:
        text = "".join(getattr(b, "text", "") for b in resp.content if getattr(b, "type", "") == "text")
        u = resp.usage
        cache_read = getattr(u, "cache_read_input_tokens", None) or 0
        cache_write = getattr(u, "cache_creation_input_tokens", None) or 0
        # Anthropic counts cached and cache-written input apart from input_tokens; ours is all input.
        usage = Usage(u.input_tokens + cache_read + cache_write, u.output_tokens, cache_read)
        return Completion(text, usage, resp.model or self.model, resp.stop_reason)

    def complete(self, request: Request) -> Completion:
        try:
            return self._completion(self._client.messages.create(**self.params(request)))
        except self._errors as e:
            raise map_http_error(e, self.name) from e

    async def acomplete(self, request: Request) -> Completion:
        try:
            return self._completion(await self._aclient.messages.create(**self.params(request)))
        except self._errors as e:
            raise map_http_error(e, self.name) from e
