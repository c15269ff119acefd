"""The collapse benchmark: long streams in which knowledge accumulates and must be kept, under several update
policies; detector precision / recall / delay on the labelled collapse events; false alarms on healthy runs.

    python benchmarks/collapse/bench_collapse.py --steps 520 --out runs/collapse.json [--llm local]
    ace report runs/collapse.json          # plots (PNG) and a Markdown report beside it

The stream: step t teaches one probe fact (``Supplier S0t ships under code K<t>-<hash>``, with a rule of thumb
around it). The probe is the code; a policy retains the fact at step t when the code is still in its context.
Policies (each produces one context per step, applied through the real ``apply``):

- ``ace``: one delta per step (ADD the new bullet, TAG two bullets, every 7th step UPDATE an older bullet's wording
  keeping its code, every 11th step ADD a restatement of an older fact), plus grow-and-refine (the real
  ``Refiner``: MiniLM dedup at cosine >= 0.9, which must merge the restatements without merging distinct facts)
  every 25 steps.
- ``rewrite``: Dynamic-Cheatsheet style: the new fact is appended each step, and every ``--rewrite-every`` steps a
  real LLM (``--llm``, default the local model) rewrites the whole context under ``--rewrite-tokens`` output tokens.
- ``summarize``: every 50 steps the context is cut to its first ``--word-cap`` words, whole bullets first (a
  summarizer under a word cap that keeps what it sees first).
- ``random``: at random steps (p = 0.03) a random 30-70 % of the bullets are deleted.
- ``rewrite+guard``: the rewrite policy with the ``CollapseGuard`` in front: a blocked rewrite is not applied.

Labelled collapse events: the steps at which the share of already-learned probes still present falls by 10 % or
more. A detector "fires" at a step when it raises an alert of at least ``warning`` (or ``critical``, reported
separately) for that step's transition. Precision = fired steps that are events / fired steps; recall = events
detected within ``--max-delay`` steps / events; delay = steps from event to first detection. The detectors get no
probes (that would make retention trivial); the retention detector matches bullets by text only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace.collapse import Alert, CollapseGuard, Detectors
from ace.playbook import Delta, Playbook, apply, approx_tokens, render

POLICIES = ("ace", "rewrite", "summarize", "random", "rewrite+guard")


def fact(t: int) -> tuple[str, str]:
    """(bullet text, probe code) of step t."""
    code = f"K{t}-{hashlib.sha256(str(t).encode()).hexdigest()[:4].upper()}"
    kinds = ["invoices", "refunds", "freight", "customs forms", "credit notes", "purchase orders"]
    text = (
        f"Supplier S{t:03d} ({kinds[t % len(kinds)]}) ships under code {code}; quote that code on every "
        f"{kinds[(t * 7) % len(kinds)]} line and reconcile within {1 + t % 9} days."
    )
    return text, code


@dataclass
class Trace:
    policy: str
    retention: list[float] = field(default_factory=list)  # share of probes learned so far still present
    tokens: list[int] = field(default_factory=list)
    bullets: list[int] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # steps whose update the guard rejected
    llm_calls: int = 0
    seconds: float = 0.0


def _ops(pb: Playbook, ops: list[dict[str, Any]]) -> Playbook:
    return apply(pb, Delta.parse({"operations": ops})).playbook


def _from_text(text: str) -> Playbook:
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", ln).strip() for ln in text.splitlines()]
    ops = [{"type": "ADD", "section": "notes", "content": ln[:2000]} for ln in lines if len(ln) > 3]
    return _ops(Playbook.empty(), ops)


def stream_ace(steps: int, rng: random.Random, refiner: Any) -> Iterator[Playbook]:
    pb = Playbook.empty()
    for t in range(1, steps + 1):
        text, _ = fact(t)
        ops: list[dict[str, Any]] = [{"type": "ADD", "section": "suppliers", "content": text}]
        ids = [b.id for b in pb]
        for i in rng.sample(ids, min(2, len(ids))):
            ops.append({"type": "TAG", "id": i, "tag": "helpful" if rng.random() < 0.8 else "harmful"})
        if t % 11 == 0 and ids:  # curators re-add what is known in other words: dedup must merge, not forget
            ops.append({"type": "ADD", "section": "suppliers", "content": "Again: " + pb[rng.choice(ids)].content})
        if t % 7 == 0 and ids:
            b = pb[rng.choice(ids)]
            ops.append({"type": "UPDATE", "id": b.id, "content": b.content.replace("on every", "on each")})
        pb = _ops(pb, ops)
        if refiner is not None and t % 25 == 0:
            extra = refiner.refine(pb)
            if extra.operations:
                pb = apply(pb, extra).playbook
        yield pb


def stream_rewrite(
    steps: int, every: int, rewrite: Callable[[str], str], trace: Trace, guard: bool
) -> Iterator[Playbook]:
    pb = Playbook.empty()
    check = CollapseGuard()  # the loop's guard: blocks a candidate with a critical alert
    for t in range(1, steps + 1):
        text, _ = fact(t)
        pb = _ops(pb, [{"type": "ADD", "section": "notes", "content": text}])
        if t % every == 0:
            candidate = _from_text(rewrite(render(pb, counters=False)))
            trace.llm_calls += 1
            if guard and check(pb, candidate) is not None:
                trace.rejected.append(t)
            else:
                pb = candidate
        yield pb


def stream_summarize(steps: int, cap: int) -> Iterator[Playbook]:
    pb = Playbook.empty()
    for t in range(1, steps + 1):
        pb = _ops(pb, [{"type": "ADD", "section": "notes", "content": fact(t)[0]}])
        if t % 50 == 0:  # keep whole bullets, oldest first, until the word cap; the last one cut at the cap
            kept, used = [], 0
            for b in pb:
                words = b.content.split()
                if used >= cap:
                    break
                kept.append(" ".join(words[: cap - used]))
                used += len(words)
            pb = _from_text("\n".join(kept))
        yield pb


def stream_random(steps: int, rng: random.Random) -> Iterator[Playbook]:
    pb = Playbook.empty()
    for t in range(1, steps + 1):
        ops: list[dict[str, Any]] = [{"type": "ADD", "section": "notes", "content": fact(t)[0]}]
        if t > 20 and rng.random() < 0.03:
            ids = [b.id for b in pb]
            ops += [{"type": "REMOVE", "id": i} for i in rng.sample(ids, int(len(ids) * rng.uniform(0.3, 0.7)))]
        pb = _ops(pb, ops)
        yield pb


def llm_rewriter(provider: str, max_tokens: int, n_ctx: int) -> Callable[[str], str]:
    from ace.llm import LLM, Message, Sampling

    if provider == "local":  # a rejected rewrite lets the context grow: give the local model room for it
        from ace.llm.local import LocalProvider

        llm = LLM(LocalProvider(n_ctx=n_ctx), sampling=Sampling(max_tokens=max_tokens, temperature=0.0))
    else:
        llm = LLM(provider, sampling=Sampling(max_tokens=max_tokens, temperature=0.0))
    instructions = (
        "You maintain a cheatsheet of everything learned so far. Rewrite the cheatsheet below into an improved, "
        "well-organized version that keeps every useful fact. Output only the new cheatsheet, one item per line."
    )

    def rewrite(context: str) -> str:
        return llm.call([Message("system", instructions), Message("user", context)], role="rewriter").text

    return rewrite


def run_policy(name: str, args: argparse.Namespace, rewrite: Callable[[str], str] | None) -> Trace:
    rng = random.Random(args.seed)
    trace = Trace(name)
    if name == "ace":
        refiner = None
        if not args.no_refine:
            from ace.llm.embeddings import MiniLMEmbedder
            from ace.loop.refine import EmbeddingIndex, Refiner

            refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), threshold=0.9, prune_margin=None)
        stream = stream_ace(args.steps, rng, refiner)
    elif name.startswith("rewrite"):
        assert rewrite is not None
        stream = stream_rewrite(args.steps, args.rewrite_every, rewrite, trace, guard=name.endswith("guard"))
    elif name == "summarize":
        stream = stream_summarize(args.steps, args.word_cap)
    else:
        stream = stream_random(args.steps, rng)
    detectors = Detectors()
    before = Playbook.empty()
    started = time.perf_counter()
    for t, pb in enumerate(stream, start=1):
        text = render(pb, counters=False)
        learned = [fact(i)[1] for i in range(1, t + 1)]
        trace.retention.append(sum(code in text for code in learned) / len(learned))
        trace.tokens.append(approx_tokens(text))
        trace.bullets.append(len(pb))
        for a in detectors.check(before, pb, versions=(t - 1, t)):
            trace.alerts.append(_alert(a, t))
        before = pb
    trace.seconds = time.perf_counter() - started
    return trace


def _alert(a: Alert, step: int) -> dict[str, Any]:
    return {"step": step, "detector": a.detector, "severity": a.severity, "message": a.message}


def events(retention: list[float], drop: float = 0.10) -> list[int]:
    """Steps (1-based) at which retention of already-learned probes falls by ``drop`` or more."""
    out = []
    for t in range(2, len(retention) + 1):
        prev = retention[t - 2]
        # the share at t counts the new fact too; compare on the facts known before step t
        kept_old = (retention[t - 1] * t - 1) / (t - 1) if retention[t - 1] * t >= 1 else 0.0
        if prev - kept_old >= drop * max(prev, 1e-9):
            out.append(t)
    return out


def score(traces: list[Trace], max_delay: int, severity: str) -> dict[str, Any]:
    rank = {"info": 0, "warning": 1, "critical": 2}
    detectors = sorted({a["detector"] for tr in traces for a in tr.alerts} | {"any"})
    out: dict[str, Any] = {}
    for det in detectors:
        tp = fp = found = total = 0
        delays: list[int] = []
        ace_steps = ace_alarms = 0
        for tr in traces:
            fired = sorted(
                {
                    a["step"]
                    for a in tr.alerts
                    if (det == "any" or a["detector"] == det) and rank[a["severity"]] >= rank[severity]
                }
            )
            ev = events(tr.retention)
            if tr.policy == "ace":
                ace_steps += len(tr.retention)
                ace_alarms += len(fired)
                fp += len([s for s in fired if s not in ev])
                tp += len([s for s in fired if s in ev])
                total += len(ev)
                found += sum(any(e <= s <= e + max_delay for s in fired) for e in ev)
                continue
            evset = set(ev)
            tp += sum(1 for s in fired if any(e <= s <= e + max_delay for e in evset))
            fp += sum(1 for s in fired if not any(e <= s <= e + max_delay for e in evset))
            total += len(ev)
            for e in ev:
                hit = [s - e for s in fired if e <= s <= e + max_delay]
                if hit:
                    found += 1
                    delays.append(min(hit))
        prec = tp / (tp + fp) if tp + fp else None
        rec = found / total if total else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else None
        out[det] = {
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "mean_delay": sum(delays) / len(delays) if delays else None,
            "events": total,
            "false_alarm_rate_ace": ace_alarms / ace_steps if ace_steps else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=520)
    ap.add_argument("--policies", nargs="*", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--llm", default="local", help="provider for the rewrite policy")
    ap.add_argument("--rewrite-every", type=int, default=50)
    ap.add_argument("--rewrite-tokens", type=int, default=512)
    ap.add_argument("--n-ctx", type=int, default=32768, help="context window of the local model (rewrite policy)")
    ap.add_argument("--word-cap", type=int, default=600)
    ap.add_argument("--max-delay", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-refine", action="store_true", help="ace policy without grow-and-refine dedup")
    ap.add_argument("--out", type=Path, default=Path("collapse.json"))
    args = ap.parse_args()
    rewrite = (
        llm_rewriter(args.llm, args.rewrite_tokens, args.n_ctx)
        if any(p.startswith("rewrite") for p in args.policies)
        else None
    )
    traces = []
    for name in args.policies:
        tr = run_policy(name, args, rewrite)
        traces.append(tr)
        ev = events(tr.retention)
        print(
            f"{name:>14}: final retention {tr.retention[-1]:.3f} (min {min(tr.retention):.3f}), "
            f"{tr.tokens[-1]} tokens, {tr.bullets[-1]} bullets, {len(ev)} collapse events, "
            f"{len(tr.alerts)} alerts, {len(tr.rejected)} rejected, {tr.llm_calls} LLM calls, {tr.seconds:.0f} s"
        )
    scored = {sev: score(traces, args.max_delay, sev) for sev in ("warning", "critical")}
    for sev, table in scored.items():
        print(f"\ndetectors (fire at >= {sev}, max delay {args.max_delay}):")
        for det, m in table.items():
            fmt = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
            print(
                f"  {det:>10}: precision {fmt(m['precision'])} recall {fmt(m['recall'])} F1 {fmt(m['f1'])} "
                f"delay {fmt(m['mean_delay'])} events {m['events']} "
                f"ACE false-alarm rate {fmt(m['false_alarm_rate_ace'])}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "traces": [tr.__dict__ | {"events": events(tr.retention)} for tr in traces],
                "scores": scored,
            },
            indent=1,
        )
    )
    print(f"\nwrote {args.out}; ace report {args.out} writes the plots and a Markdown report")


if __name__ == "__main__":
    main()
