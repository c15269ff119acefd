#!/usr/bin/env python
"""The relevant bullets at read time (issue #29, item 3): ``render(pb, query=..., budget=...)``.

(a) **Speed.** A playbook of N invented facts (1k and 10k bullets); the first query render on a fresh playbook
object (the relevance index and the core's render are built then), then p50 / p99 / max over ``--queries`` fresh
question strings (a fact's question in one of its wordings, each with its own ticket number), for both layouts at
the prompt's budget (2,000 tokens), and the same through ``Service.prompt`` on a real SQLite store.

(b) **What fits.** A family of ``--facts`` distinct facts (10 relations x 50 places; each relation has two
wordings for the bullet and three for the question), a playbook holding one bullet per fact in the form the loop's
copy-friendly curation writes (``"<subject> → <value>"``, ``ace.playbook.focus.fact``; some of them tagged helpful or
harmful), and one question per fact asked in other words. Under a ``--budget`` of 600 tokens, how many
questions have their fact's value inside the rendered text: the budget-ranked render (no query) against
``render(query=question)``, both layouts. With ``--model N``, the embedded model also answers N of the questions
from each text (copy answers, ``ace.loop.roles.calls.generate``: the answer is chosen among the values of the
shown bullets most relevant to the question); wrap it in ``flock /tmp/ace-model.lock``.

    python benchmarks/perf/bench_query_render.py --sizes 1000 10000 --queries 1000
    flock /tmp/ace-model.lock python benchmarks/perf/bench_query_render.py --sizes --model 100
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ace.playbook import Bullet, Playbook, approx_tokens, render
from ace.playbook.focus import fact
from ace.playbook.query import relevant
from ace.playbook.render import LAYOUTS

_WORDS = {
    "syllables": "ka ro vi na sel"
    " mor tun bel dra fen gal hol is jor kel lun mar nor os pel quin rav sun tor ul vek wyn",
    "first": "Ingrid Tomas Aino Pavel Leila Marco Sofia Yusuf Hana Oskar Mei Rafael Elin Dmitri Noor Kaito",
    "last": "Moe Varga Lind Okafor Haddad Costa Berg Tanaka Novak Falk Ruiz Sato Holm Petrov Amari Quist",
}
SYLLABLES, FIRST, LAST = (_WORDS[k].split() for k in ("syllables", "first", "last"))


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


@dataclass(frozen=True)
class Relation:
    """One kind of fact: how a value is made, how a bullet states it, how a question asks for it."""

    name: str
    value: Callable[[random.Random], str]
    bullets: tuple[str, ...]  # a fact bullet's subject: the bullet is "<subject> → <value>"
    questions: tuple[str, ...]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice('ABCDEFGHJKLMNPRSTV')}. {rng.choice(LAST)}{rng.choice(['', 'sen', 'ova'])}"


RELATIONS = (
    Relation("ledger", lambda r: f"LC-{r.randrange(1000, 10000)}",
             ("Ledger code for refunds from {s}", "Refunds from {s} are booked under ledger code"),
             ("Which ledger code do refunds originating in {s} go to?",
              "Under what code is a refund for a {s} customer booked?",
              "If a customer in {s} gets their money back, which ledger code applies?")),
    Relation("carrier", lambda r: f"{_name(r, r.choice([2, 3]))} Freight",
             ("Carrier for parcels shipped to {s}", "Deliveries to {s} go with carrier"),
             ("Which carrier delivers parcels to {s}?", "Who transports packages bound for {s}?",
              "What shipping company do we use for deliveries to {s}?")),
    Relation("approver", _person,
             ("Invoices from {s} are approved by", "Approver of every invoice issued in {s}"),
             ("Who approves invoices from {s}?", "Whose sign-off does an invoice from {s} need?",
              "Which person must approve billing documents from {s}?")),
    Relation("warehouse", lambda r: f"WH-{r.randrange(100, 1000)}{r.choice('ABCDEFGH')}",
             ("Warehouse that keeps the stock for {s}", "Inventory for {s} is stored in warehouse"),
             ("Where is the inventory for {s} stored?", "Which warehouse holds the stock for {s}?",
              "From which warehouse are goods for {s} picked?")),
    Relation("queue", lambda r: f"Q-{_name(r, 1).upper()}-{r.randrange(10, 100)}",
             ("Support tickets raised in {s} go to queue", "Queue for the support tickets from {s}"),
             ("Which queue receives support requests from {s}?", "Where do help tickets opened in {s} land?",
              "A customer in {s} files a support ticket: which queue gets it?")),
    Relation("cutoff", lambda r: f"{r.randrange(0, 24):02d}:{r.randrange(0, 60):02d}:{r.randrange(0, 60):02d}",
             ("Orders from {s} must be placed before (UTC)", "Daily order cutoff for {s} (UTC)"),
             ("By what time must customers in {s} place their orders?", "What is the order deadline for {s}?",
              "Until when can {s} order for same-day processing?")),
    Relation("port", lambda r: f"Port {_name(r, r.choice([2, 3]))}",
             ("Freight for {s} leaves from", "Port where cargo bound for {s} is loaded"),
             ("From which port does freight for {s} depart?", "Where is cargo for {s} loaded?",
              "Which harbour ships goods to {s}?")),
    Relation("manager", _person,
             ("Account manager for {s}", "Clients in {s} are managed by"),
             ("Who is the account manager for {s}?", "Which colleague looks after clients in {s}?",
              "Who handles the {s} accounts?")),
    Relation("tax", lambda r: f"TX-{r.choice('KLMNPRST')}{r.randrange(100, 1000)}",
             ("Tax code for sales in {s}", "Every sale made in {s} is taxed under tax code"),
             ("What tax code applies to sales in {s}?", "Which tax code goes on a sale in {s}?",
              "How is a sale in {s} coded for tax?")),
    Relation("promo", lambda r: f"PROMO{r.choice('ABCDEFGHJK')}{r.choice('LMNPQRSTUV')}{r.randrange(10, 100)}",
             ("Customers in {s} get promo code", "Promo code reserved for customers in {s}"),
             ("Which promo code do customers in {s} receive?", "What discount code is given to clients in {s}?",
              "Which promotional code belongs to {s}?")),
)  # fmt: skip


@dataclass(frozen=True)
class Fact:
    relation: Relation
    subject: str
    value: str
    bullet: str  # the bullet's content
    question: str  # asked in other words


def facts(n: int, seed: int) -> list[Fact]:
    """``n`` distinct facts: ``n / 10`` places, each with one fact of every relation; every value is unique."""
    rng = random.Random(seed)
    places: list[str] = []
    while len(places) < -(-n // len(RELATIONS)):
        place = _name(rng, rng.choice([2, 3]))
        if place not in places:
            places.append(place)
    seen: set[str] = set()
    out: list[Fact] = []
    for place in places:
        for rel in RELATIONS:
            value = rel.value(rng)
            for _ in range(1000):  # the value spaces are far larger than 10k facts need
                if value not in seen:
                    break
                value = rel.value(rng)
            else:
                raise SystemExit(f"no new {rel.name} value left: too many facts")
            seen.add(value)
            bullet = fact(rng.choice(rel.bullets).format(s=place), value)
            out.append(Fact(rel, place, value, bullet, rng.choice(rel.questions).format(s=place)))
    out = out[:n]
    rng.shuffle(out)
    return out


def playbook(family: list[Fact], seed: int) -> Playbook:
    """One bullet per fact, in one section per relation kind (as a curator files them); some tagged."""
    rng = random.Random(seed + 1)
    sections: dict[str, list[Bullet]] = {}
    for n, f in enumerate(family, 1):
        helpful = rng.choice([0, 0, 0, 1, 2, 3])
        harmful = rng.choice([0] * 9 + [1])
        slug = f.relation.name[:3]
        b = Bullet(f"{slug}-{n:05d}", f.relation.name.upper(), f.bullet, helpful=helpful, harmful=harmful,
                   updated_step=n)  # fmt: skip
        sections.setdefault(b.section, []).append(b)
    return Playbook.from_sections(list(sections.items()))


def shows(text: str, value: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", text) is not None


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- (a) speed ------------------------------------------------------------------------------------------------------
def speed(sizes: list[int], queries: int, budget: int, seed: int) -> None:
    print(f"(a) render(query=...) at the prompt budget ({budget} tokens); ms per call, {queries} fresh queries")
    print("| bullets | layout | first call (index + core) | p50 | p99 | max | no query (memoized, µs) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        family = facts(n, seed)
        rng = random.Random(seed + 7)
        asked = [f"{rng.choice(family).question} (ticket {rng.randrange(10**6)})" for _ in range(queries)]
        for layout in LAYOUTS[::-1]:  # stable first
            pb = playbook(family, seed)  # a fresh object: nothing derived yet
            gc.collect()
            t0 = time.perf_counter()
            render(pb, budget=budget, layout=layout, query=asked[0])
            first = (time.perf_counter() - t0) * 1000
            times = []
            for q in asked[1:]:
                t0 = time.perf_counter()
                render(pb, budget=budget, layout=layout, query=q)
                times.append((time.perf_counter() - t0) * 1000)
            render(pb, budget=budget, layout=layout)
            t0 = time.perf_counter()
            for _ in range(100):
                render(pb, budget=budget, layout=layout)
            plain = (time.perf_counter() - t0) * 10_000
            print(f"| {n:,} | {layout} | {first:.0f} | {statistics.median(times):.2f} | {pct(times, 0.99):.2f} | "
                  f"{max(times):.2f} | {plain:.1f} |")  # fmt: skip
        _service(family, asked, budget, seed)


def _service(family: list[Fact], asked: list[str], budget: int, seed: int) -> None:
    """The same reads through ``Service.prompt`` on a real SQLite store (what the HTTP read, MCP and the hooks do)."""
    from ace.service.auth import Grant
    from ace.service.core import Service
    from ace.store import PlaybookStore

    with tempfile.TemporaryDirectory() as tmp:
        store = PlaybookStore(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.create("facts", playbook(family, seed), namespace="bench")
        svc, grant = Service(store), Grant.local("bench", ["bench"])
        t0 = time.perf_counter()
        svc.prompt(grant, "bench", "facts", budget=budget, query=asked[0])
        first = (time.perf_counter() - t0) * 1000
        times = []
        for q in asked[1:]:
            t0 = time.perf_counter()
            svc.prompt(grant, "bench", "facts", budget=budget, query=q)
            times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        for _ in range(100):
            svc.prompt(grant, "bench", "facts", budget=budget)
        plain = (time.perf_counter() - t0) * 10_000
        p50, p99 = statistics.median(times), pct(times, 0.99)
        print(f"| {len(family):,} | Service.prompt (stable, SQLite store) | {first:.0f} | {p50:.2f} | {p99:.2f} | "
              f"{max(times):.2f} | {plain:.1f} |")  # fmt: skip


# -- (b) what fits ---------------------------------------------------------------------------------------------------
def fits(n: int, budget: int, seed: int, model: int) -> None:
    family = facts(n, seed)
    pb = playbook(family, seed)
    print(f"\n(b) {len(family)} facts, one bullet each ({approx_tokens(render(pb)):,} tokens in all), {budget}-token "
          f"budget: questions whose fact's value is in the rendered text")  # fmt: skip
    print("| layout | budget-ranked (no query) | render(query=question) | ratio | fact's bullet ranked first |")
    print("|---|---|---|---|---|")
    top1 = sum(bool((r := relevant(pb, f.question)) and r[0][0].content == f.bullet) for f in family)
    texts: dict[str, tuple[str, list[str]]] = {}
    for layout in LAYOUTS[::-1]:
        plain = render(pb, budget=budget, layout=layout)
        with_query = [render(pb, budget=budget, layout=layout, query=f.question) for f in family]
        assert approx_tokens(plain) <= budget and all(approx_tokens(t) <= budget for t in with_query)
        base = sum(shows(plain, f.value) for f in family)
        got = sum(shows(t, f.value) for f, t in zip(family, with_query, strict=True))
        texts[layout] = (plain, with_query)
        ratio = f"{got / base:.1f}x" if base else "inf"
        print(f"| {layout} | {base} ({base / len(family):.1%}) | {got} ({got / len(family):.1%}) | {ratio} | "
              f"{top1} ({top1 / len(family):.1%}) |")  # fmt: skip
    if model:
        answered(family, pb, texts["stable"], model, seed)


def answered(family: list[Fact], pb: Playbook, texts: tuple[str, list[str]], k: int, seed: int) -> None:
    """The embedded model answers ``k`` questions from each stable-layout text (copy answers)."""
    from ace.llm import LLM, Sampling, get_provider
    from ace.loop.roles.calls import generate
    from ace.tasks import Task

    llm = LLM(get_provider("local"), sampling=Sampling(max_tokens=128))
    picked = sorted(random.Random(seed + 3).sample(range(len(family)), k))
    plain, with_query = texts
    started = time.perf_counter()
    print(f"\nthe embedded model answers {k} of the questions from each text (stable layout; copy answers, focus 3):")
    for label in ("budget-ranked", "render(query=...)"):
        right = 0
        for i in picked:
            f = family[i]
            text = plain if label == "budget-ranked" else with_query[i]
            ids = set(re.findall(r"^\[([A-Za-z0-9][A-Za-z0-9_.:-]*)\] ", text, re.M))
            shown = Playbook.from_sections([(name, [pb[j] for j in sec.ids if j in ids])
                                            for name, sec in pb.sections.items()])  # fmt: skip
            task = Task(id=f"q{i}", input=f.question, target=f.value)
            res = generate(llm, task, shown, context=f"PLAYBOOK:\n{text}", focus=3, copy=True, layout="stable")
            right += res.parsed is not None and res.parsed.final_answer.strip() == f.value
        print(f"  {label}: {right}/{k} right ({right / k:.0%})")
    print(f"  model time {time.perf_counter() - started:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000], help="playbook sizes for (a); none: skip")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--prompt-budget", type=int, default=2000, help="the budget of (a)")
    ap.add_argument("--facts", type=int, default=500)
    ap.add_argument("--budget", type=int, default=600, help="the budget of (b)")
    ap.add_argument("--model", type=int, default=0, help="questions the embedded model answers per text (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.sizes:
        speed(args.sizes, args.queries, args.prompt_budget, args.seed)
    if args.facts:
        fits(args.facts, args.budget, args.seed, args.model)


if __name__ == "__main__":
    main()
