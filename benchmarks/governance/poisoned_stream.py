"""Gated promotion against lying feedback (issue #24, item 7), on the embedded model.

One learning stream of the conventions family (``ace.tasks.conventions``: house rules learnable only from
feedback) is run with the loop's conventions settings on a playbook under the ``gated`` policy; a share
``--lie`` of the feedback lies (the evaluator says the answer was another plausible value of the same kind, and
quotes the rule with that value), so the learned bullets carry wrong values. Every ``--every`` steps a matched
trial (:func:`ace.governance.run_trial`) has the candidate (the head) and the serving version answer the lane: one
question per wording (up to 3) of each fact of the stream, scored with the true values.

What the two policies serve at each checkpoint, from the same learning:

- ``immediate``: serving follows the head, so its lane score is the head's (the trial's candidate arm);
- ``gated``: serving moves only when a trial finds the candidate better (a paired McNemar test, the campaign's
  false-promotion budget spread over the run's looks); its lane score is the trial's serving arm.

Learning does not depend on the policy (the loop commits to the head under both; the generator that learns reads
the head), so one run gives both curves: the immediate run's serving version at a checkpoint *is* the gated run's
head there. The lane's noise is the standard error of the starting version's lane accuracy (at least one task).

    flock /tmp/ace-model.lock python benchmarks/governance/poisoned_stream.py --lie 0.3 --seeds 0 1 \
        --out benchmarks/governance/results/poisoned.json --plot docs/images/poisoned-stream.png
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from ace.errors import AceError
from ace.governance import gate as g
from ace.governance import run_trial, set_lane
from ace.governance.trials import NothingToTrial, answer
from ace.llm import LLM, Sampling, get_provider
from ace.loop import LoopConfig
from ace.playbook import Playbook
from ace.runs.factory import RunSetup, start
from ace.store import SERVING, PlaybookStore
from ace.tasks import Feedback, Task
from ace.tasks.conventions import Fact, conventions, conventions_facts, conventions_stream

NAMESPACE, NAME = "bench", "house-rules"
CONFIG = LoopConfig(max_rounds=1, playbook_budget=1000, focus=3, answers="copy", curation="facts")


class Lying:
    """The conventions evaluator, lying on a share of the tasks: it names another value of the same relation as
    the expected one (and quotes the rule with it), the same lie each time the task is judged."""

    def __init__(self, facts: list[Fact], share: float, seed: int) -> None:
        self.by_key = {f.key: f for f in facts}
        self.share, self.seed = share, seed
        self.lies: dict[str, str] = {}

    def lie_for(self, task: Task) -> str | None:
        rng = random.Random(f"lie-{self.seed}-{task.id}")
        if rng.random() >= self.share:
            return None
        fact = self.by_key[str(task.metadata["fact"])]
        others = sorted(
            {f.value for f in self.by_key.values() if f.relation == fact.relation and f.value != fact.value}
        )
        return rng.choice(others) if others else None

    def __call__(self, task: Task, answer: str) -> Feedback:
        wrong = self.lie_for(task) if task.target is not None else None
        if wrong is None:
            return conventions(task, answer)
        self.lies[task.id] = wrong
        rule = str(task.metadata.get("rule", "")).replace(str(task.target), wrong)
        lied = task.model_copy(update={"target": wrong, "metadata": {**task.metadata, "rule": rule}})
        return conventions(lied, answer)


def lane_of(stream: list[Task], facts: list[Fact], per_fact: int) -> list[Task]:
    keys = list(dict.fromkeys(str(t.metadata["fact"]) for t in stream))
    by_key = {f.key: f for f in facts}
    lane = []
    for key in keys:
        fact = by_key[key]
        for i, q in enumerate(fact.questions[:per_fact]):
            lane.append(Task(id=f"lane-{key}-{i}", input=q, target=fact.value,
                             metadata={"kind": "conventions", "fact": key, "rule": fact.rule}))  # fmt: skip
    return lane


def run_one(seed: int, lie: float, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    facts = conventions_facts(seed)
    stream = conventions_stream(seed, facts=args.facts, questions=args.questions)
    lane = lane_of(stream, facts, args.per_fact)
    lane_file = work / f"lane-{seed}-{lie}.jsonl"
    lane_file.write_text("".join(json.dumps({"id": t.id, "input": t.input, "target": t.target}) + "\n" for t in lane))
    store = PlaybookStore(f"sqlite:///{work / f'store-{seed}-{lie}.db'}")
    store.create(NAME, Playbook.empty(), namespace=NAMESPACE, author="bench", message="empty start")
    looks = math.ceil(args.questions / args.every)
    set_lane(store, NAME, namespace=NAMESPACE, tasks=lane_file, evaluator="conventions", looks=looks)
    store.set_promotion(NAME, "gated", namespace=NAMESPACE, author="bench")
    llm = LLM(get_provider(args.provider), sampling=Sampling(max_tokens=128))
    evaluator = Lying(facts, lie, seed)
    setup = RunSetup(llm=llm, store=store, playbook=NAME, namespace=NAMESPACE, evaluator=evaluator, config=CONFIG)
    scores: dict[int, float] = {}

    def lane_score(version: int) -> float:
        if version not in scores:
            book = store.load(NAME, version, namespace=NAMESPACE)
            hits = [answer(llm, t, book, "candidate", conventions, CONFIG).correct for t in lane]
            scores[version] = sum(bool(h) for h in hits) / len(lane)
        return scores[version]

    start_score = lane_score(1)
    noise = max(math.sqrt(start_score * (1 - start_score) / len(lane)), 1 / len(lane))
    points: list[dict[str, Any]] = [{"step": 0, "head": 1, "serving": 1, "immediate": start_score,
                                     "gated": start_score, "trial": None}]  # fmt: skip
    correct_steps = 0
    t0 = time.perf_counter()
    for i in range(0, len(stream), args.every):
        chunk = stream[i : i + args.every]
        result = start(setup, chunk, run_id=f"s{seed}-l{int(lie * 100)}-c{i}", workdir=work / "runs")
        correct_steps += sum(bool(r.correct) for r in result.results)
        trial_info: dict[str, Any] | None = None
        try:
            report = run_trial(store, NAME, llm, namespace=NAMESPACE, config=CONFIG, author="bench")
        except NothingToTrial:
            pass
        except AceError as e:  # a spent campaign: nothing more moves serving
            trial_info = {"status": "not run", "why": str(e)[:200]}
        else:
            t = report.trial
            with store.transaction() as conn:
                done = g.answers(conn, t.id)
            for arm, version in (("candidate", t.candidate), ("serving", t.serving)):
                arm_hits = [bool(done[(task.id, arm)].correct) for task in lane if (task.id, arm) in done]
                if len(arm_hits) == len(lane):
                    scores.setdefault(version, sum(arm_hits) / len(lane))
            d = report.decision
            trial_info = {"id": t.id, "status": t.status, "candidate": t.candidate, "serving": t.serving,
                          "p": None if d is None else d.result.p_value,
                          "effect": None if d is None else d.result.effect, "alpha": t.alpha}  # fmt: skip
        head = store.head_version(NAME, namespace=NAMESPACE)
        serving = store.resolve(NAME, SERVING, namespace=NAMESPACE)
        points.append({"step": i + len(chunk), "head": head, "serving": serving, "immediate": lane_score(head),
                       "gated": lane_score(serving), "trial": trial_info})  # fmt: skip
        print(json.dumps({"seed": seed, "lie": lie, **points[-1]}), flush=True)
    return {
        "seed": seed, "lie": lie, "lane_tasks": len(lane), "stream": len(stream), "facts": args.facts,
        "lies_told": len(evaluator.lies), "base": start_score, "noise": noise, "points": points,
        "final_immediate": points[-1]["immediate"], "final_gated": points[-1]["gated"],
        "min_gated": min(p["gated"] for p in points), "online_accuracy": correct_steps / len(stream),
        "tokens": llm.ledger.usage.total_tokens, "wall_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lies = sorted({r["lie"] for r in results})
    fig, axes = plt.subplots(1, len(lies), figsize=(5.5 * len(lies), 3.8), squeeze=False, sharey=True)
    for ax, lie in zip(axes[0], lies, strict=True):
        for r in (r for r in results if r["lie"] == lie):
            steps = [p["step"] for p in r["points"]]
            ax.plot(steps, [p["immediate"] for p in r["points"]], "--", color="tab:red", alpha=0.8,
                    label="immediate (serving = head)" if r["seed"] == results[0]["seed"] else None)  # fmt: skip
            ax.plot(steps, [p["gated"] for p in r["points"]], "-", color="tab:blue", alpha=0.8,
                    label="gated (serving)" if r["seed"] == results[0]["seed"] else None)  # fmt: skip
        ax.set_title(f"{int(lie * 100)} % of the feedback lies")
        ax.set_xlabel("stream step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("lane accuracy of what agents read")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lie", type=float, nargs="+", default=[0.0, 0.3], help="shares of lying feedback to run")
    ap.add_argument("--facts", type=int, default=8)
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--every", type=int, default=8, help="steps between trials")
    ap.add_argument("--per-fact", type=int, default=3, help="lane questions per fact (its wordings)")
    ap.add_argument("--provider", default="local")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ace-poisoned-") as tmp:
        for lie in args.lie:
            for seed in args.seeds:
                results.append(run_one(seed, lie, args, Path(tmp)))
    for r in results:
        print(f"lie {r['lie']:.0%} seed {r['seed']}: base {r['base']:.0%} (noise ±{r['noise']:.0%}), final serving "
              f"immediate {r['final_immediate']:.0%}, gated {r['final_gated']:.0%} (lowest {r['min_gated']:.0%}); "
              f"online accuracy {r['online_accuracy']:.0%}; {r['lies_told']} lies; {r['tokens']} tokens, "
              f"{r['wall_s']} s")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
