#!/usr/bin/env python
"""How far adding bullets one by one can get: the floor under ``apply`` of one parsed ADD delta per bullet.

The floor does only what any validated add must do, with no versioning at all: parse the curator's delta
(``Delta.parse``), clean the section name and the content (``clean_text``), run the quality gate
(``content_problem``: word count and prompt-injection patterns), make the ``Bullet``, and put it in three mutable
HAMT transients (the id map and the two order maps a section keeps). No new playbook per add, no resolved delta,
no digest carried, no patch. Printed per add, beside what ``apply`` costs for the same bullets and, with
``--peer kayba_ops.json``, the peer's ``add_skill`` (which takes Python arguments and checks nothing):

    python benchmarks/perf/bench_add_floor.py --n 100000 --peer kayba_ops.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import immutables

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_playbook import content

from ace.playbook import Delta, Playbook, apply
from ace.playbook.model import Bullet
from ace.playbook.quality import QualityRules, content_problem
from ace.playbook.text import clean_text


def floor(n: int, *, parse: bool) -> float:
    rules = QualityRules()
    bullets = immutables.Map[str, Bullet]().mutate()
    order = immutables.Map[int, str]().mutate()
    pos = immutables.Map[str, int]().mutate()
    gc.collect()
    t = time.perf_counter()
    for i in range(n):
        if parse:
            op = Delta.parse({"operations": [{"type": "ADD", "section": "context", "content": content(i)}]})
            section, text = op.operations[0].section, op.operations[0].content  # type: ignore[union-attr]
        else:
            section, text = "context", content(i)
        section = clean_text(section, limit=200, what="section", single_line=True)
        text = clean_text(text, limit=4000)
        if (why := content_problem(text, rules)) is not None:
            raise ValueError(why)
        bid = f"cont-{i:05d}"
        bullets[bid] = Bullet(bid, section, text)
        order[i] = bid
        pos[bid] = i
    elapsed = time.perf_counter() - t
    assert len(bullets.finish()) == n
    return elapsed / n


def one_by_one(n: int) -> float:
    gc.collect()
    t = time.perf_counter()
    pb = Playbook.empty()
    for i in range(n):
        d = Delta.parse({"operations": [{"type": "ADD", "section": "context", "content": content(i)}]})
        pb = apply(pb, d).playbook
    elapsed = time.perf_counter() - t
    assert len(pb) == n
    return elapsed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--peer", type=Path, help="kayba_ops.json from ../shared/peers/kayba_ops.py, run just before")
    args = ap.parse_args()
    n = args.n
    print(f"python {sys.version.split()[0]}; {n:,} bullets, microseconds per add")
    print(f"  floor, no parse (typed input):           {floor(n, parse=False) * 1e6:6.1f}")
    print(f"  floor, one parsed delta per bullet:      {floor(n, parse=True) * 1e6:6.1f}")
    print(f"  apply, one parsed delta per bullet:      {one_by_one(n) * 1e6:6.1f}")
    if args.peer:
        rows = json.loads(args.peer.read_text())["results"]
        peer = next((r for r in rows if r.get("n") == n), None)
        if peer:
            print(f"  peer add_skill (with source), same n:    {peer['add_skill_x_n_with_source_s'] / n * 1e6:6.1f}")


if __name__ == "__main__":
    main()
