#!/usr/bin/env python
"""How much of the previous prompt survives a typical loop step, per render layout (a prefix cache reuses it).

Starts from the authors' released AppWorld playbook (``../shared/data/playbooks``) and applies ``--steps``
consecutive deltas of 1 ADD (to a random section) + 2 TAG (of random bullets among those the prompt shows: only
they can be cited), seeded; after each it compares the new render with the previous one. The *prefix share* is
the length of their common prefix over the length of the previous render (characters; tokens are estimated as
characters / 4 throughout, so the share is the same).

It then prices the generator's prompts of such a run as a provider's prompt cache would: the stable part of each
prompt (instructions + playbook up to the first change) is read from the cache, the rest written to it, with
Anthropic's multipliers (a cache read costs 0.1 of an input token, a cache write 1.25) and OpenAI's (cached
input 0.5 of an input token, no write premium; its cache works on 128-token blocks of a prefix of >= 1024 tokens).

    python benchmarks/perf/bench_prefix.py --steps 100 --seed 0

With ``--trajectory FILE`` (a recorded run, e.g. ``~/.local/share/ace/runs/RUN/*.trajectory.jsonl``) it instead
rebuilds every version the run went through (verifying each digest) and compares the playbook part of consecutive
generator prompts under the run's own budget, in both layouts: the same accounting on a real run's deltas.

    python benchmarks/perf/bench_prefix.py --trajectory RUN.trajectory.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
from pathlib import Path

from ace.loop.roles.calls import prompt
from ace.playbook import REPLAY_POLICY, Delta, Playbook, apply, loads, parse_ace, render
from ace.playbook.render import Layout, common_prefix

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "playbooks"


def shown(pb: Playbook, layout: Layout, budget: int | None) -> list[str]:
    """The ids a generator sees in the prompt (only those can be cited, and so tagged)."""
    text = render(pb, layout=layout, budget=budget)
    return [b.id for b in pb if f"[{b.id}]" in text]


def steps(pb: Playbook, n: int, seed: int, layout: Layout, budget: int | None) -> list[Playbook]:
    rng = random.Random(seed)
    sections = list(pb.sections)
    out = [pb]
    for k in range(n):
        ids = shown(pb, layout, budget)
        ops = [
            {
                "type": "ADD",
                "section": rng.choice(sections),
                "content": f"Lesson {k}: check the page size before paging.",
            },
            *({"type": "TAG", "id": rng.choice(ids), "tag": rng.choice(["helpful", "harmful"])} for _ in range(2)),
        ]
        pb = apply(pb, Delta.parse({"operations": ops, "source": {"step": k + 1}})).playbook
        out.append(pb)
    return out


def shares(versions: list[Playbook], layout: Layout, budget: int | None) -> list[float]:
    texts = [render(pb, layout=layout, budget=budget) for pb in versions]
    return [common_prefix(a, b) / len(a) for a, b in itertools.pairwise(texts) if a]  # an empty playbook: no share


def cache_costs(versions: list[Playbook], layout: Layout, budget: int | None) -> dict[str, float]:
    """Input cost of the run's generator prompts relative to no caching (1.0), per provider's accounting."""
    head = prompt("generator") + "\n\nPLAYBOOK:\n"
    texts = [head + render(pb, layout=layout, budget=budget) for pb in versions]
    full = anth = oai = 0.0
    for prev, cur in itertools.pairwise(texts):
        total = len(cur) / 4
        cached = common_prefix(prev, cur) / 4
        full += total
        anth += 0.1 * cached + 1.25 * (total - cached)  # the changed tail is written to the cache again
        blocks = int(cached // 128) * 128 if cached >= 1024 else 0
        oai += 0.5 * blocks + (total - blocks)
    return {"anthropic": anth / full, "openai": oai / full}


def recorded(path: Path) -> tuple[list[Playbook], int | None]:
    """Every version a recorded run went through, rebuilt and checked against its digests, and its budget."""
    from ace.runs.trajectory import load

    t = load(path)
    pb = loads(json.dumps(t.header["state"]), "json")
    versions = [pb]
    for step in t.steps:
        if step.get("delta") is not None:
            pb = apply(pb, Delta.model_validate(step["delta"]), policy=REPLAY_POLICY).playbook
            if pb.digest() != step["digest"]:
                raise SystemExit(f"{path}: step {step['index']} does not rebuild its recorded digest")
        versions.append(pb)  # a step without a delta shows the same playbook again
    config = (t.header.get("run") or {}).get("config") or {}
    return versions, config.get("playbook_budget", 2000)


def table(rows: list[tuple[str, int | None, list[float], dict[str, float]]]) -> None:
    print(f"{'layout':<10} {'budget':>7} {'mean':>7} {'median':>7} {'p10':>7} {'min':>7}   input cost vs no cache")
    for layout, budget, raw, c in rows:
        s = sorted(raw)
        p10 = s[max(0, int(0.1 * len(s)) - 1)]
        print(
            f"{layout:<10} {budget or '-':>7} {statistics.mean(s):>7.1%} {statistics.median(s):>7.1%} "
            f"{p10:>7.1%} {s[0]:>7.1%}   anthropic {c['anthropic']:.2f}, openai {c['openai']:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--playbook", type=Path, default=DATA / "appworld_offline_trained_no_gt_playbook.txt")
    ap.add_argument("--trajectory", type=Path, help="a recorded run's trajectory file instead of synthetic steps")
    args = ap.parse_args()
    if args.trajectory:
        versions, budget = recorded(args.trajectory)
        last = versions[-1]
        print(f"{args.trajectory.name}: {len(versions) - 1} steps, {len(last)} bullets at the end, budget {budget}")
        table(
            [
                (layout, b, shares(versions, layout, b), cache_costs(versions, layout, b))
                for layout in ("sections", "stable")
                for b in (budget, None)
            ]
        )
        return
    pb = parse_ace(args.playbook.read_text(encoding="utf-8"))
    print(f"{args.playbook.name}: {len(pb)} bullets, {len(render(pb))} chars; {args.steps} deltas of 1 ADD + 2 TAG")
    rows = []
    for layout in ("sections", "stable"):
        for budget in (None, 2000):
            versions = steps(pb, args.steps, args.seed, layout, budget)
            rows.append((layout, budget, shares(versions, layout, budget), cache_costs(versions, layout, budget)))
    table(rows)


if __name__ == "__main__":
    main()
