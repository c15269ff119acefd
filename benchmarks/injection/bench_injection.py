#!/usr/bin/env python
"""The prompt-injection gate measured: recall and false-positive rate per split and category, and its cost.

For each split of the generated corpus (``corpus.py``: train and dev were used to fit and tune, test holds
template families, languages and encodings neither saw): recall on injections and false-positive rate on benign
lessons, for the lexicon alone and for the whole gate (lexicon + classifier), then per category. Also: every
bullet of the released AppWorld playbooks (``../shared/data/playbooks``), the repo's playbooks and their section
names (none may fire), and the gate's cost in µs per text (median and 99th percentile of each text's best of
three runs; benign lessons: the common case; injections).

With ``--external`` (after ``pip install -r benchmarks/injection/requirements.txt``), the same figures on an
external corpus written by someone else: bastioncorpus 0.6.0 (MIT; 118 injections and 63 benign texts in
English, German, French, Spanish and Italian, with obfuscations), never trained or tuned on; its ``{canary}`` slot
is filled with a token, as its probe runner does.

    python benchmarks/injection/bench_injection.py
    python benchmarks/injection/bench_injection.py --external
    python benchmarks/injection/bench_injection.py --misses test   # print what the gate lets through / flags
    python benchmarks/injection/bench_injection.py --misses external
    python benchmarks/injection/bench_injection.py --external --probe   # with the embedded model's probe

With ``--probe``, a third column: the gate and the injection probe (:mod:`ace.llm.injection_probe`, the local
model's embeddings of each unit scored by a linear probe) together, as a commit checks a lesson, and the probe's cost
per lesson. Embeddings are cached by unit in ``results/probe_cache.db`` (shared with ``train_probe.py``); the cost
is measured on texts the cache does not hold.
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


def external() -> list[Example]:
    """bastioncorpus's rows as examples (split "external"; the category is the corpus's own, with its language)."""
    from bastioncorpus import load_corpus

    return [
        Example(r.text.replace("{canary}", "BC-7F3A9C2E"), r.label == "malicious", f"{r.category}", r.lang, "external")
        for r in load_corpus()
    ]


def timing(texts: list[str], repeat: int = 3) -> tuple[float, float, float]:
    """(median, 99th percentile, mean) µs per text, each text timed as the best of ``repeat`` runs."""
    per = []
    clock = time.perf_counter_ns
    for t in texts:
        best = 1 << 62
        for _ in range(repeat):
            t0 = clock()
            injection(t)
            best = min(best, clock() - t0)
        per.append(best / 1000)
    per.sort()
    return per[len(per) // 2], per[min(len(per) - 1, int(0.99 * len(per)))], sum(per) / len(per)


def cost(name: str, texts: list[str]) -> str:
    med, p99, mean = timing(texts)
    return f"{name} ({len(texts)}): median {med:.1f} µs, p99 {p99:.1f} µs, mean {mean:.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--misses", choices=(*SPLITS, "external"), help="print the misses and false positives of a split")
    ap.add_argument("--external", action="store_true", help="also measure on bastioncorpus (never trained on)")
    ap.add_argument("--probe", action="store_true", help="also the gate with the local model's probe (slower)")
    args = ap.parse_args()
    probe = None
    if args.probe:
        from train_probe import CachedModel

        from ace.llm.injection_probe import InjectionProbe

        probe = InjectionProbe(model=CachedModel())

    def both(text: str) -> bool:
        return injection(text) is not None or (probe is not None and probe(text) is not None)

    corpus = build()
    splits: tuple[str, ...] = SPLITS
    if args.external or args.misses == "external":
        corpus += external()
        splits = (*SPLITS, "external")
    print(f"{'split':8} {'injections':>10} {'benign':>7} | {'lexicon recall':>14} {'FP':>6} | {'gate recall':>11} "
          f"{'FP':>6}" + (f" | {'gate+probe recall':>17} {'FP':>6}" if probe else ""))  # fmt: skip
    per_cat: dict[str, dict[str, list[bool]]] = {}
    for s in splits:
        ex = split(corpus, s)
        lex = [detect(e.text, classifier=False) is not None for e in ex]
        gate = [injection(e.text) is not None for e in ex]
        lr, lf, ni, nb = rates(ex, lex)
        gr, gf, _, _ = rates(ex, gate)
        row = f"{s:8} {ni:>10} {nb:>7} | {lr:>14.1%} {lf:>6.1%} | {gr:>11.1%} {gf:>6.1%}"
        if probe is not None:
            gate = [g or probe(e.text) is not None for g, e in zip(gate, ex, strict=True)]
            pr, pf, _, _ = rates(ex, gate)
            row += f" | {pr:>17.1%} {pf:>6.1%}"
        print(row)
        cats: dict[str, list[bool]] = defaultdict(list)
        for e, f in zip(ex, gate, strict=True):
            cats[("injection: " if e.injection else "benign: ") + e.category].append(f)
        per_cat[s] = cats
        if args.misses == s:
            for e, f in zip(ex, gate, strict=True):
                if f != e.injection:
                    print(f"   {'MISS' if e.injection else 'FP  '} {e.category:20} {e.text[:110]!r}")
                    if not e.injection:
                        print("        ", injection(e.text) or (probe(e.text) if probe else None))
    print("\nper category (flagged: recall for injections, false-positive rate for benign lessons)")
    names = sorted({c for cats in per_cat.values() for c in cats})
    print(f"  {'category':34}" + "".join(f"{s:>16}" for s in splits))
    for c in names:
        cells = []
        for s in splits:
            v = per_cat[s].get(c)
            cells.append(f"{sum(v) / len(v):>9.1%} of {len(v):<4}" if v else f"{'-':>16}")
        print(f"  {c:34}" + "".join(f"{x:>16}" for x in cells))
    texts = released()
    fired = [(w, t, injection(t) or (probe(t) if probe else None)) for w, t in texts if not w.endswith("section")]
    fired = [(w, t, r) for w, t, r in fired if r]
    sections = [
        (w, t, section_problem(t, QualityRules()) or (probe(t) if probe else None))
        for w, t in texts
        if w.endswith("section")
    ]
    sections = [(w, t, r) for w, t, r in sections if r]
    flagged = len(fired) + len(sections)
    print(f"\nreleased and repo playbooks: {len(texts)} bullets and section names, {flagged} flagged")
    for w, t, r in fired + sections:
        print(f"   {w}: {t[:80]!r} -> {r}")
    benign = [e.text for e in corpus if not e.injection and e.split != "external"]
    bad = [e.text for e in corpus if e.injection and e.split != "external"]
    real = [t for w, t in texts if not w.endswith("section")]
    for t in real + benign:  # warm up (the lexicon remembers the words it has seen, as a running gate does)
        injection(t)
    print("\ncost per text:")
    print("  " + cost("released and repo playbook bullets", real))
    print("  " + cost("generated benign lessons", benign))
    print("  " + cost("generated injections", bad))
    if probe is not None:
        from ace.llm.injection_probe import InjectionProbe, units

        live = InjectionProbe()  # no cache: the model embeds every unit
        sample = benign[::20][:40]
        live("warm up the model")
        t0 = time.perf_counter()
        n_units = 0
        for t in sample:
            live(t)
            n_units += len(units(t))
        spent = time.perf_counter() - t0
        print(f"  the probe on {len(sample)} generated benign lessons ({n_units} units, not cached): "
              f"{spent / len(sample) * 1000:.0f} ms per lesson, {spent / n_units * 1000:.0f} ms per unit")  # fmt: skip


if __name__ == "__main__":
    main()
