"""Rendering a playbook to prompt text, whole or under a token budget.

The text is the ACE format the paper's playbooks use::

    ## STRATEGIES AND HARD RULES
    [shr-00001] helpful=3 harmful=0 :: Always read the API doc before calling an API.

Sections are separated by one blank line; a bullet whose content spans lines continues on lines indented by two
spaces. The output is a pure function of the playbook, so an unchanged playbook renders byte-identically (prompt
caches depend on a stable prefix); it is memoized per playbook object.

**Budgeted rendering** (``budget=N`` tokens) keeps the most useful bullets when the whole playbook does not fit:
bullets are ranked by score (helpful − harmful), then helpful count, then most recently updated step, then
position; they are taken greedily in that order while they fit, and the kept ones are printed in their original
order, under their section headers (sections left empty are omitted). The result is deterministic and
``count_tokens(text) <= budget`` always holds.

Token counts use :func:`approx_tokens` unless a counter is passed: one token per 4 characters, rounded up. It is
an estimate (tiktoken needs a download; a model's own tokenizer can be passed instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ace.playbook.model import Bullet, Playbook

TokenCounter = Callable[[str], int]

_LOOKS_LIKE_COUNTERS = re.compile(r"helpful=\d+ harmful=\d+ :: ")


def approx_tokens(text: str) -> int:
    """Estimated tokens: ceil(characters / 4). Documented estimate, not a tokenizer."""
    return (len(text) + 3) // 4


def bullet_line(b: Bullet, *, counters: bool = True) -> str:
    """One bullet in ACE text form (without the final newline)."""
    content = b.content.replace("\n", "\n  ")
    if counters or _LOOKS_LIKE_COUNTERS.match(content):
        # The counter form is also used when the bare form would be read back as counters.
        return f"[{b.id}] helpful={b.helpful} harmful={b.harmful} :: {content}"
    return f"[{b.id}] {content}"


def render(
    playbook: Playbook,
    *,
    counters: bool = True,
    budget: int | None = None,
    count_tokens: TokenCounter = approx_tokens,
) -> str:
    """The playbook as ACE text; with ``budget``, only the most useful bullets that fit (see module doc)."""
    if budget is None:
        return playbook.memo(("render", counters), lambda: _render_all(playbook, counters))  # type: ignore[no-any-return]
    if budget < 0:
        raise ValueError("budget must be >= 0 tokens")
    full = render(playbook, counters=counters)
    if count_tokens(full) <= budget:
        return full
    return _render_budgeted(playbook, counters, budget, count_tokens)


def _render_all(playbook: Playbook, counters: bool) -> str:
    # One flat list joined once: each extra concatenation would copy the whole (multi-MB) text again.
    out: list[str] = []
    by_id = playbook.bullets_by_id
    for sec in playbook.sections.values():
        if out:
            out.append("")  # the blank line between sections
        out.append(f"## {sec.name}")
        if counters:  # the common case, inlined: this loop is the whole cost of a render
            out += [
                f"[{b.id}] helpful={b.helpful} harmful={b.harmful} :: {b.content.replace(chr(10), chr(10) + '  ')}"
                for b in map(by_id.__getitem__, sec.ids)
            ]
        else:
            out += [bullet_line(by_id[i], counters=False) for i in sec.ids]
    if out:
        out.append("")  # the final newline
    return "\n".join(out)


def rank(playbook: Playbook) -> list[Bullet]:
    """Bullets most useful first: score, helpful, recency, then position (the budget's keep order)."""
    position = {b.id: n for n, b in enumerate(playbook)}
    return sorted(
        playbook,
        key=lambda b: (-b.score, -b.helpful, -(b.updated_step if b.updated_step is not None else -1), position[b.id]),
    )


def _render_budgeted(playbook: Playbook, counters: bool, budget: int, count_tokens: TokenCounter) -> str:
    headers = {name: count_tokens(f"## {name}\n") + count_tokens("\n") for name in playbook.sections}
    kept: set[str] = set()
    open_sections: set[str] = set()
    used = 0
    ranked = rank(playbook)
    for b in ranked:
        cost = count_tokens(bullet_line(b, counters=counters) + "\n")
        if b.section not in open_sections:
            cost += headers[b.section]
        if used + cost <= budget:
            kept.add(b.id)
            open_sections.add(b.section)
            used += cost
    text = _render_subset(playbook, kept, counters)
    # The sum of per-line counts is an estimate for other tokenizers; drop the least useful until it truly fits.
    for b in reversed(ranked):
        if count_tokens(text) <= budget:
            break
        if b.id in kept:
            kept.discard(b.id)
            text = _render_subset(playbook, kept, counters)
    return text


def _render_subset(playbook: Playbook, kept: set[str], counters: bool) -> str:
    parts: list[str] = []
    by_id = playbook.bullets_by_id
    for sec in playbook.sections.values():
        ids = [i for i in sec.ids if i in kept]
        if ids:
            parts.append("\n".join([f"## {sec.name}", *(bullet_line(by_id[i], counters=counters) for i in ids)]) + "\n")
    return "\n".join(parts)
