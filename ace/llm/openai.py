"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server), through the official SDK.

Structured output uses the server's JSON mode where it has one: ``json_schema`` (OpenAI's structured outputs) by
default for api.openai.com, ``json_object`` with a ``schema`` (llama.cpp, vLLM) for other servers, or ``prompt``
(the schema in the system message) for servers with neither. Either way the reply is validated by
:class:`ace.llm.LLM`. The SDK's own retries are off: :class:`ace.llm.LLM` retries, once for all providers.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from ace.llm.structured import bound_schema, schema_instruction
from ace.llm.types import Completion, Message, ProviderError, Request, Usage

StructuredMode = Literal["json_schema", "json_object", "prompt"]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_http_error(e: Exception, provider: str) -> ProviderError:
    """An SDK exception as a ProviderError: timeouts, connection errors, 429 and 5xx are retryable."""
    status = getattr(e, "status_code", None)
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None)
    if status is None:  # timeout or connection error: the request may not have reached the server
        return ProviderError(f"{provider}: {type(e).__name__}: {e}", retryable=True)
    retryable = status == 429 or status >= 500 or status == 408
    return ProviderError(
        f"{provider}: HTTP {status}: {e}", status=status, retryable=retryable, retry_after=_retry_after(headers)
    )


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        structured: StructuredMode | None = None,
        max_string_chars: int | None = 400,
        max_array_items: int | None = 8,
        timeout_s: float = 120.0,
        client: Any = None,
        async_client: Any = None,
    ) -> None:
        import openai

        self.model = model
        self.base_url = base_url
        self.structured: StructuredMode = structured or ("json_schema" if base_url is None else "json_object")
        # json_object servers decode under a grammar: bound strings and arrays so the JSON closes in time
        self.bounds = (max_string_chars, max_array_items) if max_string_chars and max_array_items else None
        # A compatible server on localhost usually wants no key; the SDK insists on one.
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if key is None:
            raise ProviderError(
                f"openai:{model} needs an API key: set OPENAI_API_KEY, or use a compatible server with "
                f"openai:{model}@http://HOST:PORT/v1, or the local model with --provider local"
            )
        kwargs: dict[str, Any] = {"api_key": key, "base_url": base_url, "max_retries": 0, "timeout": timeout_s}
        self._client = client or openai.OpenAI(**kwargs)
        self._aclient = async_client or openai.AsyncOpenAI(**kwargs)
        self._errors = (openai.APIError,)

    def _params(self, request: Request) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in request.messages]
        s = request.sampling
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        if s.top_p is not None:
            params["top_p"] = s.top_p
        if s.seed is not None:
            params["seed"] = s.seed
        if s.stop:
            params["stop"] = list(s.stop)
        if request.schema is not None:
            if self.structured == "json_schema":
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": request.schema_name or "output", "schema": request.schema, "strict": False},
                }
            elif self.structured == "json_object":
                schema = request.schema
                if self.bounds:
                    schema = bound_schema(
                        schema, s.max_tokens, max_string_chars=self.bounds[0], max_array_items=self.bounds[1]
                    )
                params["response_format"] = {"type": "json_object", "schema": schema}
            else:
                messages.insert(0, Message("system", schema_instruction(request.schema)).to_dict())
        return params

    def _completion(self, resp: Any) -> Completion:
        choice = resp.choices[0]
        u = resp.usage
        cached = 0
        if u is not None and getattr(u, "prompt_tokens_details", None) is not None:
            cached = u.prompt_tokens_details.cached_tokens or 0
        usage = Usage(u.prompt_tokens, u.completion_tokens, cached) if u is not None else Usage()
        return Completion(choice.message.content or "", usage, resp.model or self.model, choice.finish_reason)

    def complete(self, request: Request) -> Completion:
        try:
            return self._completion(self._client.chat.completions.create(**self._params(request)))
        except self._errors as e:
            raise map_http_error(e, self.name) from e

    async def acomplete(self, request: Request) -> Completion:
        try:
            return self._completion(await self._aclient.chat.completions.create(**self._params(request)))
        except self._errors as e:
            raise map_http_error(e, self.name) from e
