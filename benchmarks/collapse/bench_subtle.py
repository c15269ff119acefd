"""Score the collapse detectors on held-out subtle histories (:mod:`subtle_histories`): per kind of collapse, recall
at warning and at critical, the delay, and the false alarms on healthy steps and on legitimate corrections; then the
cost of one check per step at 300, 3,000 and 30,000 bullets.

    python benchmarks/collapse/bench_subtle.py                      # 8 fresh seeds x 400 steps, then the cost
    python benchmarks/collapse/bench_subtle.py --seeds 3 --seed 11 --steps 300 --no-cost
    python benchmarks/collapse/bench_subtle.py --json runs/subtle.json   # the table, and every figure as JSON

Rules of the count (``GRACE`` = 5 steps):

- An alert is placed where it starts: at its after-version (``Alert.versions[1]``).
- An episode (versions ``start..end``) is caught at a severity when an alert of at least that severity starts at a
  version in ``start..end + GRACE``. Its delay is the first such version minus ``start`` (0: caught on its first
  step).
- A false alarm is a version with an alert of at least warning (or critical) that starts on a healthy or correction
  step outside every episode and its grace. False alarms per 100 healthy steps divide the healthy ones by the
  healthy steps outside the episodes and their grace; alarms on corrections are counted apart, per correction (a
  correction changes a fact's value on purpose, with the old value in its record; flagging one is a cost).
- Alerts on version 0 (the base on its own) are reported apart.

The detectors are called in one place, :func:`detect` (``Detectors().scan`` over the versions), so that a stateful
history API can be scored by changing that function alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from subtle_histories import GRACE, KINDS, LETTER, History, generate, grow, load_base, small_steps

from ace.collapse import Alert, Detectors
from ace.playbook import Playbook

SEVERITIES = ("warning", "critical")


def detect(history: History) -> list[Alert]:
    """Every alert the detectors raise on ``history`` (the one place they are called)."""
    return Detectors().scan(history.pairs())


def score(runs: Sequence[tuple[History, list[Alert]]], grace: int = GRACE) -> dict[str, Any]:
    """Recall, delay and false alarms over ``(history, its alerts)`` pairs (see the module doc for the rules)."""
    per_kind: dict[str, dict[str, Any]] = {
        k: {"episodes": 0, "caught": Counter(), "delays": [], "detectors": Counter()} for k in KINDS
    }
    healthy_steps = corrections = 0
    false_healthy: Counter[str] = Counter()
    false_correction: Counter[str] = Counter()
    false_detectors: Counter[str] = Counter()
    correction_detectors: Counter[str] = Counter()
    base_alerts: Counter[str] = Counter()
    for history, alerts in runs:
        starts: dict[str, dict[int, list[Alert]]] = {s: {} for s in SEVERITIES}
        for a in alerts:
            after = a.versions[1]
            if after is None or after == 0:
                base_alerts[a.severity] += 1
                continue
            for s in SEVERITIES:
                if a.at_least(s):  # type: ignore[arg-type]
                    starts[s].setdefault(after, []).append(a)
        windows: set[int] = set()
        for e in history.episodes:
            window = range(e.start, e.end + grace + 1)
            windows.update(window)
            k = per_kind[e.kind]
            k["episodes"] += 1
            for s in SEVERITIES:
                hits = sorted(v for v in starts[s] if v in window)
                if hits:
                    k["caught"][s] += 1
                    if s == "warning":
                        k["delays"].append(hits[0] - e.start)
                        k["detectors"].update({a.detector for v in hits for a in starts[s][v]})
        for st in history.steps:
            if st.version in windows:
                continue
            if st.kind == "healthy":
                healthy_steps += 1
            elif st.kind == "correction":
                corrections += 1
            for s in SEVERITIES:
                if st.version in starts[s]:
                    (false_healthy if st.kind == "healthy" else false_correction)[s] += 1
                    if s == "warning":
                        tally = false_detectors if st.kind == "healthy" else correction_detectors
                        tally.update({a.detector for a in starts[s][st.version]})
    kinds = {}
    for kind, k in per_kind.items():
        n = k["episodes"]
        kinds[kind] = {
            "episodes": n,
            "recall_warning": k["caught"]["warning"] / n if n else None,
            "recall_critical": k["caught"]["critical"] / n if n else None,
            "median_delay": statistics.median(k["delays"]) if k["delays"] else None,
            "detectors": dict(k["detectors"]),
        }
    return {
        "grace": grace,
        "kinds": kinds,
        "healthy_steps": healthy_steps,
        "false_alarms": {s: false_healthy[s] for s in SEVERITIES},
        "false_alarms_per_100": {
            s: 100 * false_healthy[s] / healthy_steps if healthy_steps else None for s in SEVERITIES
        },
        "false_alarm_detectors": dict(false_detectors),
        "corrections": corrections,
        "corrections_flagged": {s: false_correction[s] for s in SEVERITIES},
        "correction_detectors": dict(correction_detectors),
        "base_alerts": dict(base_alerts),
    }


def cost(sizes: Sequence[int], steps: int, seed: int) -> list[dict[str, Any]]:
    """Milliseconds of one ``Detectors.check(before, after)`` per small delta applied with ``apply`` (so the
    index is carried in O(delta)), on playbooks grown to each size from the released bullets. The first check,
    which builds the index, is reported apart."""
    _, base = load_base()
    out = []
    for n in sizes:
        pb = grow(base, n, seed)
        chain: list[Playbook] = [pb, *small_steps(pb, steps + 1, seed)]
        det = Detectors()
        t = time.perf_counter()
        det.check(chain[0], chain[1])
        first = (time.perf_counter() - t) * 1000
        times = []
        for before, after in itertools.pairwise(chain[1:]):
            t = time.perf_counter()
            det.check(before, after)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out.append({"bullets": n, "steps": len(times), "first_ms": first, "median_ms": statistics.median(times),
                    "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]})  # fmt: skip
    return out


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def table(result: dict[str, Any]) -> str:
    s = result["score"]
    lines = [
        f"held-out subtle histories: {len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}), "
        f"{result['steps']} steps each ({result['labelled_steps']} labelled steps), base {result['base']}; "
        f"grace {s['grace']} steps",
        "",
        f"{'kind':<22}{'episodes':>9}{'recall@warning':>16}{'recall@critical':>17}{'median delay':>14}"
        "  detectors (warning+)",
    ]
    for kind, k in s["kinds"].items():
        dets = ", ".join(f"{d} {n}" for d, n in sorted(k["detectors"].items(), key=lambda dn: -dn[1])) or "-"
        lines.append(
            f"{LETTER[kind] + ' ' + kind:<22}{k['episodes']:>9}{_f(k['recall_warning']):>16}"
            f"{_f(k['recall_critical']):>17}{_f(k['median_delay'], '{:.0f}'):>14}  {dets}"
        )
    fa = s["false_alarms_per_100"]
    lines += [
        "",
        f"false alarms on healthy steps: {s['false_alarms']['warning']} at warning, {s['false_alarms']['critical']} "
        f"at critical over {s['healthy_steps']} healthy steps = {_f(fa['warning'])} / {_f(fa['critical'])} per 100"
        + (f" (detectors: {s['false_alarm_detectors']})" if s["false_alarm_detectors"] else ""),
        f"legitimate corrections flagged: {s['corrections_flagged']['warning']} of {s['corrections']} at warning, "
        f"{s['corrections_flagged']['critical']} at critical"
        + (f" (detectors: {s['correction_detectors']})" if s["correction_detectors"] else ""),
        f"alerts on the base version alone: {s['base_alerts'] or 'none'}",
        f"time: generating {result['seconds']['generate']:.1f} s, detectors {result['seconds']['detect']:.1f} s "
        f"({1000 * result['seconds']['detect'] / max(1, result['labelled_steps']):.2f} ms a step)",
    ]
    if result.get("cost"):
        lines += ["", "cost of one check per step (Detectors.check on a small delta applied with apply):",
                  f"{'bullets':>9}{'steps':>7}{'median ms':>11}{'p95 ms':>9}{'first check ms':>16}"]  # fmt: skip
        for c in result["cost"]:
            lines.append(
                f"{c['bullets']:>9}{c['steps']:>7}{c['median_ms']:>11.2f}{c['p95_ms']:>9.2f}{c['first_ms']:>16.1f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="how many histories (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=None, help="the first seed (default: a fresh one, printed)")
    p.add_argument("--steps", type=int, default=400, help="steps per history (about: episodes may add a few)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write every figure as JSON to PATH (- or no PATH: stdout, instead of the table)",
    )
    p.add_argument("--no-cost", action="store_true", help="skip the cost per step")
    p.add_argument("--cost-sizes", default="300,3000,30000")
    p.add_argument("--cost-steps", type=int, default=200, help="checks timed per size")
    args = p.parse_args(argv)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    seeds = list(range(first, first + args.seeds))
    base = load_base()
    runs = []
    gen_s = det_s = 0.0
    for seed in seeds:
        t = time.perf_counter()
        history = generate(seed, args.steps, base=base)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        alerts = detect(history)
        det_s += time.perf_counter() - t
        runs.append((history, alerts))
    result: dict[str, Any] = {
        "seeds": seeds,
        "steps": args.steps,
        "labelled_steps": sum(len(h.steps) for h, _ in runs),
        "base": f"{base[0]} ({len(base[1])} bullets)",
        "score": score(runs),
        "seconds": {"generate": gen_s, "detect": det_s},
    }
    if not args.no_cost:
        result["cost"] = cost([int(x) for x in args.cost_sizes.split(",")], args.cost_steps, first)
    if args.json == "-":
        print(json.dumps(result, indent=2))
    else:
        print(table(result))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
