"""The LLM client: one call = retries on transient errors, validation, repair, accounting, budget checks.

    llm = LLM("local")
    result = llm.call([Message("user", "...")], output=GeneratorOutput, role="generator")
    result.parsed  # a validated GeneratorOutput, never a half-filled one

A reply that fails validation is shown back to the model with the validation error, up to ``repair_attempts``
times; then :class:`StructuredOutputError`. Timeouts, 429 and 5xx are retried with exponential backoff and jitter
(at least the server's Retry-After), via tenacity. Every completion is charged to the :class:`Ledger`, whose
budget is checked before each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, overload

from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ace.errors import ConfigError
from ace.llm.accounting import Ledger, Price, cost_usd
from ace.llm.provider import Provider, get_provider
from ace.llm.structured import parse_output, validation_summary
from ace.llm.types import (
    Completion,
    LLMResult,
    Message,
    ProviderError,
    Request,
    Sampling,
    StructuredOutputError,
    T,
    Usage,
)
from ace.telemetry import traced_chat

REPAIR_PROMPT = (
    "Your previous reply could not be used: {error}\n"
    "Reply again with only a JSON object that matches the required schema, and nothing else."
)


@dataclass
class _Attempts(Generic[T]):
    """The repair loop's state, free of I/O so the sync and async paths share it."""

    messages: list[Message]
    output: type[T] | None
    sampling: Sampling
    limit: int
    usage: Usage = field(default_factory=Usage)
    count: int = 0
    last_error: str = ""
    last_text: str = ""

    def request(self) -> Request:
        schema = self.output.model_json_schema() if self.output else None
        return Request(tuple(self.messages), self.sampling, schema, self.output.__name__ if self.output else None)

    def take(self, completion: Completion) -> tuple[bool, T | None]:
        """Record one completion; (done, parsed). Raises StructuredOutputError when out of attempts."""
        self.count += 1
        self.usage = self.usage + completion.usage
        if self.output is None:
            return True, None
        try:
            return True, parse_output(completion.text, self.output)
        except (ValidationError, ValueError) as e:
            self.last_error, self.last_text = validation_summary(e), completion.text
        if self.count > self.limit:
            raise StructuredOutputError(self.output.__name__, self.count, self.last_error, self.last_text)
        self.messages += [
            Message("assistant", completion.text),
            Message("user", REPAIR_PROMPT.format(error=self.last_error)),
        ]
        return False, None


class LLM:
    """A provider plus the policies every call gets. Share one ``ledger`` across the roles of a run."""

    def __init__(
        self,
        provider: str | Provider = "local",
        *,
        ledger: Ledger | None = None,
        sampling: Sampling | None = None,
        retries: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        repair_attempts: int = 2,
        prices: dict[str, Price] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = get_provider(provider)
        self.ledger = ledger or Ledger()
        self.sampling = sampling or Sampling()
        self.retries = retries
        self.repair_attempts = repair_attempts
        self.prices = prices
        # initial * 2**n plus up to `initial` of jitter (tenacity's default jitter is a fixed second)
        self._wait = wait_exponential_jitter(multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s)
        self._sleep = sleep
        # called with (role, request, completion) after every completion, e.g. a trajectory recorder
        self.observers: list[Callable[[str, Request, Completion], None]] = []

    # -- public -------------------------------------------------------------------------------------------
    @overload
    def call(
        self,
        messages: Sequence[Message] | str,
        output: None = None,
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[Any]: ...

    @overload
    def call(
        self,
        messages: Sequence[Message] | str,
        output: type[T],
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[T]: ...

    @traced_chat  # a span per role call when OpenTelemetry is on (ace.telemetry)
    def call(
        self,
        messages: Sequence[Message] | str,
        output: type[T] | None = None,
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[T]:
        attempts = self._attempts(messages, output, sampling)
        started = time.perf_counter()
        while True:
            self.ledger.check()
            request = attempts.request()
            completion = self._send(request)
            self._received(role, request, completion)
            done, parsed = attempts.take(completion)
            if done:
                return self._result(attempts, completion, parsed, started)

    @overload
    async def acall(
        self,
        messages: Sequence[Message] | str,
        output: None = None,
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[Any]: ...

    @overload
    async def acall(
        self,
        messages: Sequence[Message] | str,
        output: type[T],
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[T]: ...

    @traced_chat
    async def acall(
        self,
        messages: Sequence[Message] | str,
        output: type[T] | None = None,
        *,
        role: str = "default",
        sampling: Sampling | None = None,
    ) -> LLMResult[T]:
        attempts = self._attempts(messages, output, sampling)
        started = time.perf_counter()
        while True:
            self.ledger.check()
            request = attempts.request()
            completion = await self._asend(request)
            self._received(role, request, completion)
            done, parsed = attempts.take(completion)
            if done:
                return self._result(attempts, completion, parsed, started)

    # -- internals ----------------------------------------------------------------------------------------
    def _attempts(
        self, messages: Sequence[Message] | str, output: type[T] | None, sampling: Sampling | None
    ) -> _Attempts[T]:
        msgs = [Message("user", messages)] if isinstance(messages, str) else list(messages)
        if not msgs:
            raise ConfigError("an LLM call needs at least one message")
        if output is not None and not (isinstance(output, type) and issubclass(output, BaseModel)):
            raise TypeError("output must be a pydantic model class")  # builtin-ok: a programming error
        return _Attempts(msgs, output, sampling or self.sampling, self.repair_attempts)

    def _retry_kwargs(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retries + 1),
            "wait": self._backoff,
            "retry": retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
            "reraise": True,
        }

    def _backoff(self, state: RetryCallState) -> float:
        wait = self._wait(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return max(wait, min(retry_after, 120.0)) if retry_after else wait

    def _send(self, request: Request) -> Completion:
        for attempt in Retrying(sleep=self._sleep, **self._retry_kwargs()):
            with attempt:
                return self.provider.complete(request)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _asend(self, request: Request) -> Completion:
        async for attempt in AsyncRetrying(**self._retry_kwargs()):
            with attempt:
                return await self.provider.acomplete(request)
        raise AssertionError("unreachable")  # pragma: no cover

    def _received(self, role: str, request: Request, completion: Completion) -> None:
        """Charge the ledger for a completion and tell the observers."""
        self.ledger.record(role, completion.usage, cost_usd(completion.model, completion.usage, self.prices))
        for observe in self.observers:
            observe(role, request, completion)

    def _result(self, a: _Attempts[T], last: Completion, parsed: T | None, started: float) -> LLMResult[T]:
        return LLMResult(
            text=last.text,
            parsed=parsed,
            usage=a.usage,
            latency_s=time.perf_counter() - started,
            cost_usd=cost_usd(last.model, a.usage, self.prices),
            model=last.model,
            provider=self.provider.name,
            attempts=a.count,
            finish_reason=last.finish_reason,
        )
