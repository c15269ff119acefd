#!/usr/bin/env python
"""One TAG, UPDATE or REMOVE on a large playbook, in microseconds (best of ``--repeats`` runs of 200 ops).

Builds ``--n`` bullets (the peer bench's texts) in one delta, then times 200 single-op deltas of each kind applied
one after the other. Run it against two checkouts in the same minutes to compare them::

    PYTHONPATH=/path/to/checkout python benchmarks/perf/bench_single_ops.py --n 100000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_playbook import content

from ace.playbook import Delta, Playbook, apply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ops = [{"type": "ADD", "section": "context", "content": content(i)} for i in range(args.n)]
    pb = apply(Playbook.empty(), Delta.parse({"operations": ops})).playbook
    ids = [b.id for b in pb][:200]
    kinds: dict[str, Any] = {
        "UPDATE": lambda i: {"type": "UPDATE", "id": i, "content": content(7) + " (updated)"},
        "TAG": lambda i: {"type": "TAG", "id": i, "tag": "helpful"},
        "REMOVE": lambda i: {"type": "REMOVE", "id": i},
    }
    for name, make in kinds.items():
        deltas = [Delta.parse({"operations": [make(i)]}) for i in ids]
        best = float("inf")
        for _ in range(args.repeats):
            state = pb
            gc.collect()
            t = time.perf_counter()
            for d in deltas:
                state = apply(state, d).playbook
            best = min(best, (time.perf_counter() - t) / len(deltas) * 1e6)
        print(f"one {name:<6} at {args.n:,} bullets: {best:6.1f} us")


if __name__ == "__main__":
    main()
