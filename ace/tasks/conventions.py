"""A task family where the context is the only source of the answer: the house rules of a fictional cooperative.

*Harbourline Freight Cooperative* (invented; nothing any model has seen) books transactions under ledger codes,
signs expenses off on forms, escalates incidents to named people, ships through contracted carriers and files
documents under retention codes. Every fact is drawn from a seeded generator, so no model can know one in advance:
the first time a fact is asked, every method fails; later questions ask the same fact again, in other wording,
next to facts that differ in one word (the same office with another transaction, the same transaction in another
office). What a method answers right on a repeat is what it kept from the feedback of an earlier question.
This is what the ACE paper's FiNER result rests on: domain knowledge accumulated in context.

- :func:`conventions_stream` returns the stream of :class:`~ace.tasks.Task` (fixed seed, no download).
- :class:`Conventions` is the environment's evaluator. With ground truth it gives the target; in execution-feedback
  mode (the target hidden) it answers as the cooperative's booking system would, naming the rule that applies:
  the fact is in the message, never in a ``target`` field.

The answer is a code or a name; the check is case- and whitespace-insensitive, and a trailing full stop or quotes
are ignored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ace.errors import ConfigError
from ace.tasks.model import Feedback, Task

ORG = "Harbourline Freight Cooperative"

_OFFICES = ["Oslo", "Bergen", "Lisbon", "Porto", "Ghent", "Tallinn", "Gdansk", "Aarhus"]
_TRANSACTIONS = ["refund", "purchase", "travel claim", "vendor invoice", "customs fee"]
_EXPENSES = ["conference trip", "laptop purchase", "client dinner", "training course", "software licence"]
_INCIDENTS = ["cold-chain breach", "lost container", "port strike", "data leak", "forklift accident"]
_REGIONS = ["the Baltic states", "Iberia", "the Benelux", "Scandinavia", "Poland"]
_CARGO = ["perishable", "hazardous", "oversized"]
_DOCUMENTS = ["bill of lading", "crew roster", "customs declaration", "safety audit", "fuel receipt"]
_FIRST = ["Ingrid", "Tomas", "Marta", "Joost", "Liis", "Piotr", "Signe", "Rui", "Anouk", "Kasper"]
_LAST = ["Vale", "Brandt", "Okafor", "Lindqvist", "Moreau", "Tamm", "Kowal", "Seixas", "Dekker", "Holm"]
_CARRIER_A = ["Brightwake", "Northmoor", "Saltmere", "Greyhaven", "Kestrel", "Tidemark", "Ashford", "Redcliff"]
_CARRIER_B = ["Haulage", "Logistics", "Transport", "Shipping", "Carriers"]


@dataclass(frozen=True)
class Fact:
    """One house rule: ``subject`` has ``relation`` equal to ``value``; ``rule`` states it as the booking system
    would; ``questions`` are the wordings it can be asked in."""

    key: str
    relation: str
    subject: str
    value: str
    rule: str
    questions: tuple[str, ...]


def _code(rng: random.Random, prefix: str, used: set[str]) -> str:
    while True:
        value = f"{prefix}-{rng.randrange(1000, 10000)}"
        if value not in used:
            used.add(value)
            return value


def _facts(rng: random.Random) -> list[Fact]:
    """Every fact of one seeded cooperative (about 150; a stream uses a sample)."""
    used: set[str] = set()
    facts: list[Fact] = []
    for office in _OFFICES:
        for txn in _TRANSACTIONS:
            code = _code(rng, "LC", used)
            facts.append(
                Fact(
                    key=f"ledger:{office}:{txn}",
                    relation="ledger code",
                    subject=f"{txn} from the {office} office",
                    value=code,
                    rule=f"a {txn} from the {office} office is booked under ledger code {code}",
                    questions=(
                        f"Which ledger code does a {txn} from the {office} office use?",
                        f"The {office} office is booking a {txn}. Under which ledger code?",
                        f"What is the ledger code for a {txn} handled by the {office} office?",
                    ),
                )
            )
    for expense in _EXPENSES:
        for limit in ("under 500 euros", "over 500 euros"):
            form = f"AF-{rng.choice('ABCDEFGHJKMNPRSTW')}{rng.randrange(10, 100)}"
            while form in used:
                form = f"AF-{rng.choice('ABCDEFGHJKMNPRSTW')}{rng.randrange(10, 100)}"
            used.add(form)
            facts.append(
                Fact(
                    key=f"form:{expense}:{limit}",
                    relation="approval form",
                    subject=f"{expense} {limit}",
                    value=form,
                    rule=f"a {expense} {limit} is approved on form {form}",
                    questions=(
                        f"Which approval form is needed for a {expense} {limit}?",
                        f"An employee wants a {expense} {limit} signed off. Which form do they file?",
                        f"What form approves a {expense} {limit}?",
                    ),
                )
            )
    names = [f"{f} {la}" for f in _FIRST for la in _LAST]
    rng.shuffle(names)
    for incident in _INCIDENTS:
        for shift in ("day shift", "night shift"):
            person = names.pop()
            facts.append(
                Fact(
                    key=f"escalation:{incident}:{shift}",
                    relation="escalation contact",
                    subject=f"{incident} on the {shift}",
                    value=person,
                    rule=f"a {incident} on the {shift} is escalated to {person}",
                    questions=(
                        f"Who is the escalation contact for a {incident} on the {shift}?",
                        f"A {incident} happens during the {shift}. Who must it be escalated to?",
                        f"To whom is a {incident} on the {shift} escalated?",
                    ),
                )
            )
    carriers = [f"{a} {b}" for a in _CARRIER_A for b in _CARRIER_B]
    rng.shuffle(carriers)
    for region in _REGIONS:
        for cargo in _CARGO:
            carrier = carriers.pop()
            facts.append(
                Fact(
                    key=f"carrier:{region}:{cargo}",
                    relation="contracted carrier",
                    subject=f"{cargo} cargo to {region}",
                    value=carrier,
                    rule=f"{cargo} cargo to {region} ships with {carrier}",
                    questions=(
                        f"Which carrier ships {cargo} cargo to {region}?",
                        f"A customer sends {cargo} cargo to {region}. Which contracted carrier takes it?",
                        f"Who is the contracted carrier for {cargo} cargo going to {region}?",
                    ),
                )
            )
    for document in _DOCUMENTS:
        code = _code(rng, "RET", used)
        facts.append(
            Fact(
                key=f"retention:{document}",
                relation="retention code",
                subject=f"{document}",
                value=code,
                rule=f"a {document} is filed under retention code {code}",
                questions=(
                    f"Which retention code is a {document} filed under?",
                    f"An archivist is filing a {document}. What retention code does it get?",
                    f"What is the retention code of a {document}?",
                ),
            )
        )
    return facts


@dataclass(frozen=True)
class StreamSpec:
    """How a stream is drawn: ``facts`` distinct rules, ``questions`` in all, from ``seed``. The first
    ``intro`` share of the stream introduces most new facts; the rest mostly asks again."""

    seed: int = 0
    facts: int = 30
    questions: int = 120
    intro: float = 0.35


def conventions_facts(seed: int = 0) -> list[Fact]:
    """All facts of the cooperative drawn from ``seed``."""
    return _facts(random.Random(f"harbourline-facts-{seed}"))


def conventions_stream(seed: int = 0, *, facts: int = 30, questions: int = 120, intro: float = 0.35) -> list[Task]:
    """A stream of ``questions`` tasks over ``facts`` distinct rules of the cooperative (deterministic per seed).

    Facts are sampled so that near-duplicates are present (the same office or transaction in several rules).
    Each fact is asked first somewhere in the stream; repeats use another wording than the previous time when
    there is one. Task metadata: ``fact`` (its key), ``relation``, ``rule``, ``first`` ("yes" on a fact's first
    appearance: nothing could have taught it), ``kind`` = "conventions".
    """
    spec = StreamSpec(seed, facts, questions, intro)
    if spec.facts < 1 or spec.questions < spec.facts:
        raise ConfigError("a stream needs at least one fact and at least as many questions as facts")
    rng = random.Random(f"harbourline-stream-{seed}-{facts}-{questions}")
    pool = conventions_facts(seed)
    if spec.facts > len(pool):
        raise ConfigError(f"at most {len(pool)} facts per seed")
    chosen = rng.sample(pool, spec.facts)
    intro_end = max(spec.facts, round(spec.questions * spec.intro))
    # where each fact first appears: spread over the intro part, in random order
    first_at = sorted([0, *rng.sample(range(1, intro_end), spec.facts - 1)])
    order: list[Fact | None] = [None] * spec.questions
    for pos, new in zip(first_at, chosen, strict=True):
        order[pos] = new
    seen: list[Fact] = []
    last_wording: dict[str, int] = {}
    tasks: list[Task] = []
    for i in range(spec.questions):
        slot = order[i]
        first = slot is not None
        # a repeat: any fact already introduced (position 0 always introduces one)
        fact = slot if slot is not None else rng.choice(seen)
        if first:
            seen.append(fact)
        choices = [n for n in range(len(fact.questions)) if n != last_wording.get(fact.key)]
        wording = rng.choice(choices)
        last_wording[fact.key] = wording
        tasks.append(
            Task(
                id=f"conventions-{seed}:{i + 1:04d}",
                input=fact.questions[wording],
                target=fact.value,
                metadata={
                    "kind": "conventions",
                    "fact": fact.key,
                    "relation": fact.relation,
                    "rule": fact.rule,
                    "first": "yes" if first else "no",
                },
            )
        )
    return tasks


def _norm(text: str) -> str:
    return " ".join(text.strip().strip("\"'`.").split()).casefold()


class Conventions:
    """The cooperative's booking system as an evaluator.

    With ground truth (``task.target`` set): correct/wrong, the expected answer and the rule. Without it (the loop's
    execution-feedback mode removes the target): the system still knows whether the booking went through (it
    checks against the rule in ``task.metadata``) and says why a wrong one was rejected, quoting the rule.
    """

    spec: dict[str, Any] = {"name": "conventions"}  # noqa: RUF012 - read-only by convention

    def __call__(self, task: Task, answer: str) -> Feedback:
        rule = task.metadata.get("rule")
        truth = task.target
        if truth is None and rule is None:
            return Feedback(correct=None, message="no ground truth")
        if truth is None:  # execution feedback: the verdict and the rule, never a target field
            expected = _value_in_rule(rule or "")
            ok = expected is not None and _norm(answer) == _norm(expected)
            message = "accepted" if ok else f"rejected: {answer.strip()[:60]!r} is not valid here; {rule}"
            return Feedback(correct=ok, score=float(ok), message=message)
        ok = _norm(answer) == _norm(truth)
        message = "correct" if ok else f"wrong: expected {truth!r}" + (f"; {rule}" if rule else "")
        return Feedback(correct=ok, score=float(ok), target=truth, message=message)


def _value_in_rule(rule: str) -> str | None:
    for marker in (" ledger code ", " approved on form ", " escalated to ", " ships with ", " retention code "):
        if marker in rule:
            return rule.split(marker, 1)[1]
    return None


conventions = Conventions()

__all__ = ["ORG", "Conventions", "Fact", "StreamSpec", "conventions", "conventions_facts", "conventions_stream"]
