"""Which episodic tier a location names: a PostgreSQL URL is the pgvector tier (:mod:`ace.memory.pgvector`), a
directory or a ``chroma run`` URL the Chroma tier (:mod:`ace.memory.episodic`). Apart from both, so that neither
imports the other."""

from __future__ import annotations

from pathlib import Path

from ace.llm.embeddings import Embedder
from ace.memory.episodic import EpisodicStore, EpisodicTier


def open_episodic(
    location: str | Path, embedder: Embedder, *, namespace: str = "default", create: bool = True
) -> EpisodicTier:
    """The episodic tier at ``location``: a PostgreSQL URL is the pgvector tier (:mod:`ace.memory.pgvector`), a
    directory or a ``chroma run`` URL (``http://…``) the Chroma tier."""
    from ace.memory.pgvector import PgVectorEpisodicStore, is_postgres_url  # psycopg only when asked for

    if is_postgres_url(location):
        return PgVectorEpisodicStore(str(location), embedder, namespace=namespace, create=create)
    return EpisodicStore(location, embedder, namespace=namespace, create=create)


__all__ = ["open_episodic"]
