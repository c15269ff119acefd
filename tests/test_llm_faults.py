"""Retries, Retry-After, timeouts, budgets and repair, against FakeOpenAIServer (a loopback test double of a
remote OpenAI-compatible API). Nothing half-parsed escapes: every outcome is a validated object or a typed error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TypedDict, Unpack

import pytest
from pydantic import BaseModel

from ace.llm import (
    LLM,
    Budget,
    BudgetExceeded,
    Ledger,
    LLMResult,
    Message,
    Price,
    ProviderError,
    Sampling,
    StructuredOutputError,
)
from ace.llm.embeddings import OpenAIEmbedder
from ace.llm.openai import OpenAIProvider
from tests.fake_openai_server import FakeOpenAIServer


class Verdict(BaseModel):
    answer: str
    confidence: float


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


class _Policies(TypedDict, total=False):
    ledger: Ledger
    retries: int
    repair_attempts: int
    prices: dict[str, Price]


def make_llm(server: FakeOpenAIServer, sleeps: list[float], *, timeout_s: float = 5.0, **kw: Unpack[_Policies]) -> LLM:
    provider = OpenAIProvider("fake-model", base_url=server.base_url, timeout_s=timeout_s)
    return LLM(provider, sleep=sleeps.append, backoff_initial_s=0.01, backoff_max_s=0.05, **kw)


def test_429_and_500_are_retried_and_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.script = [("status", 429, 2), ("status", 500), ("status", 503), ("ok", "fine")]
    sleeps: list[float] = []
    result: LLMResult[BaseModel] = make_llm(server, sleeps, retries=4).call("hi")
    assert result.text == "fine"
    assert len(server.requests) == 4
    assert sleeps[0] >= 2.0  # the server's Retry-After wins over the short backoff
    assert all(0 < s <= 0.05 for s in sleeps[1:])


def test_retries_stop_as_configured_with_a_typed_error(server: FakeOpenAIServer) -> None:
    server.script = [("status", 500)]
    with pytest.raises(ProviderError) as exc:
        make_llm(server, [], retries=2).call("hi")
    assert exc.value.status == 500 and exc.value.retryable
    assert len(server.requests) == 3  # one try + two retries


def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    server.script = [("status", 400)]
    with pytest.raises(ProviderError) as exc:
        make_llm(server, [], retries=4).call("hi")
    assert exc.value.status == 400 and not exc.value.retryable
    assert len(server.requests) == 1


def test_a_slow_server_times_out_and_is_retried(server: FakeOpenAIServer) -> None:
    server.script = [("slow", 2.0, "late"), ("ok", "on time")]
    result: LLMResult[BaseModel] = make_llm(server, [], retries=2, timeout_s=0.5).call("hi")
    assert result.text == "on time"
    assert len(server.requests) == 2


def test_invalid_replies_are_repaired_with_the_error_shown(server: FakeOpenAIServer) -> None:
    server.script = [("ok", "not json at all"), ("ok", '{"answer": "4"}'), ("ok", '{"answer": "4", "confidence": 0.9}')]
    result = make_llm(server, []).call("2+2?", output=Verdict)
    assert result.parsed == Verdict(answer="4", confidence=0.9)
    assert result.attempts == 3
    assert result.usage.input_tokens == 3 * 11  # usage of every attempt is counted
    repair = server.requests[1]["body"]["messages"][-1]["content"]
    assert "not valid JSON" in repair
    assert "confidence: Field required" in server.requests[2]["body"]["messages"][-1]["content"]
    # json_object mode with the schema is what a compatible server gets
    assert server.requests[0]["body"]["response_format"]["type"] == "json_object"
    assert "confidence" in str(server.requests[0]["body"]["response_format"]["schema"])


def test_nothing_half_parsed_escapes(server: FakeOpenAIServer) -> None:
    server.script = [("ok", '{"answer": "4", "confidence": "very"}')]
    with pytest.raises(StructuredOutputError) as exc:
        make_llm(server, [], repair_attempts=2).call("2+2?", output=Verdict)
    assert exc.value.attempts == 3 and "confidence" in exc.value.last_error
    assert len(server.requests) == 3


def test_budget_cap_stops_the_run_before_the_next_call(server: FakeOpenAIServer) -> None:
    server.script = [("ok", "one")]
    server.usage = (600, 100)
    ledger = Ledger(budget=Budget(max_tokens=1000))
    llm = make_llm(server, [], ledger=ledger)
    llm.call("a", role="generator")
    assert ledger.exhausted is None
    llm.call("b", role="reflector")
    assert ledger.exhausted == "token budget of 1000 spent (1400 used)"
    with pytest.raises(BudgetExceeded, match="run stopped: token budget of 1000 spent"):
        llm.call("c", role="curator")
    assert len(server.requests) == 2  # the third call was never sent
    assert set(ledger.by_role) == {"generator", "reflector"}


def test_cost_budget_and_accounting_per_role(server: FakeOpenAIServer) -> None:
    server.script = [("ok", "x")]
    server.usage = (1_000_000, 0)
    ledger = Ledger(budget=Budget(max_cost_usd=1.5))
    llm = make_llm(server, [], ledger=ledger, prices={"fake-model": Price(1.0, 2.0)})
    first: LLMResult[BaseModel] = llm.call("a", role="generator")
    assert first.cost_usd == pytest.approx(1.0)
    llm.call("b", role="curator")
    assert ledger.cost_by_role == {"generator": pytest.approx(1.0), "curator": pytest.approx(1.0)}
    with pytest.raises(BudgetExceeded, match=r"cost budget of \$1.5000 spent"):
        llm.call("c")


def test_async_calls_retry_too(server: FakeOpenAIServer) -> None:
    server.script = [("status", 502), ("ok", '{"answer": "yes", "confidence": 1}')]
    llm = make_llm(server, [], retries=2)
    result = asyncio.run(llm.acall([Message("user", "ok?")], output=Verdict, sampling=Sampling(max_tokens=20)))
    assert result.parsed == Verdict(answer="yes", confidence=1.0)
    assert len(server.requests) == 2


def test_openai_embeddings_batch_and_normalize(server: FakeOpenAIServer) -> None:
    emb = OpenAIEmbedder("fake-embed", base_url=server.base_url, batch_size=2)
    vectors = emb.embed(["a", "bbb", "cc"])
    assert vectors.shape == (3, 3)
    assert [len(r["body"]["input"]) for r in server.requests] == [2, 1]
    assert abs(float((vectors**2).sum(axis=1)[1]) - 1.0) < 1e-6
    assert vectors[1][0] > vectors[0][0]  # "bbb" has the larger first component before normalization


def test_raw_newlines_inside_json_strings_are_accepted(server: FakeOpenAIServer) -> None:
    # grammar-constrained servers (llama.cpp) may emit a literal newline inside a string
    server.script = [("ok", '{"answer": "line one\nline two", "confidence": 0.5}')]
    result = make_llm(server, []).call("hi", output=Verdict)
    assert result.parsed == Verdict(answer="line one\nline two", confidence=0.5) and result.attempts == 1
