"""An experiment, not shipped: MiniLM sentence embeddings scored by a small trained network, as a second opinion
on prompt injection beside the pure gate. Measured (``bench_judge.py``) it does not come near issue #22's bar
(union with the gate: 75.8 % recall on the held-out split, 78.0 % at 11 % false positives on bastioncorpus) and
it flags released AppWorld bullets, so it stays here with its training and benchmark scripts, for the record.

:mod:`ace.playbook.injection_gate` is pure (no I/O, microseconds) and reads words; this judge reads meaning. It
embeds *units* of a lesson with the offline embedder (:class:`ace.llm.embeddings.MiniLMEmbedder`, all-MiniLM-L6-v2
int8 on onnxruntime, no network) and scores each with a one-hidden-layer network whose weights are written to
``benchmarks/injection/results/injection_judge.npz`` by ``train_judge.py`` (not committed). A text is flagged when its
*highest* unit scores at or above the threshold chosen on the generated corpus's dev split, so an injection
appended to a long ordinary lesson is judged on its own sentence, not diluted by the lesson.

The units of a text (:func:`units`): the text and the readings the pure gate decodes from it (base64, hex, URL
escapes, ... two levels), each in the gate's normalized views (look-alike letters, leetspeak, spaced letters
undone), whole and cut into sentences and numbered steps.

Use it *with* the pure gate (flag when either does): ``InjectionJudge()(text)`` gives a reason or None;
:meth:`InjectionJudge.check_many` judges a batch (an import) in one pass through the model. The model loads on
first use (about a second); the object is safe to share between threads. MiniLM is an English model: other
languages are left mostly to the gate's multilingual lexicon (figures in ``benchmarks/injection/bench_judge.py``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ace.playbook.injection_gate import decoded, views

if TYPE_CHECKING:
    from ace.llm.embeddings import Embedder

WEIGHTS = "injection_judge.npz"

# sentence ends, line breaks, and the numbered steps of a checklist ("..., 2) do this")
_CUT = re.compile(r"(?<=[.!?;:。！？；])\s+|\n+|,?\s+(?=\(?\d{1,2}[.)]\s)")
_MIN_WORDS = 5  # a piece of fewer words is not judged on its own (it stays in the whole text): too little to read
MAX_UNITS = 64  # a text is cut into at most this many units (the whole text always among them)
MAX_CHARS = 2000  # a unit longer than this is judged on its first MAX_CHARS characters (the embedder truncates too)


def sentences(text: str) -> list[str]:
    """The pieces of ``text`` judged on their own: its sentences and numbered steps (at least 5 words)."""
    return [p.strip() for p in _CUT.split(text) if len(p.split()) >= _MIN_WORDS]


def readings(text: str, depth: int = 2) -> list[str]:
    """``text`` and what the pure gate decodes from it (``depth`` levels), without repeats."""
    out = [text]
    frontier = [text]
    for _ in range(depth):
        nxt = []
        for t in frontier:
            for hidden in decoded(t):
                if hidden not in out:
                    out.append(hidden)
                    nxt.append(hidden)
        frontier = nxt
    return out


def units(text: str) -> list[str]:
    """What the judge embeds for ``text``: each reading (:func:`readings`) in each normalized view, whole and cut
    into sentences; at most :data:`MAX_UNITS`, the whole text first."""
    out: list[str] = []
    seen: set[str] = set()

    def add(u: str) -> None:
        u = u.strip()[:MAX_CHARS]
        if u and u not in seen and len(out) < MAX_UNITS:
            seen.add(u)
            out.append(u)

    rs = readings(text)
    vs = [v for r in rs for v in views(r)]
    for v in vs:  # whole readings first, so the cap never drops one
        add(v)
    for v in vs:
        pieces = sentences(v)
        if len(pieces) > 1:
            for p in pieces:
                add(p)
    return out


def _data_path() -> Path:
    return Path(__file__).resolve().parent / "results" / WEIGHTS


class Network:
    """The trained scorer: 384-d unit vectors -> one hidden ReLU layer -> a log-odds per row."""

    def __init__(self, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: float, threshold: float) -> None:
        self.w1, self.b1, self.w2, self.b2, self.threshold = w1, b1, w2, b2, threshold

    @classmethod
    def load(cls, path: str | Path | None = None) -> Network:
        with np.load(str(path or _data_path())) as z:
            return cls(
                z["w1"].astype(np.float32),
                z["b1"].astype(np.float32),
                z["w2"].astype(np.float32),
                float(z["b2"]),
                float(z["threshold"]),
            )

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        out: np.ndarray = h @ self.w2 + self.b2
        return out


class InjectionJudge:
    """``judge(text)`` -> a reason when ``text`` reads as a prompt injection to the embedding model, else None.

    ``embedder`` defaults to the offline :class:`~ace.llm.embeddings.MiniLMEmbedder` (the network was trained on its
    vectors: another embedder needs another network); ``weights`` to ``results/injection_judge.npz``;
    ``threshold`` to the one stored with them (a log-odds; higher flags less)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        weights: str | Path | None = None,
        threshold: float | None = None,
    ) -> None:
        self._embedder = embedder
        self._weights = weights
        self._threshold = threshold
        self._net: Network | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Embedder, Network]:
        with self._lock:
            if self._net is None:
                net = Network.load(self._weights)
                if self._threshold is not None:
                    net.threshold = self._threshold
                if self._embedder is None:
                    from ace.llm.embeddings import MiniLMEmbedder

                    self._embedder = MiniLMEmbedder()
                self._net = net
            assert self._embedder is not None
            return self._embedder, self._net

    @property
    def threshold(self) -> float:
        return self._load()[1].threshold

    def scores(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        """For each text, (its highest unit's log-odds, that unit), all texts embedded in one batch."""
        if isinstance(texts, str):
            raise TypeError("scores() takes a sequence of texts; wrap a single text in a list")
        embedder, net = self._load()
        per = [units(t) for t in texts]
        flat: list[str] = []
        index: dict[str, int] = {}
        for us in per:
            for u in us:
                if u not in index:
                    index[u] = len(flat)
                    flat.append(u)
        logits = net.logits(embedder.embed(flat)) if flat else np.zeros(0, dtype=np.float32)
        out: list[tuple[float, str]] = []
        for us in per:
            if not us:
                out.append((float("-inf"), ""))
                continue
            best = max(us, key=lambda u: float(logits[index[u]]))
            out.append((float(logits[index[best]]), best))
        return out

    def check_many(self, texts: Sequence[str]) -> list[str | None]:
        """A reason or None for each text, judged in one batch (for an import: one pass through the model)."""
        limit = self._load()[1].threshold
        return [
            f"text the embedding judge reads as an injection (score {s:.1f} >= {limit:.1f}: {u[:60]!r})"
            if s >= limit
            else None
            for s, u in self.scores(texts)
        ]

    def __call__(self, text: str) -> str | None:
        return self.check_many([text])[0]


__all__ = ["InjectionJudge", "Network", "readings", "sentences", "units"]
