"""Memory-tier benchmark: episodic retrieval latency and recall@5, knowledge-graph query latency.

    python benchmarks/memory/bench_memory.py --episodes 10000 100000 --edges 100000 \
        [--backends chroma pgvector] [--pg-url postgresql+psycopg://...]

Episodic, on each backend through the tier's own class: ChromaDB (``EpisodicStore``, a persistent directory, cosine
HNSW, one collection per namespace) and PostgreSQL with pgvector (``PgVectorEpisodicStore``, one table per namespace
with a cosine HNSW index, in a fresh database made on the server at ``--pg-url``, default ``$ACE_TEST_PGVECTOR_URL``,
which ``scripts/pgvector-up`` starts; the database is dropped afterwards). N background episodes with random unit
vectors (384-d, the MiniLM width) plus, for each of Q queries, 5 planted relevant episodes at cosine ~0.75-0.85 to
the query and 20 hard distractors at ~0.45-0.55. recall@5 is the share of the 5 planted episodes in the top 5.
Vectors are synthetic so that the planted truth is known exactly: this measures the store's retrieval (approximate
HNSW search plus filtering), not the embedder. Insert goes through the tier's ``add`` in batches of 5,000 (the
index is kept up to date as rows come in, as in use); query latency is one ``search(vector, 5)`` call, end to end.

Graph: E facts among E/5 entities (preferential attachment, so some entities are hubs), bulk-inserted into
``ace_kg_facts`` of a SQLite store, then loaded lazily by ``KnowledgeGraph`` (the load is timed) and queried:
1- and 2-hop neighbourhoods of random entities, and paths between random pairs. ``add()`` (one fact, one
transaction with the supersede check) is timed on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from ace.memory import Episode, EpisodicStore, KnowledgeGraph, PgVectorEpisodicStore
from ace.memory import schema as t
from ace.store import PlaybookStore

DIM = 384


class _Precomputed:
    """Vectors are passed in; nothing is embedded."""

    name = "precomputed"
    dim = DIM

    def embed(self, texts: object) -> np.ndarray:
        raise RuntimeError("the benchmark passes vectors")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _near(rng: np.random.Generator, q: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Unit vectors at the given cosines to unit vector q."""
    noise = rng.standard_normal((len(cos), DIM))
    noise -= np.outer(noise @ q, q)
    noise = _unit(noise)
    return cos[:, None] * q[None, :] + np.sqrt(1 - cos[:, None] ** 2) * noise


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


