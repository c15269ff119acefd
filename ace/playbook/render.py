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

**Layouts.** ``layout="sections"`` is the paper's text above (what export writes). ``layout="stable"`` is the
prompt layout that keeps a provider's prompt cache warm from one version to the next (a prefix cache reuses the
longest unchanged prefix of the prompt):

- no counters inside bullets: a TAG changes nothing before the end of the prompt; the counters are listed in a
  trailing ``## BULLET SCORES`` block (bullets tagged at least once, in layout order);
- bullets numbered at or above the *watermark* (:func:`stable_watermark`, a function of ``next_id`` that moves in
  steps of about 1/16 to 1/8 of it) are printed after all sections, in the order they were added, under their
  section's name (``## NAME (continued)``): an ADD appends to the end of that block instead of into the middle of
  the prompt. When the watermark moves on, they move into their sections (one cache miss per step of the
  watermark). Below 16 ids the watermark is 0 and there is no such block (a small prompt has little to cache);
- every section header is printed, even empty ones, so a section filling up does not shift what follows;
- with a budget, every header is printed, 1/8 of the rest holds the recent bullets in the order they were added
  (until one does not fit), and the rest the older ones by the ranking below, laid out as above.

Everything before the first real edit (an UPDATE, REMOVE or MERGE, or the watermark moving) stays byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Literal

from ace.errors import ConfigError
from ace.playbook.model import Bullet, Playbook

TokenCounter = Callable[[str], int]
Layout = Literal["sections", "stable"]
LAYOUTS: tuple[Layout, ...] = ("sections", "stable")
SCORES_HEADER = "## BULLET SCORES (helpful / harmful, as tagged so far)"

_LOOKS_LIKE_COUNTERS = re.compile(r"(?:helpful|harmful)=")  # content a reader could take for counters


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


# the query-aware render: ace.playbook.query builds on this module and registers it when imported (the package
# imports it), so that this module never imports it back
_QUERY_RENDER: Callable[..., str] | None = None


def register_query_render(fn: Callable[..., str]) -> None:
    """Called once by :mod:`ace.playbook.query`: what ``render(..., query=...)`` hands its arguments to."""
    global _QUERY_RENDER
    _QUERY_RENDER = fn


