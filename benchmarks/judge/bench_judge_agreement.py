"""Agreement of the LLM-as-judge with exact (numeric) match on the Formula validation subset.

For each of the first N validation questions, two answers are judged: the reference value (correct) and a wrong
one (the reference times 1.37 plus 1, rounded to two decimals): a labelled set with as many right answers as
wrong ones. The judge (any provider; the local model by default) scores each against a rubric with the reference
shown; its pass/fail is compared with the numeric evaluator's. Prints the agreement, Cohen's kappa, the confusion
counts and the time per verdict.

    python benchmarks/judge/bench_judge_agreement.py [--n 20] [--provider local]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ace.llm import LLM, Sampling
from ace.loop.judge import Judge, Rubric, agreement, judged_pairs
from ace.tasks import load_finance, numeric

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "finance" / "formula_val_subset_300.jsonl"
RUBRIC = Rubric(
    name="formula",
    criteria=["The final number equals the reference answer (to two decimals)", "The answer is a number"],
    pass_score=0.6,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--provider", default="local")
    args = ap.parse_args()
    tasks = load_finance(DATA, "formula", limit=args.n)
    items = []
    for t in tasks:
        assert t.target is not None
        items.append((t, t.target))
        items.append((t, f"{float(t.target) * 1.37 + 1:.2f}"))
    judge = Judge(LLM(args.provider, sampling=Sampling(max_tokens=96)), RUBRIC, provider=args.provider)
    start = time.perf_counter()
    pairs = judged_pairs(judge, numeric(), items)
    took = time.perf_counter() - start
    a = agreement(pairs)
    kappa = "undefined" if a.kappa is None else f"{a.kappa:.2f}"
    print(f"provider {args.provider}: {a.n} verdicts on {len(tasks)} Formula validation questions")
    print(f"agreement with numeric exact match: {a.agree}/{a.n} = {100 * a.rate:.1f} %; Cohen's kappa {kappa}")
    print("confusion (judge/truth):", ", ".join(f"{k} {v}" for k, v in a.confusion.items()))
    print(f"{took / max(1, len(items)):.1f} s per verdict")


if __name__ == "__main__":
    main()
