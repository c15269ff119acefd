#!/usr/bin/env python
"""Fit the embedding judge (judge.py here, an experiment, not shipped); weights to benchmarks/injection/results/.

Every text is cut into units (:func:`judge.units`: the text, its decoded readings and normalized
views, whole and sentence by sentence); each unit is embedded with the offline MiniLM (int8 ONNX) and a
one-hidden-layer network (ReLU, numpy, Adam, L2) scores it; a text's score is its highest unit's.

Training texts: the generated corpus's train split and, when installed (``pip install -r
benchmarks/injection/requirements.txt``), the injections of nullsec-promptinject and jailbreak-corpus-mini-py
(MIT). Never read here: the generated test split and bastioncorpus (the external test set).

Labels per unit (multiple-instance learning): every unit of a benign text is benign. An injection is a bag whose
best unit must score as one, but its other units may be ordinary sentences (an injection appended to a lesson), so
round 0 trains on the whole text of injections that are one sentence and not hidden in a lesson; each later round
takes, in every injection, the unit the previous round scored highest as that injection's positive.

The threshold is chosen on the dev split only: the lowest log-odds that flags at most ``--max-fp`` of dev's benign
lessons (the judge alone), plus ``--margin``.

Tried (threshold on dev, union with the gate, dev / held-out test / bastioncorpus recall; FP): this network 70.5 /
75.8 / 78.0 % (0.6 / 0.0 / 11.1 %); plain nearest neighbours (best cosine to a training injection unit minus best
cosine to a benign one) 78.1 / 78.1 / 77.1 % (0.4 / 0.0 / 7.9 %); both summed 79.5 / 80.8 / 78.0 % (0.4 / 0.0 /
7.9 %); the gate's classifier score and lexicon concepts as extra inputs 71.0 % on dev. None is near the bar.

    python benchmarks/injection/train_judge.py       # ~4 min the first time (embeddings cached under ~/.cache)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus import Example, build, external_training, split
from judge import Network, units

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "results" / "injection_judge.npz"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ace-injection-judge"


class CachedEmbeddings:
    """MiniLM vectors of unit texts, kept on disk between runs (keyed by the text's SHA-256)."""

    def __init__(self, path: Path = CACHE / "minilm-int8.npz") -> None:
        self.path = path
        self.vec: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as z:
                self.vec = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))
        self._embedder = None
        self.dirty = False

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if self.key(t) not in self.vec})
        if missing:
            if self._embedder is None:
                from ace.llm.embeddings import MiniLMEmbedder

                self._embedder = MiniLMEmbedder()  # type: ignore[assignment]
            t0 = time.perf_counter()
            for start in range(0, len(missing), 512):
                chunk = missing[start : start + 512]
                for t, v in zip(chunk, self._embedder.embed(chunk), strict=True):  # type: ignore[attr-defined]
                    self.vec[self.key(t)] = v
                print(f"  embedded {min(start + 512, len(missing))}/{len(missing)} new units "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            self.dirty = True
        return np.stack([self.vec[self.key(t)] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.vec)
            np.savez(self.path, keys=np.array(keys), vecs=np.stack([self.vec[k] for k in keys]))
            self.dirty = False


class Bags:
    """The units of each text and their vectors (rows of ``x``; ``bag[i]`` the rows of text i)."""

    def __init__(self, examples: list[Example], cache: CachedEmbeddings) -> None:
        self.examples = examples
        self.units = [units(e.text) for e in examples]
        flat = [u for us in self.units for u in us]
        self.x = cache.embed(flat).astype(np.float32)
        self.bag: list[np.ndarray] = []
        at = 0
        for us in self.units:
            self.bag.append(np.arange(at, at + len(us)))
            at += len(us)

    def text_scores(self, net: Network) -> np.ndarray:
        z = net.logits(self.x)
        return np.array([z[b].max() if len(b) else -np.inf for b in self.bag])


def fit(x: np.ndarray, y: np.ndarray, hidden: int, l2: float, epochs: int, lr: float, seed: int) -> Network:
    """A one-hidden-layer ReLU network fitted by full-batch Adam on class-balanced logistic loss."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    params = {
        "w1": rng.normal(0, (2 / d) ** 0.5, (d, hidden)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.normal(0, (1 / hidden) ** 0.5, hidden).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())).astype(np.float32) / len(y)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    b1_, b2_ = 0.9, 0.999
    for step in range(1, epochs + 1):
        h_pre = x @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        z = h @ params["w2"] + params["b2"][0]
        p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        g = sw * (p - y)  # dL/dz
        grads = {
            "w2": h.T @ g + l2 * params["w2"],
            "b2": np.array([g.sum()], np.float32),
        }
        gh = np.outer(g, params["w2"]) * (h_pre > 0)
        grads["w1"] = x.T @ gh + l2 * params["w1"]
        grads["b1"] = gh.sum(axis=0)
        for k in params:
            m[k] = b1_ * m[k] + (1 - b1_) * grads[k]
            v2[k] = b2_ * v2[k] + (1 - b2_) * grads[k] ** 2
            mh = m[k] / (1 - b1_**step)
            vh = v2[k] / (1 - b2_**step)
            params[k] = params[k] - lr * mh / (np.sqrt(vh) + 1e-8)
    return Network(params["w1"], params["b1"], params["w2"], float(params["b2"][0]), 0.0)


def train(bags: Bags, rounds: int, hidden: int, l2: float, epochs: int, lr: float, seed: int) -> Network:
    neg_rows = np.concatenate([b for b, e in zip(bags.bag, bags.examples, strict=True) if not e.injection])
    pos_bags = [(i, b) for i, (b, e) in enumerate(zip(bags.bag, bags.examples, strict=True)) if e.injection and len(b)]
    # round 0: injections that are one sentence, not hidden in a lesson, not encoded: their whole text
    clean = [
        b[0]
        for i, b in pos_bags
        if bags.examples[i].category not in ("embedded", "encoding") and len(bags.units[i]) == 1
    ]
    pos_rows = np.array(clean)
    net: Network | None = None
    for r in range(rounds + 1):
        if net is not None:
            z = net.logits(bags.x)
            best = [b[np.argmax(z[b])] for _, b in pos_bags]
            pos_rows = np.unique(np.concatenate([np.array(clean), np.array(best)]))
        x = np.concatenate([bags.x[neg_rows], bags.x[pos_rows]])
        y = np.concatenate([np.zeros(len(neg_rows), np.float32), np.ones(len(pos_rows), np.float32)])
        net = fit(x, y, hidden, l2, epochs, lr, seed)
        s = bags.text_scores(net)
        lab = np.array([e.injection for e in bags.examples])
        print(f"  round {r}: {len(pos_rows)} positive units, {len(neg_rows)} negative; train recall at 0: "
              f"{(s[lab] >= 0).mean():.1%}, FP {(s[~lab] >= 0).mean():.1%}", flush=True)  # fmt: skip
    assert net is not None
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--rounds", type=int, default=2, help="multiple-instance rounds after the first fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-fp", type=float, default=0.005, help="false-positive rate allowed on dev's benign lessons")
    ap.add_argument("--margin", type=float, default=0.0, help="added to the threshold dev allows (log-odds)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cache = CachedEmbeddings()
    corpus = build()
    train_ex = split(corpus, "train") + external_training()
    dev_ex = split(corpus, "dev")
    t0 = time.perf_counter()
    tb = Bags(train_ex, cache)
    db = Bags(dev_ex, cache)
    cache.save()
    print(f"{len(train_ex)} training texts ({len(tb.x)} units), {len(dev_ex)} dev texts ({len(db.x)} units); "
          f"embeddings {time.perf_counter() - t0:.0f} s")  # fmt: skip
    net = train(tb, args.rounds, args.hidden, args.l2, args.epochs, args.lr, args.seed)
    net.w1 = net.w1.astype(np.float16).astype(np.float32)  # as shipped, so the threshold fits the shipped weights
    s = db.text_scores(net)
    lab = np.array([e.injection for e in dev_ex])
    benign = np.sort(s[~lab])[::-1]
    allowed = int(args.max_fp * len(benign))
    threshold = float(benign[allowed]) + 1e-3 + args.margin  # flags at most `allowed` of them (>= flags)
    print(f"dev: threshold {threshold:.2f} (benign scores, highest: {', '.join(f'{v:.2f}' for v in benign[:5])})")
    print(f"dev: recall {(s[lab] >= threshold).mean():.1%}, FP {(s[~lab] >= threshold).mean():.1%} "
          f"({int((s[~lab] >= threshold).sum())} of {len(benign)})")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        w1=net.w1.astype(np.float16),
        b1=net.b1.astype(np.float32),
        w2=net.w2.astype(np.float32),
        b2=np.float32(net.b2),
        threshold=np.float32(threshold),
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} "
          f"({args.out.stat().st_size // 1024} KiB)")  # fmt: skip


if __name__ == "__main__":
    main()
