"""A user's own data, the way a user brings it (issue #29): a plain JSONL of questions and answers about an invented
organisation (Meridian Clinics: billing codes, on-call doctors, supply vendors, desk extensions), each fact asked
in several wordings and asked again later; with ``--updates`` a share of the facts change mid-stream, and the rows
after a change carry ``replaces`` (the old value), as a system that changed the fact would say.

It writes each seed's stream as ``tasks.jsonl`` beside an ``ace.toml`` with the settings documented for a user's
JSONL (``docs/loop.md``: the exact evaluator, one answer per question, and the roles' defaults: on the embedded
model, ``run.roles = "auto"`` gives copy-friendly curation, focus and copied answers) and
runs ``ace run`` on it (Base, ICL with as many previous examples as fit the budget, episodic retrieval, the nearest
earlier episode's answer with no model, ACE online), then prints per method the mean and range over the seeds, and
for ACE the bullets per distinct fact and, with updates, the accuracy on questions after a change against questions
about facts that never changed, on the questions after the one whose feedback announced the change (all seeds
pooled), and the bullets still stating a superseded value.

    flock /tmp/ace-model.lock python benchmarks/learning/user_family.py --seeds 1 2 3 --out /tmp/user-family
    flock /tmp/ace-model.lock python benchmarks/learning/user_family.py --seeds 1 2 3 --updates 0.3 --out /tmp/upd

The family is generated here and nowhere else in the project; the bars of #29 are judged on families the project
has not seen, so treat these figures as the project's own measurement, not the held-out one.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLINICS = ["Harrow", "Linden", "Ostrava", "Quarry Hill", "Saltash", "Verne", "Wexley", "Yarrow"]
PROCEDURES = ["knee MRI", "flu vaccination", "blood panel", "dental cleaning", "ECG", "hearing test"]
DEPARTMENTS = ["cardiology", "dermatology", "oncology", "pediatrics", "radiology", "urology"]
FIRST = ["Amara", "Bastian", "Corin", "Delphine", "Emeka", "Farah", "Gideon", "Hana", "Ines", "Jonah", "Kaia", "Lior"]
LAST = ["Abbot", "Brandt", "Castell", "Dunmore", "Ekwueme", "Fairlie", "Galloway", "Hartigan", "Iversen", "Jovanovic"]
SUPPLIES = ["surgical gloves", "saline bags", "bandage rolls", "syringes", "face masks"]
REGIONS = ["the north region", "the coast region", "the valley region", "the capital region"]
VENDORS = ["Alder Medical", "Brightline Supply", "Cobalt Health", "Dovetail Clinical", "Everpine Goods",
           "Foxglove Direct", "Granite Medics", "Heron Supplies", "Ivory Care", "Juniper Wholesale",
           "Kestrel Medical", "Lumen Supply", "Marlow Health", "Northfield Clinical", "Orchid Supplies",
           "Pioneer Medics", "Quill Care", "Rowan Medical", "Sable Supply", "Tamarind Health"]  # fmt: skip


@dataclass(frozen=True)
class Fact:
    key: str
    value: str
    questions: tuple[str, ...]
    kind: str  # how a new value is drawn when the fact changes


def facts(rng: random.Random) -> list[Fact]:
    used: set[str] = set()

    def code(prefix: str, digits: int = 4) -> str:
        while (c := f"{prefix}-{rng.randrange(10 ** (digits - 1), 10**digits)}") in used:
            pass
        used.add(c)
        return c

    found = []
    for clinic in CLINICS:
        for proc in PROCEDURES:
            found.append(Fact(f"billing:{clinic}:{proc}", code("BC"), (
                f"Which billing code does a {proc} at the {clinic} clinic use?",
                f"A patient gets a {proc} at {clinic}. What do we bill it under?",
                f"What is the billing code for the {proc} at {clinic}?"), "BC"))  # fmt: skip
    doctors = [f"Dr. {f} {la}" for f in FIRST for la in LAST]
    rng.shuffle(doctors)
    for dept in DEPARTMENTS:
        for when in ("weekdays", "weekends"):
            found.append(Fact(f"oncall:{dept}:{when}", doctors.pop(), (
                f"Who is on call for {dept} on {when}?",
                f"A {dept} emergency comes in on {when}. Which doctor do we page?",
                f"Which doctor covers {dept} calls on {when}?"), "doctor"))  # fmt: skip
    vendors = list(VENDORS)
    rng.shuffle(vendors)
    for supply in SUPPLIES:
        for region in REGIONS[:2]:
            found.append(Fact(f"vendor:{supply}:{region}", vendors.pop(), (
                f"Which vendor supplies {supply} to {region}?",
                f"We are out of {supply} in {region}. Who do we order from?",
                f"Who is the contracted vendor for {supply} in {region}?"), "vendor"))  # fmt: skip
    for clinic in CLINICS[:4]:
        for dept in DEPARTMENTS[:3]:
            found.append(Fact(f"ext:{clinic}:{dept}", code("x", 4).replace("x-", "x"), (
                f"What is the phone extension of the {dept} desk at {clinic}?",
                f"I need to call {dept} at the {clinic} clinic. Which extension?",
                f"Which extension reaches the {dept} desk in {clinic}?"), "ext"))  # fmt: skip
    return found


def stream(seed: int, n_facts: int, n_questions: int, updates: float) -> list[dict[str, Any]]:
    """The rows of one seed's JSONL: each fact first asked somewhere in the first 40 %, then asked again in other
    words; with ``updates``, that share of the facts changes once, after its first asking, and later rows expect
    the new value and say what it replaces."""
    rng = random.Random(f"meridian-{seed}")
    pool = facts(rng)
    chosen = rng.sample(pool, n_facts)
    intro = max(n_facts, int(n_questions * 0.4))
    first = sorted([0, *rng.sample(range(1, intro), n_facts - 1)])  # the stream opens with a first asking
    order: list[Fact | None] = [None] * n_questions
    for pos, f in zip(first, chosen, strict=True):
        order[pos] = f
    changing = set(rng.sample([f.key for f in chosen], round(updates * n_facts))) if updates else set()
    change_at = {k: rng.randrange(intro, n_questions - max(3, n_questions // 8)) for k in changing}
    values = {f.key: f.value for f in chosen}
    old: dict[str, str] = {}
    seen: list[Fact] = []
    rows = []
    last: dict[str, int] = {}
    for i in range(n_questions):
        slot = order[i]
        f = slot if slot is not None else rng.choice(seen)
        if slot is not None:
            seen.append(f)
        for k, at in change_at.items():
            if i == at and k not in old:
                old[k] = values[k]
                fact = next(c for c in chosen if c.key == k)
                values[k] = new_value(fact, rng, set(values.values()))
        wording = rng.choice([n for n in range(len(f.questions)) if n != last.get(f.key)])
        last[f.key] = wording
        row: dict[str, Any] = {"id": f"meridian-{seed}:{i + 1:04d}", "input": f.questions[wording],
                               "target": values[f.key], "fact": f.key}  # fmt: skip
        if f.key in old:
            row["replaces"] = old[f.key]
        rows.append(row)
    return rows


def new_value(fact: Fact, rng: random.Random, taken: set[str]) -> str:
    while True:
        if fact.kind == "BC":
            v = f"BC-{rng.randrange(1000, 10000)}"
        elif fact.kind == "ext":
            v = f"x{rng.randrange(1000, 10000)}"
        elif fact.kind == "doctor":
            v = f"Dr. {rng.choice(FIRST)} {rng.choice(LAST)}"
        else:
            v = f"{rng.choice(VENDORS).split()[0]} {rng.choice(['Partners', 'Group', 'Logistics'])}"
        if v not in taken:
            return v


CONFIG = """name = "{name}"
provider = "{provider}"
db = "sqlite:///{db}"
evaluator = "exact"

