#!/usr/bin/env python
"""The embedding judge (judge.py here, an experiment: not shipped) measured beside the pure gate, and both together.

For each split of the generated corpus (train and dev were used to fit and calibrate the judge; test never) and for
bastioncorpus (the external test set, never trained or tuned on): recall and false-positive rate of (a) the pure
gate (``ace.playbook.quality.injection``), (b) the judge alone, (c) their union (flag when either does); then per
category and per language. Also every bullet of the released AppWorld playbooks (``../shared/data/playbooks``) and
of ``playbooks/*.txt`` (none may be flagged), and the cost: ms per text (median / p99, one text at a time, the
model loaded) and one ``check_many`` over all 326 AppWorld bullets (an import).

    pip install -r benchmarks/injection/requirements.txt
    python benchmarks/injection/train_judge.py        # writes benchmarks/injection/results/injection_judge.npz
    python benchmarks/injection/bench_judge.py        # add --misses test|external to print what gets through
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_injection import external, released
from corpus import SPLITS, build, split
from judge import InjectionJudge, Network, units
from train_judge import Bags, CachedEmbeddings

from ace.playbook import injection

ROOT = Path(__file__).resolve().parents[2]


def rate(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):>6.1%}" if flags else f"{'-':>6}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--misses", choices=(*SPLITS, "external"), help="print misses and false positives of a split")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    net = Network.load()
    cache = CachedEmbeddings()
    corpus = build() + external()
    print(f"judge threshold {net.threshold:.2f} (log-odds)\n")
    print(f"{'split':8} {'inj':>4} {'ben':>4} | {'gate rec':>8} {'FP':>6} | {'judge rec':>9} {'FP':>6} | "
          f"{'union rec':>9} {'FP':>6}")  # fmt: skip
    cats: dict[str, dict[str, dict[str, list[bool]]]] = {}
    for s in (*SPLITS, "external"):
        ex = split(corpus, s)
        bags = Bags(ex, cache)
        judge = list(bags.text_scores(net) >= net.threshold)
        gate = [injection(e.text) is not None for e in ex]
        union = [a or b for a, b in zip(gate, judge, strict=True)]
        row = f"{s:8} {sum(e.injection for e in ex):>4} {sum(not e.injection for e in ex):>4}"
        for flags in (gate, judge, union):
            rec = [f for e, f in zip(ex, flags, strict=True) if e.injection]
            fp = [f for e, f in zip(ex, flags, strict=True) if not e.injection]
            row += f" | {rate(rec):>8} {rate(fp):>6}" if flags is gate else f" | {rate(rec):>9} {rate(fp):>6}"
        print(row)
        c: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for e, g, j, u in zip(ex, gate, judge, union, strict=True):
            kinds = [("injection: " if e.injection else "benign: ") + e.category]
            lang = e.family.split("/")[1] if e.family.startswith(("language/", "more-language/")) else None
            if s == "external":
                lang = e.family  # bastioncorpus: the family slot holds the language
            if lang:
                kinds.append(("injection lang: " if e.injection else "benign lang: ") + lang)
            for k in kinds:
                c[k]["gate"].append(g)
                c[k]["judge"].append(j)
                c[k]["union"].append(u)
        cats[s] = c
        if args.misses == s:
            sc = bags.text_scores(net)
            for e, g, j, u, v in zip(ex, gate, judge, union, sc, strict=True):
                if u != e.injection or (not e.injection and (g or j)):
                    print(f"   {'MISS' if e.injection else 'FP  '} {e.category:18} gate={g:d} judge={j:d} "
                          f"{v:6.2f} {e.text[:100]!r}")  # fmt: skip
    for s in ("test", "external"):
        print(f"\n{s}: per category and language (gate / judge / union; n)")
        for k in sorted(cats[s]):
            v = cats[s][k]
            print(f"  {k:36} {rate(v['gate'])} {rate(v['judge'])} {rate(v['union'])}   n={len(v['gate'])}")
    texts = released()
    bullets = [(w, t) for w, t in texts if not w.endswith("section")]
    judge = InjectionJudge()
    verdicts = judge.check_many([t for _, t in texts])
    flagged = [(w, t, r) for (w, t), r in zip(texts, verdicts, strict=True) if r]
    scores = judge.scores([t for _, t in texts])
    top = max(scores)[0]
    print(f"\nreleased and repo playbooks: {len(bullets)} bullets and {len(texts) - len(bullets)} section names, "
          f"{len(flagged)} flagged by the judge (highest {top:.2f}, threshold {judge.threshold:.2f})")  # fmt: skip
    for w, t, r in flagged:
        print(f"   {w}: {t[:80]!r} -> {r}")
    if args.no_timing:
        return
    appworld = [t for w, t in bullets if w.startswith("appworld")]
    sample = [e.text for e in split(corpus, "test")][::4] + appworld[::2]
    judge(sample[0])  # warm up
    per = []
    for t in sample:
        t0 = time.perf_counter()
        judge(t)
        per.append((time.perf_counter() - t0) * 1000)
    per.sort()
    print(
        f"\ncost, one text at a time ({len(sample)} texts: test split and AppWorld bullets): median "
        f"{per[len(per) // 2]:.1f} ms, p99 {per[int(0.99 * len(per))]:.1f} ms, mean {float(np.mean(per)):.1f} ms"
    )
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        judge.check_many(appworld)
        runs.append(time.perf_counter() - t0)
    n_units = sum(len(units(t)) for t in appworld)
    print(
        f"check_many over the {len(appworld)} AppWorld bullets ({n_units} units): best {min(runs):.2f} s, "
        f"median {sorted(runs)[1]:.2f} s"
    )


if __name__ == "__main__":
    main()
