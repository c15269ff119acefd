#!/usr/bin/env python
"""Commit latency and throughput of the store with several writers, and of a commit from a cold store.

- ``--processes P``: P processes, each with its own ``PlaybookStore``, commit one-op deltas (a TAG of a random
  bullet, no ``expected_version``: each applies on whatever the head is) to one playbook of ``--n`` bullets for
  ``--seconds``; prints commits/s in all and the latency percentiles of a commit. Each writer's cached head is
  stale whenever another one committed: it catches up from the deltas in between.
- ``--cold K``: K commits in one process, each from a new ``PlaybookStore`` object on the same engine (nothing
  cached: the commit reads the rows of the materialized head its delta names); prints the median and p99, per
  operation with ``--ops mixed`` (TAG, UPDATE, ADD, REMOVE in turn; ADD and REMOVE rewrite a section's order).
- ``--warm K``: K consecutive commits from one store that holds the head: every 50th is due a snapshot, written
  after the commit by a background thread (``--inline-snapshots``: inside the commit, as before); prints the
  median, p99 and max (the snapshot spike).

    python benchmarks/perf/bench_writers.py --db postgresql+psycopg://... --n 10000 --processes 8 --seconds 20
    python benchmarks/perf/bench_writers.py --n 10000 --cold 200

The default database is a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_playbook import content

from ace.playbook import Delta, Playbook, apply
from ace.store import PlaybookStore, make_engine

NAME, NS = "writers", "bench"


def _writer(url: str, seconds: float, seed: int, ids: list[str], out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = PlaybookStore(url)
    rng = random.Random(seed)
    latencies: list[float] = []
    store.head_version(NAME, namespace=NS)
    store.load(NAME, namespace=NS)  # warm: the measured commits start from a cached head
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        delta = Delta.parse({"operations": [{"type": "TAG", "id": rng.choice(ids), "tag": "helpful"}]})
        t = time.perf_counter()
        store.commit(NAME, delta, namespace=NS, author=f"writer-{seed}")
        latencies.append(time.perf_counter() - t)
    out.put(latencies)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=None, help="SQLAlchemy URL of an empty database (default: a temporary SQLite)")
    ap.add_argument("--n", type=int, default=10_000, help="bullets in the playbook")
    ap.add_argument("--processes", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cold", type=int, default=0, help="commits, each from a new store object")
    ap.add_argument(
        "--ops", choices=["tag", "mixed"], default="tag", help="--cold: TAGs, or TAG/UPDATE/ADD/REMOVE in turn"
    )
    ap.add_argument("--warm", type=int, default=0, help="consecutive commits from one store holding the head")
    ap.add_argument("--inline-snapshots", action="store_true", help="snapshots inside the commit (as before)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'writers.db'}"
        ops = [{"type": "ADD", "section": "context", "content": content(i)} for i in range(args.n)]
        pb = apply(Playbook.empty(), Delta.parse({"operations": ops})).playbook
        store = PlaybookStore(url)
        store.create(NAME, pb, namespace=NS)
        ids = [b.id for b in pb]
        del ops, pb  # the writers below hold no playbook (a new process would not): the collector has less to walk
        store.close()
        gc.collect()
        store = PlaybookStore(url)
        if args.processes:
            out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            procs = [mp.Process(target=_writer, args=(url, args.seconds, i, ids, out)) for i in range(args.processes)]
            for p in procs:
                p.start()
            lat = [x for _ in procs for x in out.get()]
            for p in procs:
                p.join()
            head = store.head_version(NAME, namespace=NS)
            print(
                f"{args.processes} writers, {args.n:,} bullets, {args.seconds:.0f} s on {url.split(':')[0]}: "
                f"{len(lat):,} commits, {len(lat) / args.seconds:,.0f} commits/s; latency median "
                f"{1e3 * statistics.median(lat):.1f} ms, p95 {1e3 * pct(lat, 0.95):.1f} ms, p99 "
                f"{1e3 * pct(lat, 0.99):.1f} ms, max {1e3 * max(lat):.1f} ms; head v{head}"
            )
            assert head == 1 + len(lat), "a commit was lost"
        if args.warm:
            warm = PlaybookStore(url, background_snapshots=not args.inline_snapshots)
            warm.load(NAME, namespace=NS)
            rng = random.Random(1)
            lat = []
            for _ in range(args.warm):
                delta = Delta.parse({"operations": [{"type": "TAG", "id": rng.choice(ids), "tag": "helpful"}]})
                t = time.perf_counter()
                warm.commit(NAME, delta, namespace=NS)
                lat.append(time.perf_counter() - t)
            warm.close()
            how = "inside the commit" if args.inline_snapshots else "in the background"
            print(
                f"warm commits, {args.n:,} bullets, snapshots {how}: median {1e3 * statistics.median(lat):.2f} ms, "
                f"p99 {1e3 * pct(lat, 0.99):.2f} ms, max {1e3 * max(lat):.1f} ms over {args.warm}"
            )
        if args.cold:
            engine = make_engine(url)
            rng = random.Random(0)
            live = list(ids)
            by_op: dict[str, list[float]] = {}
            kinds = ["TAG", "UPDATE", "ADD", "REMOVE"] if args.ops == "mixed" else ["TAG"]
            for k in range(args.cold):
                kind = kinds[k % len(kinds)]
                delta = Delta.parse({"operations": [_one_op(kind, rng, live, k)]})
                t = time.perf_counter()
                info = PlaybookStore(url, engine=engine).commit(NAME, delta, namespace=NS)
                by_op.setdefault(kind, []).append(time.perf_counter() - t)
                if kind == "ADD":
                    live.append(info.delta.operations[0].id)  # type: ignore[union-attr]
            lat = [x for v in by_op.values() for x in v]
            print(
                f"cold commits (a new store object each), {args.n:,} bullets, {args.ops} one-op deltas: median "
                f"{1e3 * statistics.median(lat):.2f} ms, p99 {1e3 * pct(lat, 0.99):.2f} ms, max {1e3 * max(lat):.1f} "
                f"ms over {args.cold}"
            )
            if len(by_op) > 1:
                for kind, v in by_op.items():
                    print(f"  {kind:<7} median {1e3 * statistics.median(v):.2f} ms, p99 {1e3 * pct(v, 0.99):.2f} ms")
            check = PlaybookStore(url, engine=engine)
            assert check.load(NAME, namespace=NS).digest() == check.head(NAME, namespace=NS).digest


def _one_op(kind: str, rng: random.Random, live: list[str], k: int) -> dict[str, str]:
    if kind == "ADD":
        return {"type": "ADD", "section": "context", "content": content(10_000_000 + k)}
    if kind == "REMOVE":
        return {"type": "REMOVE", "id": live.pop(rng.randrange(len(live)))}
    if kind == "UPDATE":
        return {"type": "UPDATE", "id": rng.choice(live), "content": content(20_000_000 + k)}
    return {"type": "TAG", "id": rng.choice(live), "tag": "helpful"}


if __name__ == "__main__":
    main()
