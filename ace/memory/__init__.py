"""Tiered memory around the playbook: a short-term buffer, an episodic store (ChromaDB, or pgvector in a PostgreSQL
database) and a knowledge graph (networkx over the SQL store), fused with the playbook into one context under one
token budget.

:class:`Memory` is what the loop uses: ``context()`` before the generator answers, ``remember()`` after a step.
Every tier is scoped to one namespace (the same namespace as the playbook), so agents and tenants never read
each other's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ace.errors import ConfigError
from ace.llm import LLM, LLMError
from ace.llm.embeddings import Embedder
from ace.memory.buffer import Entry, ShortTermBuffer
from ace.memory.context import Assembled, assemble
from ace.memory.episodic import Episode, EpisodicStore, EpisodicTier, Hit
from ace.memory.graph import Fact, FactIn, KnowledgeGraph, extract_facts
from ace.memory.pgvector import PgVectorEpisodicStore
from ace.memory.tiers import open_episodic
from ace.playbook import Playbook
from ace.store import PlaybookStore
from ace.tasks import Task


@dataclass
class MemoryConfig:
    short_term: bool = True
    short_term_budget: int = 300  # tokens of recent steps kept (oldest evicted first)
    episodic: bool = True
    episodes_k: int = 3  # similar past episodes retrieved per task
    graph: bool = True
    graph_hops: int = 1
    extract_facts: bool = True  # one extra LLM call per learned step: facts from the reflection
    weights: dict[str, float] | None = None  # per-tier weights of the rank fusion (ace.memory.context)


class Memory:
    def __init__(
        self,
        *,
        namespace: str,
        episodic: EpisodicTier | None = None,
        graph: KnowledgeGraph | None = None,
        config: MemoryConfig | None = None,
    ) -> None:
        self.namespace = namespace
        self.config = config or MemoryConfig()
        self.episodic = episodic if self.config.episodic else None
        self.graph = graph if self.config.graph else None
        for tier in (self.episodic, self.graph):
            if tier is not None and tier.namespace != namespace:
                raise ConfigError(f"a memory tier of namespace {tier.namespace!r} given to namespace {namespace!r}")

    @classmethod
    def local(
        cls,
        store: PlaybookStore,
        directory: str | Path,
        *,
        namespace: str = "default",
        embedder: Embedder | None = None,
        chroma_url: str | None = None,
        config: MemoryConfig | None = None,
    ) -> Memory:
        """All tiers on the embedded defaults: Chroma in ``directory`` (or the server at ``chroma_url``), the graph
        in ``store``'s database, the offline MiniLM embedder. A PostgreSQL URL as ``directory`` puts the episodes in
        that database with pgvector (:mod:`ace.memory.pgvector`): the store's own URL keeps everything in one."""
        if embedder is None:
            from ace.llm.embeddings import MiniLMEmbedder

            embedder = MiniLMEmbedder()
        cfg = config or MemoryConfig()
        episodic = open_episodic(chroma_url or directory, embedder, namespace=namespace) if cfg.episodic else None
        graph = KnowledgeGraph(store, namespace=namespace) if cfg.graph else None
        return cls(namespace=namespace, episodic=episodic, graph=graph, config=cfg)

    def buffer(self, data: list[dict[str, object]] | None = None) -> ShortTermBuffer | None:
        if not self.config.short_term:
            return None
        return ShortTermBuffer.from_list(self.config.short_term_budget, data)

    def context(
        self, task: Task, playbook: Playbook, *, buffer: ShortTermBuffer | None = None, budget: int | None = 2000
    ) -> Assembled:
        """The playbook fused with what the other tiers know about ``task``."""
        facts: list[Fact] = []
        if self.graph is not None:
            entities = self.graph.mentioned(task.input)
            facts = self.graph.neighbourhood(entities, hops=self.config.graph_hops) if entities else []
        hits: list[Hit] = []
        if self.episodic is not None:
            hits = self.episodic.search(task.input, self.config.episodes_k)
        recent = buffer.newest_first() if buffer is not None else []
        return assemble(playbook, facts=facts, episodes=hits, recent=recent, budget=budget, weights=self.config.weights)

    def remember(
        self,
        episode: Episode,
        *,
        step: int,
        llm: LLM | None = None,
        lessons: str = "",
        buffer: ShortTermBuffer | None = None,
    ) -> list[str]:
        """Store a finished step in every tier; returns problems met (a failed fact extraction does not undo the
        episode, and nothing here touches the playbook)."""
        problems: list[str] = []
        if buffer is not None:
            buffer.add(step, "task", f"{episode.task[:200]} -> {episode.outcome}: {episode.summary}")
        if self.episodic is not None:
            self.episodic.add([episode])
        if self.graph is not None and llm is not None and lessons and self.config.extract_facts:
            try:
                facts = extract_facts(llm, lessons)
                self.graph.add_extracted(
                    facts, valid_from=step, episode=episode.id, playbook=episode.playbook, version=episode.version
                )
            except (LLMError, ValueError) as e:
                problems.append(f"fact extraction: {e}")
        return problems


__all__ = [
    "Assembled",
    "Entry",
    "Episode",
    "EpisodicStore",
    "EpisodicTier",
    "Fact",
    "FactIn",
    "Hit",
    "KnowledgeGraph",
    "Memory",
    "MemoryConfig",
    "PgVectorEpisodicStore",
    "ShortTermBuffer",
    "assemble",
    "extract_facts",
    "open_episodic",
]
