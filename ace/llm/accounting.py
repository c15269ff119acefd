"""Usage and cost: a price table of known models, and a ledger per run with per-role totals and budgets."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ace.llm.types import BudgetExceeded, Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None


# Public list prices (USD per million tokens; cached = prompt-cache reads) as published in 2025. Keys are model-name
# prefixes, the longest match wins; a model not listed gets cost None ("unpriced"), never a guess. Pass
# ``LLM(prices=...)`` for other models or newer prices.
PRICES: dict[str, Price] = {
    "claude-opus-4-1": Price(15.0, 75.0, 1.5),
    "claude-opus-4-20250514": Price(15.0, 75.0, 1.5),
    "claude-opus-4-5": Price(5.0, 25.0, 0.5),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.3),
    "claude-sonnet-4-20250514": Price(3.0, 15.0, 0.3),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1),
    "claude-3-5-haiku": Price(0.8, 4.0, 0.08),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "o4-mini": Price(1.1, 4.4, 0.275),
    "local": Price(0.0, 0.0, 0.0),
}


def cost_usd(model: str, usage: Usage, prices: dict[str, Price] | None = None) -> float | None:
    """Cost of ``usage`` on ``model``, or None when no price is known for it."""
    table = PRICES if prices is None else prices
    matches = [k for k in table if model.startswith(k)]
    if not matches:
        return None
    p = table[max(matches, key=len)]
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = p.cached_input if p.cached_input is not None else p.input
    return ((usage.input_tokens - cached) * p.input + cached * cached_rate + usage.output_tokens * p.output) / 1e6


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps for one run; None means no cap."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None


@dataclass
class Ledger:
    """Usage and cost of a run, in total and per role (generator, reflector, curator, ...). Thread-safe."""

    budget: Budget = field(default_factory=Budget)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: int = 0
    unpriced_calls: int = 0
    by_role: dict[str, Usage] = field(default_factory=dict)
    cost_by_role: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, role: str, usage: Usage, cost: float | None) -> None:
        with self._lock:
            self.calls += 1
            self.usage = self.usage + usage
            self.by_role[role] = self.by_role.get(role, Usage()) + usage
            if cost is None:
                self.unpriced_calls += 1
            else:
                self.cost_usd += cost
                self.cost_by_role[role] = self.cost_by_role.get(role, 0.0) + cost

    @property
    def exhausted(self) -> str | None:
        """Why the budget is spent, or None: a runner checks this between steps."""
        b = self.budget
        if b.max_tokens is not None and self.usage.total_tokens >= b.max_tokens:
            return f"token budget of {b.max_tokens} spent ({self.usage.total_tokens} used)"
        if b.max_cost_usd is not None and self.cost_usd >= b.max_cost_usd:
            return f"cost budget of ${b.max_cost_usd:.4f} spent (${self.cost_usd:.4f} used)"
        return None

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if the budget is spent (called before every LLM call)."""
        if reason := self.exhausted:
            raise BudgetExceeded(f"run stopped: {reason}; raise the budget or start a new run")
