#!/usr/bin/env python
"""What the collapse detectors cost per loop step, and replay speed with and without them.

For each size: a playbook of N bullets (the perf bench's texts), then ``--steps`` consecutive deltas committed to
a SQLite store (each 1 ADD + 2 TAG; every 10th also 1 UPDATE that rewords a bullet and 1 REMOVE), exported as a
trajectory. Printed:

- ``check`` per step, incremental: ``Detectors().check(before, after)`` where ``after`` was applied from
  ``before`` (what the loop's guard and a replay see), mean over the steps;
- ``check`` per step, full: the same pairs rebuilt with no parent link (what any two unrelated playbooks cost);
- ``ace replay`` of the trajectory (verify every digest), steps/s without and with the detectors: for the whole
  command, and after the start (the time to replay the same start with its first step only is subtracted: loading
  and digesting the first state happen once per replay). The detectors' feature cache is cleared before each
  timing.

    python benchmarks/perf/bench_detectors.py --sizes 1300 10000 --steps 1000
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_playbook import build, content

from ace.collapse import Detectors, _features
from ace.playbook import Delta, Playbook, apply
from ace.runs.trajectory import export, replay
from ace.store import PlaybookStore


def deltas(pb: Playbook, steps: int, seed: int) -> list[Delta]:
    rng = random.Random(seed)
    out = []
    state = pb
    for k in range(steps):
        ids = list(state.bullets_by_id)
        ops = [
            {"type": "ADD", "section": "context", "content": f"Step {k}: {content(10_000_000 + k)}"},
            *({"type": "TAG", "id": rng.choice(ids), "tag": rng.choice(["helpful", "harmful"])} for _ in range(2)),
        ]
        if k % 10 == 9:
            victim, other = rng.sample(ids, 2)
            ops.append({"type": "UPDATE", "id": victim, "content": state[victim].content + " (checked again)"})
            ops.append({"type": "REMOVE", "id": other})
        d = Delta.parse({"operations": ops, "source": {"task_id": f"t{k}", "step": k + 1}})
        out.append(d)
        state = apply(state, d).playbook
    return out


def bench(n: int, steps: int, tmp: Path) -> None:
    pb = build(n)
    ds = deltas(pb, steps, seed=n)
    chain = [pb]
    for d in ds:
        chain.append(apply(chain[-1], d).playbook)
    det = Detectors()
    t = time.perf_counter()
    for a, b in itertools.pairwise(chain):
        det.check(a, b)
    incremental = (time.perf_counter() - t) / steps
    sample = list(range(0, steps, max(1, steps // 20)))  # a full check is slow at 10k: time 20 of them
    fresh = [(Playbook.from_dict(chain[i].to_dict()), Playbook.from_dict(chain[i + 1].to_dict())) for i in sample]
    t = time.perf_counter()
    for a, b in fresh:
        Detectors().check(a, b)
    full = (time.perf_counter() - t) / len(fresh)

    store = PlaybookStore(f"sqlite:///{tmp / f'det_{n}.db'}")
    store.create("bench", pb)
    for d in ds:
        store.commit("bench", d)
    path = tmp / f"det_{n}.trajectory.jsonl"
    export(store, "bench", path)
    store.close()
    first = tmp / f"det_{n}.first.jsonl"  # the same start and only the first step: what starting costs
    with PlaybookStore(f"sqlite:///{tmp / f'first_{n}.db'}") as one:
        one.create("bench", pb)
        one.commit("bench", ds[0])
        export(one, "bench", first)

    def timed(file: Path, detectors: Detectors | None) -> float:
        _features.cache_clear()  # nothing the checks above computed is reused
        gc.collect()
        t = time.perf_counter()
        report = replay(file, detectors=detectors)
        assert report.ok, report.problem
        return time.perf_counter() - t

    t_plain, t_det = timed(path, None), timed(path, Detectors())
    s_plain, s_det = timed(first, None), timed(first, Detectors())
    print(
        f"{n:>7} bullets: check/step incremental {incremental * 1e3:7.2f} ms, full {full * 1e3:8.2f} ms "
        f"({full / incremental:5.0f}x)\n"
        f"{'':>16}replay of {steps} steps, whole command: {steps / t_plain:7.0f} steps/s without detectors, "
        f"{steps / t_det:7.0f} with;\n{'':>16}after the start (the first state loaded and digested: "
        f"{s_plain:.2f} s / {s_det:.2f} s): {(steps - 1) / (t_plain - s_plain):7.0f} and "
        f"{(steps - 1) / (t_det - s_det):7.0f} steps/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1300, 10000])
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; {args.steps} steps of 1 ADD + 2 TAG (+ UPDATE and REMOVE every 10th)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            bench(n, args.steps, Path(tmp))


if __name__ == "__main__":
    main()
