"""One context from every tier, under one token budget.

Each tier supplies a list of items, best first: playbook bullets (by :func:`ace.playbook.rank`), graph facts
(nearest to the task's entities first), episodes (most similar first), short-term entries (newest first). The rule
that fuses them is reciprocal rank fusion: an item at rank ``r`` (0-based) of its tier scores ``w / (k + r)`` with
``k = 60`` and a per-tier weight ``w`` (default 1 each, so the lists interleave by rank). Items are taken by score,
then tier order, and kept while they fit the budget (an item that does not fit is skipped, smaller ones may still
fit). The kept items are printed grouped by tier in a fixed order, from the most stable to the most volatile:
playbook (in playbook order), facts, episodes, recent steps. A prompt cache keyed on a prefix then reuses the
playbook part across tasks.

Token counts are the project's estimate (:func:`ace.playbook.approx_tokens`), and headers count too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ace.memory.buffer import Entry
from ace.memory.episodic import Hit
from ace.memory.graph import Fact
from ace.playbook import Playbook, approx_tokens, rank
from ace.playbook.render import bullet_line

TIERS = ("playbook", "facts", "episodes", "recent")
HEADERS = {
    "playbook": "PLAYBOOK:",
    "facts": "KNOWN FACTS:",
    "episodes": "SIMILAR PAST EPISODES:",
    "recent": "RECENT STEPS (newest first):",
}
RRF_K = 60


@dataclass
class Assembled:
    text: str
    tokens: int
    kept: dict[str, list[str]] = field(default_factory=dict)  # tier -> item ids kept (bullet ids, fact ids, ...)


def _items(
    playbook: Playbook | None, facts: Sequence[Fact], episodes: Sequence[Hit], recent: Sequence[Entry]
) -> dict[str, list[tuple[str, str]]]:
    return {
        "playbook": [(b.id, bullet_line(b)) for b in rank(playbook)] if playbook is not None else [],
        "facts": [(str(f.id), f"- {f.text()} (since step {f.valid_from})") for f in facts],
        "episodes": [
            (h.episode.id, f"- [{h.episode.outcome}] {' '.join(h.episode.document().split())[:600]}") for h in episodes
        ],
        "recent": [(f"{e.step}:{e.kind}", f"- step {e.step} {e.kind}: {e.text}") for e in recent],
    }


def assemble(
    playbook: Playbook | None,
    *,
    facts: Sequence[Fact] = (),
    episodes: Sequence[Hit] = (),
    recent: Sequence[Entry] = (),
    budget: int | None = 2000,
    weights: dict[str, float] | None = None,
) -> Assembled:
    """The fused context (see the module doc). ``budget=None``: everything."""
    items = _items(playbook, facts, episodes, recent)
    w = {tier: 1.0 for tier in TIERS} | (weights or {})
    scored = sorted(
        (
            (w[tier] / (RRF_K + r), -TIERS.index(tier), tier, item)
            for tier in TIERS
            for r, item in enumerate(items[tier])
        ),
        key=lambda x: (x[0], x[1]),
        reverse=True,
    )
    section_of = {b.id: b.section for b in playbook} if playbook is not None else {}
    kept: dict[str, set[str]] = {tier: set() for tier in TIERS}
    sections: set[str] = set()
    used = 0
    for _, _, tier, (item_id, line) in scored:
        cost = approx_tokens(line + "\n") + (0 if kept[tier] else approx_tokens(HEADERS[tier] + "\n\n"))
        section = section_of.get(item_id) if tier == "playbook" else None
        if section is not None and section not in sections:
            cost += approx_tokens(f"## {section}\n")
        if budget is not None and used + cost > budget:
            continue
        kept[tier].add(item_id)
        if section is not None:
            sections.add(section)
        used += cost
    blocks: list[str] = []
    order: dict[str, list[str]] = {}
    for tier in TIERS:
        if not kept[tier]:
            continue
        seq = items[tier]
        if tier == "playbook" and playbook is not None:  # printed in playbook order, under section headers
            by_id = dict(seq)
            seq = [(b.id, by_id[b.id]) for b in playbook if b.id in kept[tier]]
            lines, last = [], None
            for item_id, line in seq:
                if section_of[item_id] != last:
                    last = section_of[item_id]
                    lines.append(f"## {last}")
                lines.append(line)
        else:
            lines = [line for item_id, line in seq if item_id in kept[tier]]
        order[tier] = [item_id for item_id, _ in seq if item_id in kept[tier]]
        blocks.append(HEADERS[tier] + "\n" + "\n".join(lines))
    text = "\n\n".join(blocks)
    return Assembled(text, approx_tokens(text), order)
