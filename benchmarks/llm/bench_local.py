#!/usr/bin/env python
"""Overhead of the ``local`` provider over raw llama-cpp-python, and the offline embedder's speed.

Both sides use the same loaded model, the same prompt text (the transcript the provider builds), the same sampling
(greedy) and, for structured calls, the same grammar; runs are interleaved (raw, ours, raw, ours, ...) so drift
hits both, and the model's KV cache is reset before every call so neither side reuses the other's prompt.
Tokens/s = completion tokens / wall time of the call (prompt processing included). Overhead = 1 - ours / raw.

    python benchmarks/llm/bench_local.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pydantic import BaseModel

from ace.llm import LLM, Message, Sampling
from ace.llm.embeddings import MiniLMEmbedder, sanity_pair
from ace.llm.local import LocalProvider, transcript
from ace.llm.structured import bound_schema

PROMPTS = [
    "Explain in two sentences why a playbook of short rules helps an agent.",
    "List three things to check before paying an invoice.",
    "Revenue was 120 in 2022 and 150 in 2023. Describe the change.",
]


class Answer(BaseModel):
    reasoning: str
    final_answer: str


def raw_call(llama: object, prompt: str, max_tokens: int, grammar: object | None) -> tuple[int, float]:
    t = time.perf_counter()
    kwargs = {"max_tokens": max_tokens, "temperature": 0.0}
    kwargs["grammar"] = grammar if grammar is not None else None
    kwargs["stop"] = [] if grammar is not None else ["\nUser:"]
    out = llama.create_completion(prompt, **kwargs)  # type: ignore[attr-defined]
    return out["usage"]["completion_tokens"], time.perf_counter() - t


def ours_call(llm: LLM, prompt: str, max_tokens: int, structured: bool) -> tuple[int, float]:
    t = time.perf_counter()
    r = llm.call(
        [Message("user", prompt)], output=Answer if structured else None, sampling=Sampling(max_tokens=max_tokens)
    )
    return r.usage.output_tokens, time.perf_counter() - t


def main() -> None:
    from llama_cpp import LlamaGrammar

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--sentences", type=int, default=1000)
    args = ap.parse_args()

    provider = LocalProvider()
    llama = provider.llama()
    llm = LLM(provider)
    schema = bound_schema(Answer.model_json_schema(), args.max_tokens)
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)

    rows = []
    for structured in (False, True):
        raw_tps, ours_tps = [], []
        raw_call(llama, transcript((Message("user", PROMPTS[0]),), None), 8, None)  # warm-up
        for _ in range(args.rounds):
            for i, p in enumerate(PROMPTS):
                text = transcript((Message("user", p),), schema if structured else None)
                sides = [
                    (raw_tps, raw_call, (llama, text, args.max_tokens, grammar if structured else None)),
                    (ours_tps, ours_call, (llm, p, args.max_tokens, structured)),
                ]
                for rates, call, call_args in sides if i % 2 == 0 else sides[::-1]:  # alternate who goes first
                    llama.reset()  # no KV-cache reuse of the identical prompt by the second caller
                    n, dt = call(*call_args)
                    rates.append(n / dt)
        raw, ours = statistics.median(raw_tps), statistics.median(ours_tps)
        rows.append(("structured (JSON grammar)" if structured else "plain text", raw, ours, 1 - ours / raw))

    print(
        f"local provider vs raw llama-cpp-python, Gemma 3 270M Q4_K_M, n_threads={provider.n_threads}, "
        f"{args.rounds} rounds x {len(PROMPTS)} prompts, max_tokens={args.max_tokens} (median tokens/s)"
    )
    print(f"{'mode':28s}{'raw tok/s':>12s}{'ours tok/s':>12s}{'overhead':>10s}")
    for mode, raw, ours, overhead in rows:
        print(f"{mode:28s}{raw:12.1f}{ours:12.1f}{overhead:10.1%}")

    emb = MiniLMEmbedder()
    sentences = [
        f"When endpoint_{i % 97} returns a page, loop over page_index until an empty page is returned (rule {i})."
        for i in range(args.sentences)
    ]
    emb.embed(sentences[:32])  # warm-up
    t = time.perf_counter()
    emb.embed(sentences)
    rate = len(sentences) / (time.perf_counter() - t)
    related, unrelated = sanity_pair(emb)
    print(
        f"\nembedder {emb.name}: {rate:.0f} sentences/s ({len(sentences)} sentences, batch {emb.batch_size}); "
        f"sanity cos(cat, feline) = {related:.3f}, cos(cat, stocks) = {unrelated:.3f}"
    )


if __name__ == "__main__":
    main()
