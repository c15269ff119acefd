"""The offline embedder (int8 ONNX all-MiniLM-L6-v2, no torch), and usage/cost accounting."""

from __future__ import annotations

import numpy as np
import pytest

from ace.llm import Budget, Ledger, Price, Usage, cost_usd
from ace.llm.embeddings import MiniLMEmbedder, cosine, sanity_pair


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_sanity_pair(embedder: MiniLMEmbedder) -> None:
    related, unrelated = sanity_pair(embedder)
    assert related > 0.5 and unrelated < 0.35 and related - unrelated > 0.3


def test_unit_vectors_in_input_order_independent_of_batching(embedder: MiniLMEmbedder) -> None:
    texts = ["a short one", "a considerably longer sentence about paginating through API results", "x", "cats"]
    v = embedder.embed(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(v, one_by_one, atol=1e-4)  # dynamic padding does not change a text's vector
    assert embedder.embed([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_text(embedder: MiniLMEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "Loop over page_index until an empty page is returned.",
            "Keep requesting pages until the API returns an empty one.",
            "Quarterly revenue grew by twelve percent.",
        ]
    )
    assert cosine(a, b) > cosine(a, c) + 0.2


def test_long_text_is_truncated_not_rejected(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed(["word " * 5000]).shape == (1, 384)
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.embed("not a list")  # a str is a Sequence[str] to mypy; the runtime check catches it


def test_cost_uses_the_longest_prefix_and_cached_rate() -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_tokens=400_000)
    assert cost_usd("gpt-4o-mini-2024-07-18", u) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)
    assert cost_usd("gpt-4o-2024-08-06", u) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 10.0)
    assert cost_usd("some-new-model", u) is None
    assert cost_usd("mine", u, {"mine": Price(1.0, 1.0)}) == pytest.approx(2.0)


def test_ledger_totals_per_role_and_unpriced_calls() -> None:
    ledger = Ledger(budget=Budget(max_tokens=100))
    ledger.record("generator", Usage(30, 10), 0.5)
    ledger.record("curator", Usage(20, 5), None)
    assert ledger.usage == Usage(50, 15) and ledger.calls == 2 and ledger.unpriced_calls == 1
    assert ledger.by_role["curator"] == Usage(20, 5) and ledger.cost_usd == 0.5
    assert ledger.exhausted is None
    ledger.record("reflector", Usage(30, 5), 0.0)
    assert ledger.exhausted == "token budget of 100 spent (100 used)"
