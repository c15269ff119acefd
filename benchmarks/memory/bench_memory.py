"""Memory-tier benchmark: episodic retrieval latency and recall@5, knowledge-graph query latency.

    python benchmarks/memory/bench_memory.py --episodes 10000 100000 --edges 100000

Episodic (ChromaDB, persistent directory, cosine HNSW, through ``EpisodicStore`` with its namespace filter):
N background episodes with random unit vectors (384-d, the MiniLM width) plus, for each of Q queries, 5 planted
relevant episodes at cosine ~0.75-0.85 to the query and 20 hard distractors at ~0.45-0.55. recall@5 is the share
of the 5 planted episodes in the top 5. Vectors are synthetic so that the planted truth is known exactly: this
measures the store's retrieval (approximate HNSW search plus filtering), not the embedder.

Graph: E facts among E/5 entities (preferential attachment, so some entities are hubs), bulk-inserted into
``ace_kg_facts`` of a SQLite store, then loaded lazily by ``KnowledgeGraph`` (the load is timed) and queried:
1- and 2-hop neighbourhoods of random entities, and paths between random pairs. ``add()`` (one fact, one
transaction with the supersede check) is timed on top.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from ace.memory import Episode, EpisodicStore, KnowledgeGraph
from ace.memory import schema as t
from ace.store import PlaybookStore

DIM = 384


class _Precomputed:
    """Vectors are passed in; nothing is embedded."""

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


def bench_episodic(n: int, queries: int, root: Path) -> None:
    rng = np.random.default_rng(n)
    store = EpisodicStore(root / f"chroma-{n}", _Precomputed(), namespace="bench")  # type: ignore[arg-type]
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
    assert store.count() == n
    lat, recall = [], []
    for qi, q in enumerate(qs):
        t0 = time.perf_counter()
        hits = store.search(q, 5)
        lat.append((time.perf_counter() - t0) * 1000)
        recall.append(len({h.episode.id for h in hits} & set(planted[qi])) / 5)
    print(
        f"episodic n={n:>7,}: insert {load_s:6.1f} s ({n / load_s:,.0f}/s) | query p50 {pct(lat, 50):.2f} ms "
        f"p95 {pct(lat, 95):.2f} ms | recall@5 {statistics.mean(recall):.3f} over {queries} queries"
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.episodes:
            bench_episodic(n, args.queries, Path(tmp))
        if args.edges:
            bench_graph(args.edges, Path(tmp))


if __name__ == "__main__":
    main()
