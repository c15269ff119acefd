"""The Anthropic provider through the official SDK, against wire fixtures (tests/fixtures/anthropic) served by an
``httpx2.MockTransport``: a test double at the remote API boundary, since CI has no network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP client the anthropic SDK (2.x) is built on
import pytest
from pydantic import BaseModel

from ace.llm import LLM, LLMResult, Message, ProviderError, Sampling
from ace.llm.anthropic import AnthropicProvider

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


class Cited(BaseModel):
    reasoning: str
    bullet_ids: list[str]
    final_answer: str


def replies(
    *script: tuple[int, str, dict[str, str]],
) -> tuple[Callable[[httpx.Request], httpx.Response], list[dict[str, Any]]]:
    """A handler answering each request with the next (status, fixture, headers); and the requests it saw."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"url": str(request.url), "headers": dict(request.headers), "body": json.loads(request.content)})
        status, name, headers = script[min(len(seen) - 1, len(script) - 1)]
        return httpx.Response(
            status, content=(FIXTURES / name).read_bytes(), headers={"content-type": "application/json", **headers}
        )

    return handler, seen


def provider(handler: Callable[[httpx.Request], httpx.Response]) -> AnthropicProvider:
    return AnthropicProvider(
        "claude-haiku-4-5",
        api_key="test-key",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


PROMPT = [
    Message("system", "You answer finance questions with the playbook.", cache=True),
    Message("system", "## FORMULAS\n[calc-00002] Percentage change = (new - old) / old * 100.", cache=True),
    Message("user", "Revenue rose from 200 to 250. Percentage change?"),
]


def test_structured_reply_usage_cache_and_cost() -> None:
    handler, seen = replies((200, "message_json.json", {}))
    result = LLM(provider(handler)).call(PROMPT, output=Cited, role="generator", sampling=Sampling(max_tokens=300))
    assert result.parsed == Cited(
        reasoning="Revenue rose by 50 on a base of 200.", bullet_ids=["calc-00002"], final_answer="25"
    )
    # all input counts as input; 1800 of it was read from the prompt cache
    assert (result.usage.input_tokens, result.usage.cached_tokens, result.usage.output_tokens) == (1842, 1800, 31)
    # haiku 4.5: $1/MTok input, $0.10 cached, $5 output
    assert result.cost_usd == pytest.approx((42 * 1 + 1800 * 0.1 + 31 * 5) / 1e6)
    body = seen[0]["body"]
    headers = seen[0]["headers"]
    assert seen[0]["url"].endswith("/v1/messages")
    assert "test-key" in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 300
    # the stable prefix is marked for caching; the schema goes in the native output format
    assert [b.get("cache_control") for b in body["system"]] == [{"type": "ephemeral"}, {"type": "ephemeral"}]
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": Cited.model_json_schema()}
    assert "temperature" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Revenue rose from 200 to 250. Percentage change?"}]}
    ]


def test_prompt_mode_puts_the_schema_in_the_system_prompt() -> None:
    handler, seen = replies((200, "message_json.json", {}))
    p = provider(handler)
    p.structured = "prompt"
    assert LLM(p).call(PROMPT, output=Cited).parsed is not None
    body = seen[0]["body"]
    assert "output_config" not in body and "JSON schema" in body["system"][-1]["text"]
    assert body["system"][-1].get("cache_control") is None


def test_text_blocks_are_joined_and_cache_writes_count_as_input() -> None:
    handler, _ = replies((200, "message_text.json", {}))
    result: LLMResult[BaseModel] = LLM(provider(handler)).call("Say hello")
    assert result.text == "Hello, world."
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (1210, 0)


def test_overloaded_and_rate_limited_are_retried_with_retry_after() -> None:
    handler, seen = replies(
        (529, "error_overloaded.json", {}),
        (429, "error_rate_limit.json", {"retry-after": "3"}),
        (200, "message_text.json", {}),
    )
    sleeps: list[float] = []
    llm = LLM(provider(handler), sleep=sleeps.append, backoff_initial_s=0.01, backoff_max_s=0.05)
    result: LLMResult[BaseModel] = llm.call("hi")
    assert result.text == "Hello, world." and len(seen) == 3
    assert sleeps[0] <= 0.05 and sleeps[1] >= 3.0


def test_invalid_request_is_not_retried() -> None:
    handler, seen = replies((400, "error_invalid_request.json", {}))
    with pytest.raises(ProviderError) as exc:
        LLM(provider(handler), sleep=lambda _s: None).call("hi")
    assert exc.value.status == 400 and not exc.value.retryable and "max_tokens" in str(exc.value)
    assert len(seen) == 1


def test_async_call() -> None:
    handler, seen = replies((200, "message_json.json", {}))
    result = asyncio.run(LLM(provider(handler)).acall(PROMPT, output=Cited))
    assert result.parsed is not None and result.parsed.final_answer == "25" and len(seen) == 1
