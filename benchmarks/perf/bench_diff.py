#!/usr/bin/env python
"""``PlaybookStore.diff`` between versions, from a store that holds nothing (a CLI call, a service read).

A playbook of ``--n`` bullets (the perf bench's texts) and ``--steps`` deltas of 1 ADD + 2 TAG (every 10th also an
UPDATE and a REMOVE) committed to SQLite; then ``diff(head - span, head)`` for a few spans, built both ways: from
the two versions (``DIFF_REPLAY = 0``: each rebuilt, every bullet compared) and by replaying the deltas between
(the default up to 1,000 versions apart: the earlier version rebuilt, only the bullets the deltas touched compared).

    python benchmarks/perf/bench_diff.py --n 10000 --steps 300
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detectors import deltas
from bench_playbook import build

import ace.store.store as store_module
from ace.store import PlaybookStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--spans", type=int, nargs="+", default=[1, 50, 250])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'diff.db'}"
        pb = build(args.n)
        with PlaybookStore(url) as s:
            s.create("bench", pb)
            for d in deltas(pb, args.steps, seed=2):
                s.commit("bench", d)
            head = s.head_version("bench")
        del pb
        default = store_module.DIFF_REPLAY
        for span in args.spans:
            for how, limit in (("both versions", 0), ("replayed", default)):
                store_module.DIFF_REPLAY = limit
                gc.collect()
                t = time.perf_counter()
                r = PlaybookStore(url, cache=False).diff("bench", head - span, head)
                ms = 1e3 * (time.perf_counter() - t)
                print(
                    f"{args.n:,} bullets, diff over {span:>4} versions, {how:<13}: {ms:7.1f} ms "
                    f"({len(r.added)} added, {len(r.changed)} changed, {len(r.removed)} removed)"
                )
        store_module.DIFF_REPLAY = default


if __name__ == "__main__":
    main()
