#!/usr/bin/env python
"""Side-by-side performance bench: the workload of ``../shared/peers/kayba_ops.py`` through ACE's API.

Same bullet texts (issue, insight and keywords of bullet i, rendered into one content string), same operation mix,
same sizes, best of ``--repeats`` wall-clock runs (``time.perf_counter``). With ``--peer kayba_ops.json`` (the
peer script's output from the same machine) each figure is printed beside the peer's, as a ratio ours / peer
(below 1 means we are faster). Store figures (commit latency, cold load) have no in-memory peer equivalent: the
peer's nearest operation (``save_to_file`` / ``load_from_file`` of the whole JSON) is shown beside them.

    python benchmarks/perf/bench_playbook.py --sizes 1000 10000 --repeats 5 --peer kayba_ops.json

Notes on fairness: our playbooks are immutable, so a "clone" costs nothing and is not timed; rendering is memoized
per object, so every render here is timed on a fresh object (a cold render, like the peer's ``as_prompt``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ace.playbook import Delta, Playbook, apply, render
from ace.playbook.formats import parse_json, to_json
from ace.store import PlaybookStore


# -- the peer's texts (kayba_ops.py: _issue, _insight, _kw) ----------------------------------------------------
def _issue(i: int) -> str:
    return (
        f"Issue {i}: when calling API endpoint_{i % 97} the agent forgets to paginate "
        f"through page_index and misses results for account {i}"
    )


def _insight(i: int) -> str:
    return (
        f"When endpoint_{i % 97} returns a page, loop over page_index until an empty page "
        f"is returned, then aggregate results before answering (rule {i})."
    )


def _kw(i: int) -> list[str]:
    return [f"api_{i % 97}", "pagination", f"domain_{i % 7}"]


def content(i: int) -> str:
    # What the peer's as_prompt prints for a skill: keywords, issue, insight.
    return f"Keywords: {', '.join(_kw(i))}\nIssue: {_issue(i)}\nInsight: {_insight(i)}"


def source(i: int) -> dict[str, Any]:
    return {"task_id": f"question {i}", "run_id": f"bench:trace-{i}", "role": "bench", "step": 1}


def add_delta(n: int) -> Delta:
    return Delta.parse(
        {
            "reasoning": "bench",
            "operations": [{"type": "ADD", "section": "context", "content": content(i)} for i in range(n)],
            "source": source(0),
        }
    )


def build(n: int) -> Playbook:
    return apply(Playbook.empty(), add_delta(n)).playbook


def mixed_delta(pb: Playbook, k: int) -> Delta:
    """k UPDATE + k TAG helpful + k TAG harmful + k REMOVE + k ADD, on ids picked as the peer picks them."""
    ids = [b.id for b in pb]
    step = max(1, len(ids) // (4 * k))
    picks = ids[::step][: 4 * k]
    upd, tag_p, tag_m, rem = picks[:k], picks[k : 2 * k], picks[2 * k : 3 * k], picks[3 * k : 4 * k]
    ops: list[dict[str, Any]] = []
    ops += [{"type": "UPDATE", "id": i, "content": f"updated issue for {i}\nWhen X for {i}, do Y."} for i in upd]
    ops += [{"type": "TAG", "id": i, "tag": "helpful"} for i in tag_p]
    ops += [{"type": "TAG", "id": i, "tag": "harmful"} for i in tag_m]
    ops += [{"type": "REMOVE", "id": i} for i in rem]
    ops += [
        {"type": "ADD", "section": "harness", "content": f"new harness issue {j}\nWhen tool {j} fails, retry once."}
        for j in range(k)
    ]
    return Delta.parse({"reasoning": "bench mixed", "operations": ops})


def timeit(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def fresh(pb: Playbook) -> Playbook:
    """The same state in a new object (plain dicts, as apply makes them): nothing memoized."""
    return Playbook(dict(pb.sections), dict(pb.bullets_by_id), pb.next_id)


def bench(n: int, repeats: int, tmp: Path) -> dict[str, Any]:
    r: dict[str, Any] = {"n": n}

    def one_by_one() -> Playbook:
        pb = Playbook.empty()
        for i in range(n):
            d = Delta.parse({"operations": [{"type": "ADD", "section": "context", "content": content(i)}]})
            pb = apply(pb, d).playbook
        return pb

    # Building n bullets one delta at a time: O(n log n) with the persistent id map; timed once above 1k.
    r["add_one_by_one_s"], _ = timeit(one_by_one, repeats if n <= 1000 else 1)
    delta = add_delta(n)
    r["apply_n_ADD_s"], pb = timeit(lambda: apply(Playbook.empty(), delta).playbook, repeats)
    payload = delta.to_json()
    r["delta_from_json_n_ops_s"], _ = timeit(lambda: Delta.parse(payload), repeats)

    k = min(100, n // 8)
    mixed = mixed_delta(pb, k)
    r["mixed_delta_ops"] = 5 * k
    r["apply_mixed_delta_s"], after = timeit(lambda: apply(pb, mixed).playbook, repeats)
    r["after_mixed_bullets"] = len(after)

    def per_op(make: Callable[[str], dict[str, Any]]) -> float:
        ids = [b.id for b in pb][:200]
        deltas = [Delta.parse({"operations": [make(i)]}) for i in ids]
        best = float("inf")
        for _ in range(repeats):
            state = pb
            gc.collect()
            t = time.perf_counter()
            for d in deltas:
                state = apply(state, d).playbook
            best = min(best, 1e6 * (time.perf_counter() - t) / len(deltas))
        return best

    r["single_UPDATE_op_us"] = per_op(
        lambda i: {"type": "UPDATE", "id": i, "content": f"updated rule for {i}\nWhen a, do b."}
    )
    r["single_TAG_op_us"] = per_op(lambda i: {"type": "TAG", "id": i, "tag": "helpful"})
    r["single_REMOVE_op_us"] = per_op(lambda i: {"type": "REMOVE", "id": i})

    copies = [fresh(pb) for _ in range(repeats)]  # made outside the timed region
    r["render_s"], text = timeit(lambda: render(copies.pop()), repeats)
    r["render_chars"] = len(text)
    r["render_memoized_s"], _ = timeit(lambda: render(pb), repeats)
    r["to_json_s"], js = timeit(lambda: to_json(pb, indent=None), repeats)
    r["parse_json_s"], _ = timeit(lambda: parse_json(js), repeats)
    r["digest_cold_s"], _ = timeit(lambda: fresh(build_digestless(pb)).digest(), 1)

    # -- the store: a persisted n-bullet playbook on a SQLite file ----------------------------------------------
    url = f"sqlite:///{tmp / f'bench_{n}.db'}"
    store = PlaybookStore(url)
    t = time.perf_counter()
    store.create("bench", pb)
    r["store_create_s"] = time.perf_counter() - t
    ids = [b.id for b in pb]
    lat = []
    for j in range(200):  # one-op deltas: TAG / UPDATE alternating, each committed against the expected head
        bid = ids[(j * 37) % len(ids)]
        op = (
            {"type": "TAG", "id": bid, "tag": "helpful"}
            if j % 2
            else {"type": "UPDATE", "id": bid, "content": f"v{j}: {content(j)}"}
        )
        d = Delta.parse({"operations": [op], "source": {"task_id": f"t{j}", "step": j}})
        t = time.perf_counter()
        store.commit("bench", d, expected_version=j + 1)
        lat.append(time.perf_counter() - t)
    lat_sorted = sorted(lat)
    r["commit_one_op_median_ms"] = 1e3 * statistics.median(lat)
    r["commit_one_op_p95_ms"] = 1e3 * lat_sorted[int(0.95 * len(lat)) - 1]
    r["commit_one_op_max_ms"] = 1e3 * lat_sorted[-1]
    store.close()

    def cold_load(version: int | None = None) -> Playbook:
        with PlaybookStore(url, cache=False) as s:
            return s.load("bench", version)

    # head is version 201: snapshot at 200 plus one delta; version 199 is snapshot 150 plus 49 deltas (worst case)
    r["load_latest_cold_s"], latest = timeit(cold_load, repeats)
    r["load_worst_case_cold_s"], _ = timeit(lambda: cold_load(199), repeats)
    r["load_plus_render_cold_s"], _ = timeit(lambda: render(cold_load()), repeats)
    assert len(latest) == n
    r["db_bytes"] = sum(p.stat().st_size for p in tmp.glob(f"bench_{n}.db*"))
    return r


def build_digestless(pb: Playbook) -> Playbook:
    """A copy whose bullets have no cached digests, to time a digest from scratch."""
    return Playbook.from_dict(pb.to_dict())


# our metric -> the peer's nearest metric (kayba_ops.py keys)
PEER = {
    "add_one_by_one_s": "add_skill_x_n_with_source_s",
    "apply_n_ADD_s": "apply_update_n_ADD_s",
    "delta_from_json_n_ops_s": "updatebatch_from_json_n_ops_s",
    "apply_mixed_delta_s": "apply_update_mixed_batch_s",
    "single_UPDATE_op_us": "single_UPDATE_op_us",
    "single_TAG_op_us": "single_TAG_op_us",
    "single_REMOVE_op_us": "single_REMOVE_op_us",
    "render_s": "as_prompt_s",
    "render_chars": "as_prompt_chars",
    "to_json_s": "dumps_s",
    "parse_json_s": "loads_s",
    "store_create_s": "save_to_file_s",
    "load_latest_cold_s": "load_from_file_s",
    "load_plus_render_cold_s": None,
    "commit_one_op_median_ms": None,
}


def report(ours: list[dict[str, Any]], peer: dict[str, Any] | None) -> None:
    peer_by_n = {r["n"]: r for r in (peer or {}).get("results", [])}
    for r in ours:
        n = r["n"]
        pr = peer_by_n.get(n)
        print(
            f"\n== N = {n} bullets"
            + (" (peer: kayba ace-framework " + peer["env"]["ace_framework"] + ")" if pr else "")
        )
        print(f"{'metric':32s}{'ours':>14s}{'peer metric':>34s}{'peer':>14s}{'ours/peer':>11s}")
        for key, value in r.items():
            if key == "n":
                continue
            pkey = PEER.get(key)
            pval = pr.get(pkey) if pr and pkey else None
            ratio = f"{value / pval:11.2f}" if isinstance(pval, (int, float)) and pval else f"{'':11s}"
            pv = f"{pval:14.4f}" if isinstance(pval, float) else f"{pval if pval is not None else '':>14}"
            ov = f"{value:14.4f}" if isinstance(value, float) else f"{value:>14}"
            print(f"{key:32s}{ov}{(pkey or ''):>34s}{pv}{ratio}")
    by_n = {r["n"]: r for r in ours}
    if 1000 in by_n and 100000 in by_n:
        small, big, pr = by_n[1000], by_n[100000], peer_by_n.get(100000)
        print("\nScaling bars (issue 15), 1k -> 100k in this run:")
        for op in ("UPDATE", "TAG", "REMOVE"):
            key = f"single_{op}_op_us"
            growth = big[key] / small[key]
            line = f"  one {op:<6} {small[key]:7.2f} -> {big[key]:7.2f} us: {growth:4.2f}x (bar <= 3x: "
            line += f"{'MET' if growth <= 3 else 'MISSED'})"
            if pr:
                vs = big[key] / pr[PEER[key]]
                line += f"; {vs:4.2f}x the peer at 100k (bar <= 5x: {'MET' if vs <= 5 else 'MISSED'})"
            print(line)
        if pr:
            for key, bar in (("add_one_by_one_s", 1.0), ("apply_mixed_delta_s", 3.0)):
                vs = big[key] / pr[PEER[key]]
                print(
                    f"  {key} at 100k: {big[key]:.3f} s, {vs:.2f}x the peer (bar <= {bar:g}x: "
                    f"{'MET' if vs <= bar else 'MISSED'})"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer", type=Path, help="JSON written by ../shared/peers/kayba_ops.py on this machine")
    ap.add_argument("--out", type=Path, help="write our figures here as JSON")
    args = ap.parse_args()
    peer = json.loads(args.peer.read_text()) if args.peer else None
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(n, args.repeats, Path(tmp)) for n in args.sizes]
    print(f"python {sys.version.split()[0]}")
    report(results, peer)
    if args.out:
        args.out.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
