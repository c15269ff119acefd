#!/usr/bin/env python
"""Fit the injection gate's classifier on the corpus's train split and write its weights as a Python module.

The classifier is a logistic regression (L2, fitted with L-BFGS) over the features
:func:`ace.playbook.injection_gate.windows` gives a text's normalized view (words, word pairs, 5-letter stems and the
lexicon's concepts) over the whole text. Training texts: the generated corpus's train split, and
when installed (``pip install -r benchmarks/injection/requirements.txt``) the injections shipped by two
MIT-licensed packages, nullsec-promptinject and jailbreak-corpus-mini-py; bastioncorpus, the external test set, is
never read here. Encoded injections are left out of training (the gate decodes them first and judges the
decoded text). The threshold is chosen on the dev split: the lowest score that keeps the false positives on dev's
benign lessons at or under ``--max-fp`` *of the whole gate* (lexicon included); the test split is never read.
Weights smaller than ``--prune`` are dropped. Numpy and scipy are needed here only, not at run time.

    python benchmarks/injection/train.py            # writes ace/playbook/_injection_weights.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus import Example, build, external_training, split

from ace.playbook import injection_gate as inj

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "ace" / "playbook" / "_injection_weights.py"


def rows(text: str, injection: bool, category: str = "") -> list[set[str]]:
    """The feature sets the classifier is fitted on for one text: those of each of its views (the gate scores the
    whole text; a sentence-by-sentence variant was tried and not kept, see the README). An injection hidden in an
    ordinary lesson is not used: most of its words are the lesson's, and labelling them an injection's teaches the
    classifier to flag long lessons (tried: 21 released AppWorld bullets flagged)."""
    if injection and category == "embedded":
        return []
    out: list[set[str]] = []
    for view in inj.views(text):
        _, at, tokens = inj._rules(view)
        if tokens:
            out += inj.windows(view, tokens, at)
    return out


def fit(examples: list[Example], l2: float, min_count: int) -> tuple[float, dict[str, float]]:
    table: list[set[str]] = []
    labels: list[float] = []
    for e in examples:
        for r in rows(e.text, e.injection, e.category):
            table.append(r)
            labels.append(1.0 if e.injection else 0.0)
    counts: dict[str, int] = {}
    for r in table:
        for f in r:
            counts[f] = counts.get(f, 0) + 1
    vocab = {f: i for i, f in enumerate(sorted(f for f, c in counts.items() if c >= min_count))}
    data, ind, ptr = [], [], [0]
    for r in table:  # a feature counts once in a window, as the gate sums it
        cols = sorted({vocab[f] for f in r if f in vocab})
        ind += cols
        data += [1.0] * len(cols)
        ptr.append(len(ind))
    x = csr_matrix((data, ind, ptr), shape=(len(table), len(vocab)))
    y = np.array(labels)
    # balance the classes
    w_pos = 0.5 / y.mean()
    w_neg = 0.5 / (1 - y.mean())
    sw = np.where(y == 1, w_pos, w_neg)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        eps = 1e-12
        ll = -(sw * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))).sum() / len(y)
        g = sw * (p - y) / len(y)
        grad = np.concatenate([[g.sum()], x.T @ g + l2 * w])
        return ll + 0.5 * l2 * float(w @ w), grad

    res = minimize(loss, np.zeros(len(vocab) + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = res.x
    names = sorted(vocab, key=vocab.__getitem__)
    return float(theta[0]), {f: float(theta[1 + i]) for i, f in enumerate(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--l2", type=float, default=3e-4)
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--prune", type=float, default=0.02)
    ap.add_argument("--max-fp", type=float, default=0.0, help="false-positive rate allowed on dev's benign lessons")
    ap.add_argument("--margin", type=float, default=0.1, help="added to the threshold dev allows")
    args = ap.parse_args()
    corpus = build()
    ext = external_training()
    n_ext = len(ext)
    train = [e for e in split(corpus, "train") if e.category != "encoding"] + ext
    bias, weights = fit(train, args.l2, args.min_count)
    weights = {f: round(w, 3) for f, w in weights.items() if abs(w) >= args.prune}
    # the threshold: dev's benign lessons that the lexicon lets through, scored
    dev = split(corpus, "dev")
    scores = []
    for e in dev:
        if e.injection or inj.detect(e.text, classifier=False) is not None:
            continue
        best = max(bias + sum(weights.get(f, 0.0) for f in ws) for ws in rows(e.text, False))
        scores.append(best)
    scores.sort(reverse=True)
    allowed = int(args.max_fp * len(scores))
    threshold = max(scores[allowed] + args.margin, 0.0) if scores else 0.0
    body = ",\n".join(f"    {json.dumps(f, ensure_ascii=False)}: {w!r}" for f, w in sorted(weights.items()))
    OUT.write_text(
        '"""Weights of the injection gate\'s classifier (generated by benchmarks/injection/train.py: do not edit).\n\n'
        f"A logistic regression over {len(weights)} features (words, word pairs, stems, lexicon concepts) of the\n"
        f"whole text, fitted on the generated corpus's train split and {n_ext} injections of MIT-licensed packages\n"
        f"(nullsec-promptinject, jailbreak-corpus-mini-py; l2={args.l2}); the threshold ({threshold:.2f}) was chosen\n"
        'on the generated dev split."""\n\n'
        f"BIAS: float = {bias!r}\nTHRESHOLD: float = {threshold!r}\nWEIGHTS: dict[str, float] = {{\n{body},\n}}\n"
    )
    top = sorted(weights.items(), key=lambda kv: -kv[1])[:25]
    print(f"{len(train)} training texts, {len(weights)} weights kept, bias {bias:.2f}, threshold {threshold:.2f}")
    print("heaviest:", ", ".join(f"{f}={w:.2f}" for f, w in top))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
