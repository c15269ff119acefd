"""Four agents learn apart on branches and merge into one (issue #24, item 7), on the embedded model.

One conventions stream (``ace.tasks.conventions``) is split by fact into ``--agents`` disjoint shares; each agent
learns its share on a branch of the playbook (``store.branch``), with the loop's conventions settings; then every
branch is merged into the playbook (``store.merge``: by delta, three-way from the fork point), and merged a second
time (a no-op). It prints, and writes as JSON with ``--out``: the bullets of each branch and of the merge, the
conflicts listed, whether ``verify`` passes on every playbook, whether every bullet a branch learned is in the merge
(by text), and the lane accuracy (one question per wording, up to ``--per-fact``, of every fact of the stream; true
values) of the start, of each branch and of the merge.

    flock /tmp/ace-model.lock python benchmarks/governance/branches_demo.py --seed 0 \
        --out benchmarks/governance/results/branches.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ace.governance.trials import answer
from ace.llm import LLM, Sampling, get_provider
from ace.loop import LoopConfig
from ace.playbook import Playbook
from ace.runs.factory import RunSetup, start
from ace.store import PlaybookStore
from ace.tasks import Task
from ace.tasks.conventions import conventions, conventions_facts, conventions_stream

NAMESPACE, NAME = "bench", "house-rules"
CONFIG = LoopConfig(max_rounds=1, playbook_budget=1000, focus=3, answers="copy", curation="facts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--facts", type=int, default=12)
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--per-fact", type=int, default=2)
    ap.add_argument("--provider", default="local")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    stream = conventions_stream(args.seed, facts=args.facts, questions=args.questions)
    keys = list(dict.fromkeys(str(t.metadata["fact"]) for t in stream))
    share = {key: i % args.agents for i, key in enumerate(keys)}  # each fact learned by one agent only
    by_key = {f.key: f for f in conventions_facts(args.seed)}
    lane = [Task(id=f"lane-{k}-{i}", input=q, target=by_key[k].value, metadata={"kind": "conventions"})
            for k in keys for i, q in enumerate(by_key[k].questions[: args.per_fact])]  # fmt: skip
    llm = LLM(get_provider(args.provider), sampling=Sampling(max_tokens=128))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ace-branches-") as tmp:
        store = PlaybookStore(f"sqlite:///{Path(tmp) / 'store.db'}")
        store.create(NAME, Playbook.empty(), namespace=NAMESPACE, author="bench", message="empty start")

        def lane_score(name: str) -> float:
            book = store.load(name, namespace=NAMESPACE)
            return sum(bool(answer(llm, t, book, "x", conventions, CONFIG).correct) for t in lane) / len(lane)

        found: dict[str, Any] = {"seed": args.seed, "agents": args.agents, "facts": len(keys), "lane": len(lane),
                                 "stream": len(stream), "start": lane_score(NAME), "branches": []}  # fmt: skip
        for a in range(args.agents):
            branch = f"agent-{a + 1}"
            store.branch(NAME, branch, namespace=NAMESPACE, author=branch)
            tasks = [t for t in stream if share[str(t.metadata["fact"])] == a]
            setup = RunSetup(llm=llm, store=store, playbook=branch, namespace=NAMESPACE, evaluator=conventions,
                             config=CONFIG)  # fmt: skip
            result = start(setup, tasks, run_id=branch, workdir=Path(tmp) / "runs")
            pb = store.load(branch, namespace=NAMESPACE)
            found["branches"].append({"branch": branch, "episodes": len(tasks), "bullets": len(pb),
                                      "versions": store.head_version(branch, namespace=NAMESPACE),
                                      "online_accuracy": result.accuracy, "lane": lane_score(branch)})  # fmt: skip
            print(json.dumps(found["branches"][-1]), flush=True)
        merges, again = [], []
        for a in range(args.agents):
            m = store.merge(f"agent-{a + 1}", into=NAME, namespace=NAMESPACE, author="bench")
            merges.append(m.to_dict())
        for a in range(args.agents):
            before = store.head_version(NAME, namespace=NAMESPACE)
            store.merge(f"agent-{a + 1}", into=NAME, namespace=NAMESPACE, author="bench")
            again.append(store.head_version(NAME, namespace=NAMESPACE) == before)
        merged = store.load(NAME, namespace=NAMESPACE)
        texts = {b.content for b in merged}
        learned = {b.content for a in range(args.agents) for b in store.load(f"agent-{a + 1}", namespace=NAMESPACE)}
        verified = all(store.verify(n, namespace=NAMESPACE) > 0 for n in [NAME] + [f"agent-{a + 1}" for a in
                                                                                  range(args.agents)])  # fmt: skip
        found.update({
            "merged_bullets": len(merged), "lost": sorted(learned - texts),
            "conflicts": [c for m in merges for c in m.get("conflicts", [])],
            "second_merge_noop": all(again), "verify": verified, "merged_lane": lane_score(NAME),
            "merges": merges, "tokens": llm.ledger.usage.total_tokens, "wall_s": round(time.perf_counter() - t0, 1),
        })  # fmt: skip
        store.close()
    print(f"start lane {found['start']:.0%}; branches: "
          + ", ".join(f"{b['branch']} {b['bullets']} bullets lane {b['lane']:.0%}" for b in found["branches"])
          + f"; merged {found['merged_bullets']} bullets, lane {found['merged_lane']:.0%}, {len(found['lost'])} lost, "
          f"{len(found['conflicts'])} conflict(s), second merge a no-op: {found['second_merge_noop']}, verify: "
          f"{found['verify']}; {found['tokens']} tokens, {found['wall_s']} s")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