def render(
    playbook: Playbook,
    *,
    counters: bool = True,
    budget: int | None = None,
    count_tokens: TokenCounter = approx_tokens,
    layout: Layout = "sections",
    query: str | None = None,
) -> str:
    """The playbook as ACE text; with ``budget``, only the most useful bullets that fit; ``layout="stable"`` for
    the cache-friendly prompt layout (see module doc; ``counters`` then says whether the scores block is shown).
    With ``query`` and ``budget``, a stable core under half the budget and the bullets most relevant to the query
    under the rest (:mod:`ace.playbook.query`); without a budget the whole playbook, as without a query."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if query is not None and budget is not None and budget >= 0:
        if _QUERY_RENDER is None:  # pragma: no cover - ace.playbook imports ace.playbook.query, which registers it
            raise ConfigError("render(query=...) needs ace.playbook.query (import ace.playbook)")
        return _QUERY_RENDER(
            playbook, query, budget=budget, counters=counters, count_tokens=count_tokens, layout=layout
        )
    if budget is None:
        if layout == "stable":
            return playbook.derived(  # type: ignore[no-any-return]
                ("render-stable", counters), lambda: _render_stable(playbook, None, counters)
            )
        return playbook.derived(("render", counters), lambda: _render_all(playbook, counters))  # type: ignore[no-any-return]
    if budget < 0:
        raise ConfigError("budget must be >= 0 tokens")
    if count_tokens is approx_tokens:  # the default counter: a function of the playbook, kept for a few budgets
        kept: dict[tuple[bool, int, str], str] = playbook.derived("render-budgets", dict)
        key = (counters, budget, layout)
        text = kept.get(key)
        if text is None:
            text = _budgeted(playbook, counters, budget, count_tokens, layout)
            if len(kept) >= _BUDGETS_KEPT:  # bounded: a caller asking for every budget cannot grow it
                kept.pop(next(iter(kept)), None)
            kept[key] = text
        return text
    return _budgeted(playbook, counters, budget, count_tokens, layout)


_BUDGETS_KEPT = 8


def _budgeted(playbook: Playbook, counters: bool, budget: int, count_tokens: TokenCounter, layout: Layout) -> str:
    full = render(playbook, counters=counters, layout=layout)
    if count_tokens(full) <= budget:
        return full
    if layout == "stable":
        return _render_stable_budgeted(playbook, counters, budget, count_tokens)
    return _render_budgeted(playbook, counters, budget, count_tokens)


def common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of two texts (what a prefix cache can reuse)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search over slice comparisons: C-speed, O(n log n) at worst
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def stable_watermark(next_id: int) -> int:
    """The id number from which bullets go to the trailing block of the stable layout: ``next_id`` rounded down
    to a step of 16, or of 2**(bits(next_id) - 4) once that is larger (between 1/16 and 1/8 of ``next_id``)."""
    step = max(16, 1 << max(0, next_id.bit_length() - 4))
    return next_id - next_id % step


def _serial(bullet_id: str) -> int | None:
    _, dash, tail = bullet_id.rpartition("-")
    return int(tail) if dash and tail.isdigit() and tail.isascii() else None


def _render_stable(playbook: Playbook, kept: Collection[str] | None, scores: bool) -> str:
    watermark = stable_watermark(playbook.next_id)
    by_id = playbook.bullets_by_id
    out: list[str] = []
    recent: list[tuple[int, Bullet]] = []
    for sec in playbook.sections.values():
        if out:
            out.append("")
        out.append(f"## {sec.name}")
        for i in sec.ids:
            if kept is not None and i not in kept:
                continue
            b = by_id[i]
            n = _serial(i)
            if watermark and n is not None and n >= watermark:
                recent.append((n, b))
            else:
                out.append(bullet_line(b, counters=False))
    last = None
    for _, b in sorted(recent, key=lambda nb: nb[0]):
        if b.section != last:
            out += ["", f"## {b.section} (continued)"]
            last = b.section
        out.append(bullet_line(b, counters=False))
    if scores:
        shown = [b for b in playbook if (kept is None or b.id in kept) and (b.helpful or b.harmful)]
        if shown:
            out += ["", SCORES_HEADER, *(f"[{b.id}] {b.helpful} / {b.harmful}" for b in shown)]
    if out:
        out.append("")
    return "\n".join(out)


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
    return _trimmed(ranked, kept, budget, count_tokens, lambda ids: _render_subset(playbook, ids, counters))


def _trimmed(
    ranked: list[Bullet], kept: set[str], budget: int, count_tokens: TokenCounter, text_of: Callable[[set[str]], str]
) -> str:
    """The sum of per-line counts is an estimate for other tokenizers: drop the least useful until it truly fits."""
    text = text_of(kept)
    for b in reversed(ranked):
        if count_tokens(text) <= budget:
            break
        if b.id in kept:
            kept.discard(b.id)
            text = text_of(kept)
    return text


def _render_stable_budgeted(playbook: Playbook, counters: bool, budget: int, count_tokens: TokenCounter) -> str:
    """The stable layout under a budget. Every header is printed; 1/8 of the rest is kept for the recent bullets,
    taken in the order they were added until one does not fit (a later one never squeezes in before it), and the
    rest goes to the older bullets by rank. A step's TAGs then change the kept set only when they move a bullet
    across the rank margin, and an ADD changes it only at the end of the recent block."""
    room = budget - sum(count_tokens(f"## {name}\n") + count_tokens("\n") for name in playbook.sections)
    if room <= 0:  # the headers alone do not fit: the compact form
        return _render_budgeted(playbook, counters, budget, count_tokens)
    watermark = stable_watermark(playbook.next_id)

    def cost(b: Bullet) -> int:
        score = count_tokens(f"[{b.id}] {b.helpful} / {b.harmful}\n") if counters else 0
        return count_tokens(bullet_line(b, counters=False) + "\n") + score

    recent_room = room // 8
    ranked = rank(playbook)
    kept: set[str] = set()
    recent: list[tuple[int, Bullet]] = []
    used = 0
    for b in ranked:
        n = _serial(b.id)
        if watermark and n is not None and n >= watermark:
            recent.append((n, b))
        elif used + (c := cost(b)) <= room - recent_room:
            kept.add(b.id)
            used += c
    used = 0
    for _, b in sorted(recent, key=lambda nb: nb[0]):
        c = cost(b) + count_tokens(f"\n## {b.section} (continued)\n")
        if used + c > recent_room:
            break
        kept.add(b.id)
        used += c
    text = _trimmed(ranked, kept, budget, count_tokens, lambda ids: _render_stable(playbook, ids, counters))
    return text if count_tokens(text) <= budget else _render_budgeted(playbook, counters, budget, count_tokens)


def _render_subset(playbook: Playbook, kept: set[str], counters: bool) -> str:
    parts: list[str] = []
    by_id = playbook.bullets_by_id
    for sec in playbook.sections.values():
        ids = [i for i in sec.ids if i in kept]
        if ids:
            parts.append("\n".join([f"## {sec.name}", *(bullet_line(by_id[i], counters=counters) for i in ids)]) + "\n")
    return "\n".join(parts)