[data]
test = "tasks.jsonl"
kind = "jsonl"

[loop]
max_rounds = 1
playbook_budget = 1000
max_tokens = 128
{loop}
[run]
protocols = {protocols}
labels = [true]
icl_shots = "fit"
icl_source = "previous"
roles = "{roles}"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--facts", type=int, default=16)
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--updates", type=float, default=0.0, help="share of the facts that change mid-stream")
    ap.add_argument("--provider", default="local")
    ap.add_argument("--protocols", default='["base", "icl", "retrieval", "nearest", "online"]')
    ap.add_argument("--roles", choices=["auto", "paper", "embedded"], default="auto",
                    help="the roles' settings ([run] roles): 'paper' for the paper's free-text roles")  # fmt: skip
    ap.add_argument("--loop", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more [loop] settings, in TOML (e.g. curator_content='\"grounded\"' focus=3)")  # fmt: skip
    ap.add_argument("--streams", type=Path, nargs="+", default=None, metavar="JSONL",
                    help="measure these streams (rows with input, target and, for the analysis, fact and replaces: "
                         "a family of your own) instead of generating the clinic family; one per 'seed'")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="a directory for the data, configs, runs and results")
    args = ap.parse_args()
    from rich.console import Console

    from ace.app.experiments import RunConfig, run_config
    from ace.runs.runners import facts_held
    from ace.store import PlaybookStore
    from ace.tasks import load_tasks

    results, updated = [], bool(args.updates)
    given = {path.stem: path for path in args.streams or []}
    for seed in given or args.seeds:
        work = args.out / f"seed-{seed}"
        work.mkdir(parents=True, exist_ok=True)
        if given:
            rows = [json.loads(line) for line in given[seed].read_text(encoding="utf-8").splitlines() if line.strip()]
            for row in rows:
                row.setdefault("fact", row["target"])  # no fact key: a fact is its first answer
        else:
            rows = stream(seed, args.facts, args.questions, args.updates)
        updated = updated or any("replaces" in r for r in rows)
        (work / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        cfg_path = work / "ace.toml"
        name = str(seed) if given else f"meridian-{seed}"  # a given stream's name is its file's
        cfg_path.write_text(CONFIG.format(name=name, provider=args.provider, db=work / "store.db",
                                          protocols=args.protocols, roles=args.roles,
                                          loop="".join(f"{kv}\n" for kv in args.loop)), encoding="utf-8")  # fmt: skip
        cfg = RunConfig.load(cfg_path)
        with (work / "out.txt").open("w", encoding="utf-8") as log:
            # the run's files under --out (a run id reused elsewhere would resume from that run's cassette)
            summary = run_config(cfg, Console(file=log, width=160), run_id=name, data_dir=work)
        found: dict[str, Any] = {"seed": seed, "methods": {}}
        changed = [i for i, r in enumerate(rows) if "replaces" in r]
        # the first question after a change is the one whose feedback announces it (nothing could know before): the
        # questions after the announcement are what a learner that took the update answers
        announced = {}
        for i in changed:
            announced.setdefault(rows[i]["fact"], i)
        after = [i for i in changed if i != announced[rows[i]["fact"]]]
        steady_keys = {r["fact"] for r in rows} - {r["fact"] for r in rows if "replaces" in r}
        steady = [i for i, r in enumerate(rows) if r["fact"] in steady_keys and i >= min(changed, default=0)]
        for row in summary["rows"]:
            outcomes = row.get("outcomes") or []
            entry = {"accuracy": row["accuracy"], "tokens": row["adapt_tokens"] + row["eval_tokens"]}
            if changed and outcomes:
                entry["after_change"] = sum(bool(outcomes[i]) for i in changed) / len(changed)
                entry["unchanged_same_period"] = sum(bool(outcomes[i]) for i in steady) / max(1, len(steady))
                entry["after_announced"] = [bool(outcomes[i]) for i in after]
            if row.get("curation"):
                entry["curation"] = row["curation"]
            if row["method"] == "ACE online" and row.get("playbook"):
                store = PlaybookStore(cfg.db)
                pb = store.load(row["playbook"], namespace=cfg.namespace)
                entry["facts"] = facts_held(pb, load_tasks(work / "tasks.jsonl")).to_dict()
                superseded = {r["replaces"].casefold() for r in rows if "replaces" in r}
                entry["stale_bullets"] = sum(1 for b in pb if any(v in b.content.casefold() for v in superseded))
                entry["bullets"] = len(pb)
                store.close()
            found["methods"][row["method"]] = entry
        results.append(found)
        print(json.dumps(found), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    methods = list(results[0]["methods"])
    if given:
        print(f"\n{len(results)} streams: {', '.join(given)}")
    else:
        print(f"\n{len(results)} seeds, {args.facts} facts, {args.questions} questions, updates {args.updates:.0%}")
    for m in methods:
        accs = [r["methods"][m]["accuracy"] or 0.0 for r in results]
        line = f"{m:18s} {statistics.mean(accs):6.1%}  (range {min(accs):.1%}-{max(accs):.1%})"
        if "after_change" in results[0]["methods"][m]:
            ac = statistics.mean(r["methods"][m]["after_change"] for r in results)
            un = statistics.mean(r["methods"][m]["unchanged_same_period"] for r in results)
            line += f"  after a change {ac:.1%}, unchanged facts same period {un:.1%}"
            told = [x for r in results for x in r["methods"][m].get("after_announced", [])]
            if told:
                line += f", after the change was announced {sum(told) / len(told):.1%} of {len(told)}"
        if m == "ACE online":
            per = [r["methods"][m]["facts"]["per_fact"] or 0 for r in results]
            line += f"  bullets per fact {statistics.mean(per):.2f} (max {max(per):.2f})"
            if updated:
                line += f"  stale bullets {sum(r['methods'][m]['stale_bullets'] for r in results)}"
            cur = [r["methods"][m].get("curation") or {} for r in results]
            curated = sum(c.get("curated", 0) for c in cur)
            if curated:
                refused, still = sum(c.get("refused", 0) for c in cur), sum(c.get("still_refused", 0) for c in cur)
                line += f"  curator deltas refused {refused / curated:.0%}, still refused {still / curated:.0%}"
        print(line)


if __name__ == "__main__":
    main()
