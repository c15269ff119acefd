"""LLM providers behind one small protocol, with validated structured output, retries, accounting and budgets."""

from ace.llm.accounting import PRICES, Budget, Ledger, Price, cost_usd
from ace.llm.client import LLM
from ace.llm.provider import Provider, get_provider
from ace.llm.structured import extract_json, parse_output
from ace.llm.types import (
    BudgetExceeded,
    CassetteMiss,
    Completion,
    LLMError,
    LLMResult,
    Message,
    ProviderError,
    Request,
    Sampling,
    StructuredOutputError,
    Usage,
)

__all__ = [
    "LLM",
    "PRICES",
    "Budget",
    "BudgetExceeded",
    "CassetteMiss",
    "Completion",
    "LLMError",
    "LLMResult",
    "Ledger",
    "Message",
    "Price",
    "Provider",
    "ProviderError",
    "Request",
    "Sampling",
    "StructuredOutputError",
    "Usage",
    "cost_usd",
    "extract_json",
    "get_provider",
    "parse_output",
]
