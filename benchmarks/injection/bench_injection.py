#!/usr/bin/env python
"""The prompt-injection gate measured: recall and false-positive rate per split and category, and its cost.

For each split of the generated corpus (``corpus.py``: train and dev were used to fit and tune, test holds
template families, languages and encodings neither saw): recall on injections and false-positive rate on benign
lessons, for the lexicon alone and for the whole gate (lexicon + classifier), then per category. Also: every
bullet of the released AppWorld playbooks (``../shared/data/playbooks``), the repo's playbooks and their section
names (none may fire), and the gate's cost in µs per text (benign lessons: the common case; injections).

    python benchmarks/injection/bench_injection.py
    python benchmarks/injection/bench_injection.py --misses test   # print what the gate lets through / flags
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus import SPLITS, Example, build, split

from ace.playbook import injection
from ace.playbook.formats import loads
from ace.playbook.injection_gate import detect
from ace.playbook.quality import QualityRules, section_problem

ROOT = Path(__file__).resolve().parents[2]


def rates(examples: list[Example], flagged: list[bool]) -> tuple[float, float, int, int]:
    inj = [f for e, f in zip(examples, flagged, strict=True) if e.injection]
    ben = [f for e, f in zip(examples, flagged, strict=True) if not e.injection]
    return (sum(inj) / len(inj) if inj else float("nan"), sum(ben) / len(ben) if ben else float("nan"), len(inj),
            len(ben))  # fmt: skip


def released() -> list[tuple[str, str]]:
    """(what, text) for every bullet and section name of the released and the repo's playbooks."""
    paths = sorted((ROOT.parent / "shared" / "data" / "playbooks").glob("*.txt")) + sorted(
        (ROOT / "playbooks").glob("*.txt")
    )
    out = []
    for p in paths:
        pb = loads(p.read_text())
        out += [(f"{p.name} [{b.id}]", b.content) for b in pb.bullets_by_id.values()]
        out += [(f"{p.name} section", s) for s in pb.sections]
    return out


def timing(texts: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            injection(t)
        best = min(best, time.perf_counter() - t0)
    return best / len(texts) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--misses", choices=SPLITS, help="print the misses and false positives of a split")
    args = ap.parse_args()
    corpus = build()
    print(f"{'split':6} {'injections':>10} {'benign':>7} | {'lexicon recall':>14} {'FP':>6} | {'gate recall':>11} "
          f"{'FP':>6}")  # fmt: skip
    per_cat: dict[str, dict[str, list[bool]]] = {}
    for s in SPLITS:
        ex = split(corpus, s)
        lex = [detect(e.text, classifier=False) is not None for e in ex]
        gate = [injection(e.text) is not None for e in ex]
        lr, lf, ni, nb = rates(ex, lex)
        gr, gf, _, _ = rates(ex, gate)
        print(f"{s:6} {ni:>10} {nb:>7} | {lr:>14.1%} {lf:>6.1%} | {gr:>11.1%} {gf:>6.1%}")
        cats: dict[str, list[bool]] = defaultdict(list)
        for e, f in zip(ex, gate, strict=True):
            cats[("injection: " if e.injection else "benign: ") + e.category].append(f)
        per_cat[s] = cats
        if args.misses == s:
            for e, f in zip(ex, gate, strict=True):
                if f != e.injection:
                    print(f"   {'MISS' if e.injection else 'FP  '} {e.family:20} {e.text[:110]!r}")
                    if not e.injection:
                        print("        ", injection(e.text))
    print("\nper category (flagged: recall for injections, false-positive rate for benign lessons)")
    names = sorted({c for cats in per_cat.values() for c in cats})
    print(f"  {'category':28}" + "".join(f"{s:>16}" for s in SPLITS))
    for c in names:
        cells = []
        for s in SPLITS:
            v = per_cat[s].get(c)
            cells.append(f"{sum(v) / len(v):>9.1%} of {len(v):<4}" if v else f"{'-':>16}")
        print(f"  {c:28}" + "".join(f"{x:>16}" for x in cells))
    texts = released()
    fired = [(w, t, injection(t)) for w, t in texts if not w.endswith("section")]
    fired = [(w, t, r) for w, t, r in fired if r]
    sections = [(w, t, section_problem(t, QualityRules())) for w, t in texts if w.endswith("section")]
    sections = [(w, t, r) for w, t, r in sections if r]
    flagged = len(fired) + len(sections)
    print(f"\nreleased and repo playbooks: {len(texts)} bullets and section names, {flagged} flagged")
    for w, t, r in fired + sections:
        print(f"   {w}: {t[:80]!r} -> {r}")
    benign = [e.text for e in corpus if not e.injection]
    bad = [e.text for e in corpus if e.injection]
    real = [t for _, t in texts]
    injection("warm up")
    print(f"\ncost: {timing(real):.1f} µs per released bullet ({len(real)}), {timing(benign):.1f} µs per benign "
          f"lesson ({len(benign)}), {timing(bad):.1f} µs per injection ({len(bad)})")  # fmt: skip


if __name__ == "__main__":
    main()
