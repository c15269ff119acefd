"""What goes into and comes out of an LLM call, and the errors a call can end in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from ace.errors import AceError

T = TypeVar("T", bound=BaseModel)
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``cache=True`` marks a stable prefix (system prompt, playbook) for prompt caching."""

    role: Role
    content: str
    cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.cache:
            d["cache"] = True
        return d


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call (or a sum). ``cached_tokens`` is the part of the input served from a prompt cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.cached_tokens - other.cached_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass(frozen=True, slots=True)
class Request:
    """A provider-level request: what a cassette hashes and records."""

    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    schema: dict[str, Any] | None = None  # JSON schema of the wanted output, when structured
    schema_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "sampling": self.sampling.to_dict(),
            "schema": self.schema,
            "schema_name": self.schema_name,
        }


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider returns for one request."""

    text: str
    usage: Usage
    model: str
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LLMResult(Generic[T]):
    """One validated call: text, the parsed object (when a type was asked for), usage summed over repair
    attempts, wall-clock latency, cost in USD (None when the model's price is unknown)."""

    text: str
    parsed: T | None
    usage: Usage
    latency_s: float
    cost_usd: float | None
    model: str
    provider: str
    attempts: int = 1
    finish_reason: str | None = None  # the last completion's, as the provider said it (None: not said)


class LLMError(AceError):
    """Base class of LLM-layer errors."""


class ProviderError(LLMError):
    """A provider call failed. ``retryable`` for timeouts, 429 and 5xx; ``retry_after`` in seconds when the
    server said (Retry-After)."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        self.status, self.retryable, self.retry_after = status, retryable, retry_after
        super().__init__(message)


class StructuredOutputError(LLMError):
    """The model's reply did not validate after every repair attempt; nothing was returned half-filled."""

    def __init__(self, schema_name: str, attempts: int, last_error: str, last_text: str) -> None:
        self.attempts, self.last_error, self.last_text = attempts, last_error, last_text
        super().__init__(f"{schema_name}: no valid reply after {attempts} attempt(s); last error: {last_error}")


class BudgetExceeded(LLMError):
    """The run's token or cost budget is spent; raised before a call, so a run stops between steps."""


class CassetteMiss(LLMError):
    """Strict replay found no recorded response for a request."""