@contextmanager
def _fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on the server at ``admin_url`` (its URL), dropped afterwards."""
    name = f"ace_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_episodic(
    n: int,
    queries: int,
    root: Path,
    backend: str = "chroma",
    pg_url: str | None = None,
    *,
    ef_search: tuple[int, ...] = (),
    index_after: bool = False,
) -> None:
    if backend == "pgvector":
        if not pg_url:
            raise SystemExit("--backends pgvector needs --pg-url or $ACE_TEST_PGVECTOR_URL (scripts/pgvector-up)")
        with _fresh_database(pg_url) as url:
            store = PgVectorEpisodicStore(url, _Precomputed(), namespace="bench")
            _bench_episodic(
                store, n, queries, backend, ef_search=ef_search or (store.ef_search,), index_after=index_after
            )
            store.close()
    else:
        _bench_episodic(EpisodicStore(root / f"chroma-{n}", _Precomputed(), namespace="bench"), n, queries, backend)


def _bench_episodic(
    store: Any, n: int, queries: int, backend: str, *, ef_search: tuple[int, ...] = (0,), index_after: bool = False
) -> None:
    """Load n episodes through the tier's ``add``, then time ``search(vector, 5)`` per query (once per ef_search
    value on pgvector; ``index_after``: pgvector loads without its HNSW index and builds it after, as a bulk import
    would)."""
    rng = np.random.default_rng(n)
    qs = _unit(rng.standard_normal((queries, DIM)))
    planted: dict[int, list[str]] = {}
    vecs, eps = [], []
    for qi, q in enumerate(qs):
        rel = _near(rng, q, rng.uniform(0.75, 0.85, 5))
        dis = _near(rng, q, rng.uniform(0.45, 0.55, 20))
        planted[qi] = [f"q{qi}-rel{j}" for j in range(5)]
        vecs += [*rel, *dis]
        eps += [Episode(id=i, task=i, summary="planted") for i in planted[qi]]
        eps += [Episode(id=f"q{qi}-dis{j}", task="distractor", summary="distractor") for j in range(20)]
    background = n - len(eps)
    if index_after:
        with store.engine.begin() as conn:
            conn.execute(text(f'DROP INDEX "{store.table}_hnsw"'))
    started = time.perf_counter()
    batch = 5000
    for s in range(0, background, batch):
        m = min(batch, background - s)
        store.add(
            [Episode(id=f"bg{s + i}", task=f"background {s + i}", summary="", created_at=0.0) for i in range(m)],
            _unit(rng.standard_normal((m, DIM))),
        )
    store.add(eps, np.array(vecs))
    load_s = time.perf_counter() - started
    how = ""
    if index_after:
        t0 = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))  # the graph in memory: a faster build
            conn.execute(
                text(f'CREATE INDEX "{store.table}_hnsw" ON "{store.table}" USING hnsw (embedding vector_cosine_ops)')
            )
        how = f" without the index, then the index built in {time.perf_counter() - t0:.1f} s"
    assert store.count() == n
    for ef in ef_search:
        if ef:
            store.ef_search = ef
        lat, recall = [], []
        for qi, q in enumerate(qs):
            t0 = time.perf_counter()
            hits = store.search(q, 5)
            lat.append((time.perf_counter() - t0) * 1000)
            recall.append(len({h.episode.id for h in hits} & set(planted[qi])) / 5)
        print(
            f"episodic {backend:<8} n={n:>7,}: insert {load_s:6.1f} s ({n / load_s:,.0f}/s){how} | "
            f"{f'ef_search {ef} | ' if ef else ''}query p50 {pct(lat, 50):.2f} ms p95 {pct(lat, 95):.2f} ms "
            f"p99 {pct(lat, 99):.2f} ms | recall@5 {statistics.mean(recall):.3f} over {queries} queries",
            flush=True,
        )


def bench_graph(edges: int, root: Path) -> None:
    rng = np.random.default_rng(edges)
    store = PlaybookStore(f"sqlite:///{root / 'kg.db'}")
    entities = max(10, edges // 5)
    # preferential attachment: each new edge picks an endpoint among earlier endpoints half the time
    ends: list[int] = []
    rows = []
    now = datetime.now(UTC)
    for i in range(edges):
        a = int(rng.integers(entities)) if not ends or rng.random() < 0.5 else ends[int(rng.integers(len(ends)))]
        b = int(rng.integers(entities))
        ends += [a, b]
        rows.append(
            dict(namespace="bench", subject=f"e{a}", subject_key=f"e{a}", relation=f"r{i % 20}", object=f"e{b}",
                 object_key=f"e{b}", single=False, valid_from=i, created_at=now)
        )  # fmt: skip
    kg = KnowledgeGraph(store, namespace="bench")  # creates its tables; the graph itself loads lazily below
    with store.transaction(write=True) as conn:
        for s in range(0, len(rows), 10000):
            conn.execute(insert(t.kg_facts), rows[s : s + 10000])
    t0 = time.perf_counter()
    g = kg.graph
    load = time.perf_counter() - t0
    print(f"graph {edges:,} facts, {g.number_of_nodes():,} entities: lazy load {load:.2f} s")
    for hops in (1, 2):
        lat, sizes = [], []
        for _ in range(300):
            e = f"e{int(rng.integers(entities))}"
            t0 = time.perf_counter()
            sizes.append(len(kg.neighbourhood([e], hops=hops)))
            lat.append((time.perf_counter() - t0) * 1000)
        print(
            f"  neighbourhood hops={hops}: p50 {pct(lat, 50):.2f} ms p95 {pct(lat, 95):.2f} ms "
            f"(median {statistics.median(sizes):.0f} facts returned)"
        )
    lat = []
    for _ in range(20):
        a, b = (f"e{int(x)}" for x in rng.integers(entities, size=2))
        t0 = time.perf_counter()
        kg.paths(a, b, max_hops=3, limit=3)
        lat.append((time.perf_counter() - t0) * 1000)
    print(f"  paths (<=3 hops, 3 shortest): p50 {pct(lat, 50):.1f} ms p95 {pct(lat, 95):.1f} ms")
    lat = []
    for i in range(500):
        t0 = time.perf_counter()
        kg.add(f"new{i % 50}", "status", f"v{i}", valid_from=edges + i)  # supersedes the previous status
        lat.append((time.perf_counter() - t0) * 1000)
    print(f"  add (with supersede check): p50 {pct(lat, 50):.2f} ms p95 {pct(lat, 95):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--edges", type=int, default=100_000)
    ap.add_argument("--backends", nargs="+", choices=["chroma", "pgvector"], default=["chroma"])
    ap.add_argument("--pg-url", default=os.environ.get("ACE_TEST_PGVECTOR_URL"), help="a server with pgvector")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[], help="pgvector: query at each hnsw.ef_search")
    ap.add_argument("--index-after", action="store_true", help="pgvector: load without the index, build it after")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.episodes:
            for backend in args.backends:
                bench_episodic(n, args.queries, Path(tmp), backend, args.pg_url, ef_search=tuple(args.ef_search),
                               index_after=args.index_after)  # fmt: skip
        if args.edges:
            bench_graph(args.edges, Path(tmp))


if __name__ == "__main__":
    main()
