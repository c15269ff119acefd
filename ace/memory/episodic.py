"""The episodic tier: finished episodes in ChromaDB, retrieved by similarity with metadata filters.

An :class:`Episode` (task, trajectory summary, outcome, reflection, playbook version) is embedded with the
project's embedder (the offline MiniLM by default) and stored with its metadata. Vectors are computed here and
passed to Chroma, so no collection ever uses Chroma's default embedding function (which downloads a model).

Storage: a persistent local directory by default (one process), or a ``chroma run`` server when a URL is given
(``http://127.0.0.1:8000``): several processes must share a server, since a persistent directory is not safe across
processes. Each namespace has its own collection, so no read crosses namespaces. Writes are upserts keyed by
episode id, so a step repeated after a crash does not duplicate its episode.

Opened with ``create=False`` (a reader: ``ace memory episodes``), a store never writes: a directory that holds no
Chroma database is :class:`NoEpisodicMemory` (nothing is made there), and a namespace without a collection reads
as empty (none is made).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import numpy as np

from ace.errors import ConfigError, InvalidInput
from ace.llm.embeddings import Embedder

Outcome = Literal["success", "failure", "unknown"]
COLLECTION = "ace-episodes"
CHROMA_FILE = "chroma.sqlite3"  # what a Chroma directory holds once a client has opened it


class NoEpisodicMemory(ConfigError):
    """A reader was pointed at a directory that holds no episodic memory."""

    def __init__(self, location: str) -> None:
        super().__init__(f"no episodic memory at {location} (ace demo --memory or ace serve --memory writes one)")


@dataclass(frozen=True)
class Episode:
    id: str
    task: str
    summary: str
    outcome: Outcome = "unknown"
    reflection: str = ""
    playbook: str = ""
    version: int | None = None
    task_id: str = ""
    run_id: str = ""
    created_at: float = field(default_factory=time.time)

    def document(self) -> str:
        """What is embedded and shown: the task, what was done, and what was learned."""
        parts = [f"Task: {self.task}", f"Outcome: {self.outcome}. {self.summary}"]
        if self.reflection:
            parts.append(f"Lesson: {self.reflection}")
        return "\n".join(parts)


TEXT_FIELDS = ("task", "summary", "outcome", "reflection", "playbook", "task_id", "run_id")


def check_episode(episode: Episode, *, nul: bool = True) -> None:
    """Refuse an episode a tier cannot store as it is, in one clear error before anything is written: an empty id,
    text that is not valid Unicode (a lone surrogate, which no UTF-8 store holds), and, unless ``nul``, a NUL
    character (PostgreSQL's text cannot hold one; Chroma can)."""
    if not episode.id:
        raise InvalidInput("an episode's id must not be empty")
    for name in ("id", *TEXT_FIELDS):
        value = getattr(episode, name)
        if not nul and "\x00" in value:
            raise InvalidInput(
                f"episode {episode.id[:80]!r}: its {name} holds a NUL character, which PostgreSQL text cannot store"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(
                f"episode {episode.id[:80]!r}: its {name} is not valid Unicode text (a lone surrogate)"
            ) from None


@dataclass(frozen=True)
class Hit:
    episode: Episode
    similarity: float  # cosine similarity, 1 = identical


class EpisodicTier(Protocol):
    """What the episodic tier offers, on Chroma (:class:`EpisodicStore`) or PostgreSQL
    (:class:`ace.memory.pgvector.PgVectorEpisodicStore`)."""

    namespace: str

    def add(self, episodes: Sequence[Episode], vectors: np.ndarray | None = None) -> None: ...

    def search(
        self,
        query: str | np.ndarray,
        k: int = 5,
        *,
        outcome: Outcome | None = None,
        since: float | None = None,
        until: float | None = None,
        playbook: str | None = None,
    ) -> list[Hit]: ...

    def get(self, episode_id: str) -> Episode | None: ...

    def count(self) -> int: ...

    def recent(self, limit: int = 10) -> list[Episode]: ...


def _client(location: str | Path, *, create: bool = True) -> Any:
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    loc = str(location)
    if loc.startswith(("http://", "https://")):
        u = urlparse(loc)
        return chromadb.HttpClient(
            host=u.hostname or "127.0.0.1", port=u.port or 8000, ssl=u.scheme == "https", settings=settings
        )
    if create:
        Path(loc).mkdir(parents=True, exist_ok=True)
    elif not (Path(loc) / CHROMA_FILE).is_file():  # a reader makes no directory, and no database in one
        raise NoEpisodicMemory(loc)
    return chromadb.PersistentClient(path=loc, settings=settings)


def collection_name(prefix: str, namespace: str) -> str:
    """A valid Chroma collection name for a namespace: readable slug plus a hash, so distinct namespaces never
    share a collection (Chroma allows 3-512 characters of [a-zA-Z0-9._-], alphanumeric at both ends)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", namespace)[:100]
    return f"{prefix}-{slug}-{hashlib.sha256(namespace.encode()).hexdigest()[:10]}"


class EpisodicStore:
    """Episodes of one namespace in its own Chroma collection (local directory or server URL); with
    ``create=False``, read only: nothing is made (see the module doc)."""

    def __init__(
        self,
        location: str | Path,
        embedder: Embedder,
        *,
        namespace: str = "default",
        collection: str = COLLECTION,
        create: bool = True,
    ) -> None:
        if not namespace:
            raise ConfigError("namespace must not be empty")
        self.namespace = namespace
        self.embedder = embedder
        self.client = _client(location, create=create)
        # One collection per namespace: isolation needs no query filter (a metadata filter on every query would
        # also make Chroma scan instead of using its index: ~30 ms instead of ~1.5 ms at 10k episodes).
        name = collection_name(collection, namespace)
        self.collection: Any = None  # None: a reader's namespace that has no collection (no episodes)
        if create:
            self.collection = self.client.get_or_create_collection(
                name, embedding_function=None, metadata={"hnsw:space": "cosine", "ace_namespace": namespace}
            )
        else:
            from chromadb.errors import NotFoundError

            with contextlib.suppress(NotFoundError):
                self.collection = self.client.get_collection(name, embedding_function=None)

    def add(self, episodes: Sequence[Episode], vectors: np.ndarray | None = None) -> None:
        """Store (upsert) episodes; ``vectors`` may be given (precomputed), else they are embedded here."""
        if not episodes:
            return
        if self.collection is None:
            raise ConfigError("this episodic store was opened read-only (create=False)")
        for e in episodes:
            check_episode(e)
        docs = [e.document() for e in episodes]
        vecs = self.embedder.embed(docs) if vectors is None else vectors
        self.collection.upsert(
            ids=[e.id for e in episodes],
            embeddings=np.asarray(vecs, dtype=np.float32).tolist(),
            documents=docs,
            metadatas=[self._metadata(e) for e in episodes],
        )

    def _metadata(self, e: Episode) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "namespace": self.namespace,
            "episode_id": e.id,
            "task": e.task[:4000],
            "summary": e.summary[:4000],
            "outcome": e.outcome,
            "reflection": e.reflection[:4000],
            "playbook": e.playbook,
            "task_id": e.task_id,
            "run_id": e.run_id,
            "created_at": float(e.created_at),
        }
        if e.version is not None:
            meta["version"] = int(e.version)
        return meta

    def search(
        self,
        query: str | np.ndarray,
        k: int = 5,
        *,
        outcome: Outcome | None = None,
        since: float | None = None,
        until: float | None = None,
        playbook: str | None = None,
    ) -> list[Hit]:
        """The ``k`` episodes most similar to ``query`` (text or a vector), within the filters."""
        conds: list[dict[str, Any]] = []
        if outcome:
            conds.append({"outcome": outcome})
        if playbook:
            conds.append({"playbook": playbook})
        if since is not None:
            conds.append({"created_at": {"$gte": float(since)}})
        if until is not None:
            conds.append({"created_at": {"$lte": float(until)}})
        where = None if not conds else conds[0] if len(conds) == 1 else {"$and": conds}
        if self.collection is None:
            return []
        vec = self.embedder.embed([query])[0] if isinstance(query, str) else query
        res = self.collection.query(
            query_embeddings=[np.asarray(vec, dtype=np.float32).tolist()],
            n_results=k,
            where=where,
            include=["metadatas", "distances"],
        )
        return [
            Hit(_episode(meta), 1.0 - float(dist))
            for meta, dist in zip(res["metadatas"][0], res["distances"][0], strict=True)
        ]

    def get(self, episode_id: str) -> Episode | None:
        if self.collection is None:
            return None
        res = self.collection.get(ids=[episode_id], include=["metadatas"])
        return _episode(res["metadatas"][0]) if res["ids"] else None

    def count(self) -> int:
        if self.collection is None:
            return 0
        return int(self.collection.count())

    def recent(self, limit: int = 10) -> list[Episode]:
        """The ``limit`` most recent episodes, newest first."""
        if self.collection is None:
            return []
        res = self.collection.get(include=["metadatas"])
        episodes = [_episode(m) for m in res["metadatas"] or []]
        return sorted(episodes, key=lambda e: e.created_at, reverse=True)[:limit]


def _episode(meta: dict[str, Any]) -> Episode:
    return Episode(
        id=str(meta["episode_id"]),
        task=str(meta.get("task", "")),
        summary=str(meta.get("summary", "")),
        outcome=meta.get("outcome", "unknown"),
        reflection=str(meta.get("reflection", "")),
        playbook=str(meta.get("playbook", "")),
        version=int(meta["version"]) if meta.get("version") is not None else None,
        task_id=str(meta.get("task_id", "")),
        run_id=str(meta.get("run_id", "")),
        created_at=float(meta.get("created_at", 0.0)),
    )
