"""The knowledge-graph tier: entities and typed relations on networkx, persisted through the SQLAlchemy store.

A :class:`Fact` is ``subject --relation--> object`` with provenance (episode, playbook, version) and validity
(``valid_from`` .. ``valid_to``, ordinal steps). Contradictions supersede instead of piling up:

- a fact whose relation is **single-valued** (``single=True``: a subject has one value of it at a time, e.g.
  ``reporting_currency``) and whose object differs from the current one ends the current fact
  (``valid_to`` = the new fact's ``valid_from``, ``superseded_by`` = its id); the old fact stays as history;
- the same fact again (same subject, relation, object) is not duplicated;
- a fact that arrives late (its ``valid_from`` is before the current fact's) is stored as already superseded.

Entity names match case- and whitespace-insensitively. Rows live in ``ace_kg_facts`` / ``ace_kg_bullet_links`` of
the store's database (SQLite or PostgreSQL), scoped by namespace; the networkx graph is built from them on the
first query (lazily) and kept up to date by this object's writes (:meth:`KnowledgeGraph.refresh` re-reads what other
processes wrote). Facts are extracted from reflections and bullets by an LLM with a typed schema
(:func:`extract_facts`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, Field
from sqlalchemy import insert, select, update

from ace.errors import ConfigError, InvalidInput
from ace.llm import LLM, Message
from ace.memory import schema as t
from ace.store import PlaybookStore

EXTRACTOR_PROMPT = Path(__file__).parent / "prompts" / "extractor.txt"


@cache
def _extractor_prompt() -> str:
    return EXTRACTOR_PROMPT.read_text(encoding="utf-8").strip()


def entity_key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Fact:
    id: int
    subject: str
    relation: str
    object: str
    single: bool
    valid_from: int
    valid_to: int | None = None
    superseded_by: int | None = None
    episode: str | None = None
    playbook: str | None = None
    version: int | None = None

    @property
    def current(self) -> bool:
        return self.valid_to is None

    def text(self) -> str:
        return f"{self.subject} {self.relation.replace('_', ' ')} {self.object}"


class FactIn(BaseModel):
    """One extracted fact (the LLM's typed output)."""

    subject: str = Field(min_length=1, max_length=256)
    relation: str = Field(min_length=1, max_length=128)
    object: str = Field(min_length=1, max_length=1000)
    single: bool = Field(default=True, description="true if the subject has only one value of this relation at a time")


class Extraction(BaseModel):
    facts: list[FactIn] = Field(max_length=20)


def extract_facts(llm: LLM, text: str) -> list[FactIn]:
    """Entities and relations stated in ``text`` (a reflection, a bullet), by the LLM with a typed schema."""
    messages = [Message("system", _extractor_prompt(), cache=True), Message("user", f"TEXT:\n{text}")]
    out: Extraction = llm.call(messages, output=Extraction, role="extractor").parsed  # type: ignore[assignment]
    return out.facts


def _relation(name: str) -> str:
    rel = re.sub(r"[^a-z0-9]+", "_", name.strip().casefold()).strip("_")
    if not rel:
        raise InvalidInput(f"relation {name!r} has no letters or digits")
    return rel


class KnowledgeGraph:
    def __init__(self, store: PlaybookStore, *, namespace: str = "default") -> None:
        if not namespace:
            raise ConfigError("namespace must not be empty")
        self.store = store
        self.namespace = namespace
        t.SCHEMA.ensure(store.engine)
        self._g: nx.MultiDiGraph | None = None
        self._facts: dict[int, Fact] = {}
        self._view: nx.Graph | None = None  # undirected current facts, for paths; rebuilt after a write

    # -- writing ---------------------------------------------------------------------------------------------
    def add(
        self,
        subject: str,
        relation: str,
        obj: str,
        *,
        valid_from: int,
        single: bool = True,
        episode: str | None = None,
        playbook: str | None = None,
        version: int | None = None,
    ) -> Fact:
        """Record a fact; supersedes the current contradicting one (see the module doc). Returns the fact stored
        (or the existing identical one)."""
        subject, obj = " ".join(subject.split()), " ".join(obj.split())
        if not subject or not obj:
            raise InvalidInput("a fact needs a non-empty subject and object")
        rel, skey, okey = _relation(relation), entity_key(subject), entity_key(obj)
        f = t.kg_facts.c
        changed: list[Fact] = []
        with self.store.transaction(write=True) as conn:
            rows = [
                self._fact(r)
                for r in conn.execute(
                    select(t.kg_facts).where(
                        f.namespace == self.namespace, f.subject_key == skey, f.relation == rel, f.valid_to.is_(None)
                    )
                )
            ]
            same = [r for r in rows if entity_key(r.object) == okey]
            if same:
                return same[0]
            rivals = [r for r in rows if single or r.single]
            later = [r for r in rivals if r.valid_from > valid_from]
            valid_to = min((r.valid_from for r in later), default=None)
            superseded_by = min(later, key=lambda r: r.valid_from).id if later else None
            new_id: int = conn.execute(
                insert(t.kg_facts).values(
                    namespace=self.namespace,
                    subject=subject,
                    subject_key=skey,
                    relation=rel,
                    object=obj,
                    object_key=okey,
                    single=single,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    superseded_by=superseded_by,
                    episode=episode,
                    playbook=playbook,
                    version=version,
                    created_at=datetime.now(UTC),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            for old in rivals:
                if old.valid_from <= valid_from:
                    conn.execute(
                        update(t.kg_facts).where(f.id == old.id).values(valid_to=valid_from, superseded_by=new_id)
                    )
                    changed.append(Fact(**{**old.__dict__, "valid_to": valid_from, "superseded_by": new_id}))
        new = Fact(new_id, subject, rel, obj, single, valid_from, valid_to, superseded_by, episode, playbook, version)
        if self._g is not None:
            for fact in [*changed, new]:
                self._put(fact)
        return new

    def add_extracted(self, facts: Iterable[FactIn], *, valid_from: int, **provenance: Any) -> list[Fact]:
        return [
            self.add(x.subject, x.relation, x.object, single=x.single, valid_from=valid_from, **provenance)
            for x in facts
        ]

    def link_bullet(self, entity: str, playbook: str, bullet_id: str) -> None:
        """Record that ``bullet_id`` of ``playbook`` is about ``entity``."""
        key = entity_key(entity)
        with self.store.transaction(write=True) as conn:
            c = t.kg_bullet_links.c
            exists = conn.execute(
                select(c.bullet_id).where(
                    c.namespace == self.namespace, c.entity_key == key, c.playbook == playbook, c.bullet_id == bullet_id
                )
            ).first()
            if not exists:
                conn.execute(
                    insert(t.kg_bullet_links).values(
                        namespace=self.namespace, entity_key=key, playbook=playbook, bullet_id=bullet_id
                    )
                )

    # -- the in-memory graph ------------------------------------------------------------------------------------
    @staticmethod
    def _fact(r: Any) -> Fact:
        return Fact(
            r.id, r.subject, r.relation, r.object, bool(r.single), r.valid_from, r.valid_to, r.superseded_by,
            r.episode, r.playbook, r.version,
        )  # fmt: skip

    def _put(self, fact: Fact) -> None:
        g = self._g
        assert g is not None
        for name in (fact.subject, fact.object):
            if entity_key(name) not in g:
                g.add_node(entity_key(name), name=name)
        g.add_edge(entity_key(fact.subject), entity_key(fact.object), key=fact.id, fact=fact)
        self._facts[fact.id] = fact
        self._view = None

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The namespace's facts as a MultiDiGraph (nodes: entity keys; one edge per fact), loaded on first use."""
        if self._g is None:
            self.refresh()
        assert self._g is not None
        return self._g

    def refresh(self) -> None:
        """(Re)load every fact of the namespace from the database."""
        self._g = nx.MultiDiGraph()
        self._facts = {}
        with self.store.transaction() as conn:
            for r in conn.execute(select(t.kg_facts).where(t.kg_facts.c.namespace == self.namespace)):
                self._put(self._fact(r))

    # -- queries --------------------------------------------------------------------------------------------------
    def facts(self, *, current_only: bool = True) -> list[Fact]:
        self.graph  # noqa: B018 - load
        return [f for f in self._facts.values() if f.current or not current_only]

    def query(self, subject: str | None = None, relation: str | None = None, *, history: bool = False) -> list[Fact]:
        """What ``ace memory facts``, the service and the MCP server list: with a subject and a relation, the facts
        that hold now (``history``: every one ever recorded); otherwise the current facts (``history``: all),
        narrowed to the subject or the relation given (case-insensitive)."""
        if subject and relation:
            return self.history(subject, relation) if history else self.current(subject, relation)
        found = self.facts(current_only=not history)
        if subject:
            found = [f for f in found if f.subject.casefold() == subject.casefold()]
        if relation:
            found = [f for f in found if f.relation.casefold() == relation.casefold()]
        return found

    def current(self, subject: str, relation: str) -> list[Fact]:
        """The facts that hold now for ``subject``/``relation`` (one for a single-valued relation)."""
        key, rel = entity_key(subject), _relation(relation)
        if key not in self.graph:
            return []
        return sorted(
            (
                d["fact"]
                for _, _, d in self.graph.out_edges(key, data=True)
                if d["fact"].relation == rel and d["fact"].current
            ),
            key=lambda f: f.id,
        )

    def history(self, subject: str, relation: str) -> list[Fact]:
        """Every fact ever recorded for ``subject``/``relation``, oldest validity first (superseded ones included)."""
        key, rel = entity_key(subject), _relation(relation)
        if key not in self.graph:
            return []
        found = [d["fact"] for _, _, d in self.graph.out_edges(key, data=True) if d["fact"].relation == rel]
        return sorted(found, key=lambda f: (f.valid_from, f.id))

    def neighbourhood(self, entities: Sequence[str], *, hops: int = 1, current_only: bool = True) -> list[Fact]:
        """Facts on edges within ``hops`` of the entities (either direction), nearest first."""
        g = self.graph
        seeds = [entity_key(e) for e in entities if entity_key(e) in g]
        dist: dict[str, int] = {s: 0 for s in seeds}
        frontier = list(seeds)
        for d in range(1, hops + 1):
            nxt = []
            for node in frontier:
                for other in (*g.successors(node), *g.predecessors(node)):
                    if other not in dist:
                        dist[other] = d
                        nxt.append(other)
            frontier = nxt
        out: dict[int, tuple[int, Fact]] = {}
        for node, d in dist.items():
            if d >= hops:
                continue
            for u, v, data in (*g.out_edges(node, data=True), *g.in_edges(node, data=True)):
                fact: Fact = data["fact"]
                if current_only and not fact.current:
                    continue
                near = min(dist.get(u, hops), dist.get(v, hops))
                if fact.id not in out or near < out[fact.id][0]:
                    out[fact.id] = (near, fact)
        return [f for _, f in sorted(out.values(), key=lambda x: (x[0], -x[1].valid_from, x[1].id))]

    def paths(self, a: str, b: str, *, max_hops: int = 3, limit: int = 5) -> list[list[Fact]]:
        """Up to ``limit`` shortest chains of current facts linking ``a`` and ``b`` (edges in either direction)."""
        g = self.graph
        ka, kb = entity_key(a), entity_key(b)
        if ka not in g or kb not in g:
            return []
        if self._view is None:
            self._view = nx.Graph()
            for u, v, data in g.edges(data=True):
                if data["fact"].current and not self._view.has_edge(u, v):
                    self._view.add_edge(u, v, fact=data["fact"])
        view = self._view
        if ka not in view or kb not in view:
            return []
        out: list[list[Fact]] = []
        try:
            for nodes in nx.shortest_simple_paths(view, ka, kb):
                if len(nodes) - 1 > max_hops or len(out) >= limit:
                    break
                out.append([view.edges[u, v]["fact"] for u, v in itertools.pairwise(nodes)])
        except nx.NetworkXNoPath:
            return []
        return out

    def bullets(self, entity: str, playbook: str | None = None) -> list[tuple[str, str]]:
        """``(playbook, bullet id)`` pairs linked to ``entity``."""
        c = t.kg_bullet_links.c
        q = select(c.playbook, c.bullet_id).where(c.namespace == self.namespace, c.entity_key == entity_key(entity))
        if playbook:
            q = q.where(c.playbook == playbook)
        with self.store.transaction() as conn:
            return [(r.playbook, r.bullet_id) for r in conn.execute(q.order_by(c.playbook, c.bullet_id))]

    def mentioned(self, text: str, *, max_words: int = 4) -> list[str]:
        """Known entities named in ``text`` (whole words, case-insensitive), in order of first mention."""
        g = self.graph
        words = re.findall(r"[\w$%.&'-]+", text.casefold())
        found: dict[str, None] = {}
        for i in range(len(words)):
            for n in range(max_words, 0, -1):
                cand = " ".join(words[i : i + n]).strip(".'")
                if cand in g:
                    found.setdefault(cand, None)
                    break
        return list(found)
