"""An LLM-written history: the local model rewrites bullets of a released playbook "to be more concise", one bullet a
step, the way a curator that tidies up would (the natural source of facts reworded away and slow erosion). Each
step is committed as an UPDATE, whatever the model wrote, and the collapse detectors watch the history.

    python benchmarks/collapse/bench_llm_concise.py --steps 60 --seed 3 [--model smollm2-135m] [--json]

Labels, so that recall can be stated: a step *lost a specific* when a token of the original that carries one is no
longer in the rewrite (case-insensitive) and no other bullet of the playbook holds it. The tokens are found by this
script's own rule, written from the issue's description and kept apart from the detectors' extractor: words with a
digit, an underscore, an inner dot or an inner capital; quoted and backticked spans; and the qualifier phrases
"only when/if", "unless", "except", "never", "always", "before", "after", "at least", "at most". A rewrite the model
left unchanged or failed to produce is a healthy step (it changes nothing). Reported: steps, steps that lost a
specific, recall of the ``facts`` and ``erosion`` alerts (warning or above) on those steps, alerts on steps that lost
none (by detector: a shortening without a lost specific is what ``erosion`` counts, so those are listed, not hidden),
the share of specifics gone at the end, and seconds per rewrite.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

from ace.collapse import Detectors
from ace.llm.local import LocalProvider
from ace.llm.types import Message, Request, Sampling
from ace.playbook import ApplyPolicy, Delta, Playbook, apply
from ace.playbook.formats import loads

ROOT = Path(__file__).resolve().parents[2]
RELEASED = ROOT.parent / "shared" / "data" / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt"

_TOKEN = re.compile(r"[\w.'-]+")
_QUOTED = re.compile(r"`[^`]+`|'[^'\n]{1,60}'|\"[^\"\n]{1,60}\"")
_QUALIFIER = re.compile(
    r"\b(only when|only if|unless|except|never|always|before|after|at least|at most)\b", re.IGNORECASE
)


def specifics(text: str) -> set[str]:
    """This benchmark's own labelling rule (see the module's doc)."""
    found = {m.group(0).casefold() for m in _QUOTED.finditer(text)}
    for tok in _TOKEN.findall(text):
        tok = tok.strip(".'-")
        if any(c.isdigit() for c in tok) or "_" in tok or re.search(r"\w\.\w", tok) or re.search(r"[a-z][A-Z]", tok):
            found.add(tok.casefold())
    found |= {m.group(1).casefold() for m in _QUALIFIER.finditer(text)}
    return found


def rewrite(provider: LocalProvider, text: str, max_tokens: int) -> str:
    messages = (
        Message("system", "You edit a playbook of rules for an AI agent. Reply with the rewritten rule only."),
        Message("user", f"Rewrite this rule to be more concise:\n\n{text}"),
    )
    done = provider.complete(Request(messages, Sampling(temperature=0.0, max_tokens=max_tokens)))
    return " ".join(done.text.strip().strip('"').split())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    pb: Playbook = loads(RELEASED.read_text())
    rng = random.Random(args.seed)
    order = rng.sample([b.id for b in pb], min(args.steps, len(pb)))
    provider = LocalProvider(args.model)
    policy = ApplyPolicy(quality=None)  # what the model wrote goes in as it is: the detectors are what is measured
    versions: list[tuple[int, Playbook]] = [(1, pb)]
    labels: dict[int, bool] = {}
    seconds = 0.0
    for bullet_id in order:
        before = versions[-1][1]
        old = before[bullet_id].content
        started = time.perf_counter()
        new = rewrite(provider, old, args.max_tokens)
        seconds += time.perf_counter() - started
        if not new or new == old:
            continue
        after = apply(before, Delta.parse({"operations": [{"type": "UPDATE", "id": bullet_id, "content": new}]}),
                      policy=policy).playbook  # fmt: skip
        others = " ".join(b.content for b in after if b.id != bullet_id).casefold()
        folded = new.casefold()
        lost = {s for s in specifics(old) if s not in folded and s not in others}
        version = versions[-1][0] + 1
        labels[version] = bool(lost)
        versions.append((version, after))

    alerts = Detectors().scan(versions)
    flagged: dict[int, set[str]] = {}
    for a in alerts:
        if a.at_least("warning") and a.versions[1] is not None:
            flagged.setdefault(a.versions[1], set()).add(a.detector)
    lossy = [v for v, lost in labels.items() if lost]
    caught = [v for v in lossy if flagged.get(v, set()) & {"facts", "erosion", "contradiction"}]
    healthy = [v for v, lost in labels.items() if not lost]
    on_healthy: dict[str, int] = {}
    for v in healthy:
        for d in flagged.get(v, ()):
            on_healthy[d] = on_healthy.get(d, 0) + 1
    start = set().union(*(specifics(b.content) for b in pb))
    end_text = " ".join(b.content for b in versions[-1][1]).casefold()
    gone = len([s for s in start if s not in end_text]) / max(len(start), 1)
    result = {
        "model": args.model,
        "seed": args.seed,
        "steps": len(labels),
        "lossy_steps": len(lossy),
        "recall": round(len(caught) / len(lossy), 3) if lossy else None,
        "alerts_on_steps_without_loss": on_healthy,
        "steps_without_loss": len(healthy),
        "specifics_gone_at_end": round(gone, 3),
        "seconds_per_rewrite": round(seconds / max(len(order), 1), 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:30} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
