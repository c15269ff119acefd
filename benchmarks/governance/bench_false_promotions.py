"""False promotions and power of gated promotion (issue #24's bar: over 100 simulated campaigns of candidates no
better than serving, promotions <= alpha + 2 standard errors).

Two parts:

- **simulated** (the decision rule and the campaign, as the trials run them, on drawn outcomes): each campaign
  makes ``--looks`` looks against one serving version; each look draws fresh paired outcomes on a lane of
  ``--tasks`` tasks of mixed difficulty (each task's chance uniform in [0.2, 0.8]; serving right with that chance,
  the candidate with that chance plus the gain) and decides at the look's alpha. Printed per alpha-spending
  schedule and gain: the share of campaigns that promoted, its standard error, and the bar (alpha + 2 SE) for the
  gains at or below zero;
- **end to end** (``--e2e N``): N campaigns through :func:`ace.governance.run_trial` on real SQLite files, the
  scripted provider answering for the generator like a model no better with the candidate than with serving (each
  answer right with the task's chance, drawn from a hash of the prompt: the same prompt, the same answer), a new
  candidate committed before each look.

    python benchmarks/governance/bench_false_promotions.py [--campaigns 1000] [--looks 10] [--tasks 40] [--e2e 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from ace.governance import Campaign, Pair, decide, run_trial, set_lane
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider
from ace.llm.types import Request
from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.store import SERVING, PlaybookStore

ALPHA = 0.05


def simulate(*, campaigns: int, looks: int, tasks: int, gain: float, spending: str, seed: int) -> int:
    """How many of ``campaigns`` promoted at some look (see the module doc)."""
    rng = random.Random(seed)
    promoted = 0
    for _ in range(campaigns):
        campaign = Campaign(alpha=ALPHA, spending=spending, looks=looks, serving=1)  # type: ignore[arg-type]
        for _ in range(looks):
            _, alpha = campaign.look()
            chances = [rng.uniform(0.2, 0.8) for _ in range(tasks)]
            pairs = [Pair(str(i), rng.random() < min(1.0, p + gain), rng.random() < p) for i, p in enumerate(chances)]
            if decide(pairs, alpha=alpha).better:
                promoted += 1
                break
    return promoted


def _u(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big") / 2**64


def no_better(request: Request) -> dict[str, Any]:
    """A generator as good with one playbook as with another: right with the task's chance (a hash of the question),
    whatever the playbook says; the draw is a hash of the whole prompt (the same prompt, the same answer)."""
    question = request.messages[-1].content
    chance = 0.2 + 0.6 * _u("chance", question)
    right = _u("draw", *(m.content for m in request.messages)) < chance
    target = question.rsplit(" ", 1)[-1].rstrip("?")
    return {"reasoning": "", "bullet_ids": [], "final_answer": target if right else "unknown"}


def end_to_end(campaigns: int, looks: int, tasks: int) -> dict[str, Any]:
    promoted, answers, started = 0, 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lane = Path(tmp) / "lane.jsonl"
        lane.write_text("".join(json.dumps({"id": f"q{i}", "input": f"What is the code of item {i}? C{i:04d}?",
                                            "target": f"C{i:04d}"}) + "\n" for i in range(tasks)))  # fmt: skip
        for c in range(campaigns):
            store = PlaybookStore(f"sqlite:///{tmp}/c{c}.db")
            store.create("p", parse_ace("## RULES\n[rul-00001] Check the item's code twice.\n"))
            set_lane(store, "p", namespace="default", tasks=lane, evaluator="exact", looks=looks)
            store.move_channel("p", SERVING, 1, reason="serve v1")
            store.set_promotion("p", "gated")
            for k in range(looks):
                lesson = f"Campaign {c} look {k} says codes are printed on the label."
                store.commit("p", Delta.parse(json.dumps({"operations": [
                    {"type": "ADD", "section": "RULES", "content": lesson}]})))  # fmt: skip
                report = run_trial(store, "p", LLM(ScriptedProvider(no_better)), namespace="default")
                answers += report.answered_now
                if report.moved:
                    promoted += 1
                    break
            store.close()
    share = promoted / campaigns
    se = math.sqrt(ALPHA * (1 - ALPHA) / campaigns)
    return {"campaigns": campaigns, "looks": looks, "tasks": tasks, "promoted": promoted, "share": share,
            "bar": ALPHA + 2 * se, "within_bar": share <= ALPHA + 2 * se, "answers": answers,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaigns", type=int, default=1000)
    ap.add_argument("--looks", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--e2e", type=int, default=0, help="campaigns run end to end through run_trial (0: none)")
    ap.add_argument("--e2e-looks", type=int, default=3)
    ap.add_argument("--e2e-tasks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows = []
    print(f"simulated: {args.campaigns} campaigns x {args.looks} looks, lane of {args.tasks} tasks, alpha {ALPHA}")
    print(f"{'spending':<11}{'gain':>7}{'promoted':>10}{'share':>8}{'SE':>8}{'bar':>8}  verdict")
    for spending in ("bonferroni", "series"):
        for gain in (-0.05, 0.0, 0.1, 0.2, 0.3):
            n = simulate(campaigns=args.campaigns, looks=args.looks, tasks=args.tasks, gain=gain, spending=spending,
                         seed=args.seed)  # fmt: skip
            share = n / args.campaigns
            se = math.sqrt(ALPHA * (1 - ALPHA) / args.campaigns)
            bar = ALPHA + 2 * se
            verdict = ("false promotions within the bar" if share <= bar else "OVER THE BAR") if gain <= 0 else "power"
            print(f"{spending:<11}{gain:>+7.2f}{n:>10}{share:>8.3f}{se:>8.3f}{bar:>8.3f}  {verdict}")
            rows.append({"spending": spending, "gain": gain, "promoted": n, "share": share, "bar": bar})
    result: dict[str, Any] = {"simulated": rows}
    if args.e2e:
        e2e = end_to_end(args.e2e, args.e2e_looks, args.e2e_tasks)
        print(f"end to end: {e2e['promoted']} of {e2e['campaigns']} campaigns promoted a candidate no better "
              f"(share {e2e['share']:.3f}, bar {e2e['bar']:.3f}); {e2e['answers']} answers in "
              f"{e2e['seconds']} s")  # fmt: skip
        result["end_to_end"] = e2e
    print(json.dumps(result))


if __name__ == "__main__":
    main()
