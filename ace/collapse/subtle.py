"""The subtle-loss detectors: one step's facts lost, contradictions, duplicate additions and counter moves, and the
windows over many steps that catch what no single step shows (slow erosion, creeping removal, a burst of harmful
tags, near-duplicates piling up).

Per step (O(delta): only the bullets the step touched are looked at, against indexes carried from the version
before, :mod:`ace.collapse.index` and :mod:`ace.collapse.relations`):

- ``facts``: an UPDATE or MERGE drops a fact (:mod:`ace.collapse.facts`) that no bullet still states: warning;
  critical when the bullet was well rated (helpful >= ``well_rated`` and above harmful). A fact swapped for another
  of its kind is a contradiction, not a loss. A REMOVE is judged by the bullet's counters (removing a well-rated
  one warns; one whose harmful count exceeds its helpful count is cleanup) and by the removal window.
- ``contradiction``: an UPDATE swaps a hard fact for another of its kind (a number for a number, a name for a
  name) or a polarity word for its opposite (always/never, before/after); an ADD states another value than a bullet
  already there about the same thing. Warning, with both texts. A legitimate correction is flagged too: say it was
  one by expressing it as an UPDATE of the old bullet (the log keeps the old value), and a reviewer can see both.
- ``counters``: a well-rated bullet removed (not merged into another), or pushed negative (harmful > helpful) by one
  step.
- ``redundancy`` (without an embedder): an ADD that says what a bullet already says (its twin, by facts and subject).

Over a window of the last ``window`` steps (each alert raised once when its count reaches the line, and again only
after the count has fallen back below it):

- ``erosion``: ``erosion_steps`` steps that shortened a bullet by ``shrink`` or more or dropped a fact from it;
- ``removal``: ``removals`` removals of bullets that were not harmful (cleanup excepted, merges excepted);
- ``counters``: ``burst_hits`` harmful tags within the last ``burst_window`` steps on the most helpful bullets (the
  top tenth by helpful count, ranked again every ``window`` steps; scattered harmful tags rarely land there);
- ``redundancy``: ``duplicate_adds`` duplicate additions, or the share of bullets with a twin up by ``twin_rise``
  (and at least ``duplicate_adds`` bullets) from the window's first version: judged against the playbook's own
  baseline, so a playbook that always had near-duplicates does not warn on every step.

Each window alert names the versions and bullets that did it (blame), so a reviewer can revert exactly those.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ace.collapse.alerts import Alert, Severity
from ace.collapse.facts import facts, qualifier_rx, still_in, subject
from ace.collapse.index import INDEX_KEYS, NO_IDS, fact_index, token_index
from ace.collapse.relations import Rules, contradicted_in, link, swapped, twin_in, twins
from ace.playbook import Bullet, Playbook

Versions = tuple[int | None, int | None]


@dataclass
class Subtle:
    """Thresholds of the subtle-loss detectors (see the module's doc)."""

    well_rated: int = 2
    shrink: float = 0.15
    window: int = 30
    erosion_steps: int = 4
    removals: int = 3
    burst_window: int = 5
    burst_hits: int = 3
    duplicate_adds: int = 3
    twin_rise: float = 0.03
    rules: Rules = field(default_factory=Rules)

    def rated(self, b: Bullet) -> bool:
        return b.helpful >= self.well_rated and b.helpful > b.harmful


@dataclass
class Events:
    """What one step did that the windows count, by kind: the ids involved."""

    version: int | None
    eroded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    harmful_hits: list[tuple[str, int]] = field(default_factory=list)  # (id, its helpful count before)
    duplicate_adds: list[str] = field(default_factory=list)
    twinned: int = 0
    bullets: int = 0


def step(
    make: Callable[..., Alert], rules: Subtle, before: Playbook, after: Playbook, v: Versions
) -> tuple[list[Alert], Events]:
    """The per-step subtle alerts of ``before`` → ``after``, and the step's events for the windows."""
    alerts: list[Alert] = []
    ev = Events(v[1], bullets=len(after))
    touched = link(before, after)
    if not touched:
        return alerts, ev
    merged_away: set[str] = set()
    for i in touched:
        if (b := after.get(i)) is not None and b.merged_from:
            old = before.get(i)
            merged_away |= set(b.merged_from) - set(old.merged_from if old is not None else ())
    stated = fact_index(after)
    for i in sorted(touched):
        old, new = before.get(i), after.get(i)
        if old is not None and new is not None and old.content == new.content:
            if len(new.merged_from) == len(old.merged_from):  # a merge sums counters: no one tagged anything
                _counters(make, rules, old, new, v, alerts, ev)
            continue
        if old is None:
            if new is not None:
                _added(make, rules, before, new, v, alerts, ev)
            continue
        cleanup = new is None and old.harmful > old.helpful
        swap = swapped(old.content, new.content) if new is not None else None
        if swap is not None:
            msg = f"[{i}] now says {_shown(swap[1])} where it said {_shown(swap[0])}"
            both = {"before": old.content, "after": new.content if new else None}
            alerts.append(make("contradiction", "warning", msg, v, both, ids=(i,), facts=swap))
        kept = facts(new.content) if new is not None else frozenset()
        text = new.content if new is not None else ""
        swapped_out = () if swap is None else (swap[0], f"cond:{swap[0]}:")  # the value, or the flipped word's
        if new is None and i in merged_away:
            text = " ".join(after[j].content for j in touched if j in after and i in after[j].merged_from)
        lost = sorted(
            f
            for f in facts(old.content) - kept
            if not f.startswith(swapped_out) and not _kept(f, old.content, text, stated)
        )
        if lost and (new is not None or i in merged_away):  # a REMOVE is judged by its counters and the window
            sev: Severity = "critical" if rules.rated(old) else "warning"
            how = "merged away" if new is None else "rewritten"
            msg = f"[{i}] {how}: {len(lost)} fact(s) no bullet states any more: {', '.join(map(_shown, lost[:5]))}"
            evidence: dict[str, Any] = {"before": old.content, "after": new.content if new else None}
            evidence["counters"] = {"helpful": old.helpful, "harmful": old.harmful}
            alerts.append(make("facts", sev, msg, v, evidence, ids=(i,), facts=tuple(lost)))
        if new is not None and (lost or len(new.content) <= (1 - rules.shrink) * len(old.content)):
            ev.eroded.append(i)
        if new is None and not cleanup and i not in merged_away:
            ev.removed.append(i)
            if rules.rated(old):
                msg = f"[{i}] removed although rated helpful {old.helpful}, harmful {old.harmful}"
                alerts.append(make("counters", "warning", msg, v, {"content": old.content}, ids=(i,)))
    ev.twinned = len(twins(after, rules.rules))
    return alerts, ev


def _counters(
    make: Callable[..., Alert], rules: Subtle, old: Bullet, new: Bullet, v: Versions, alerts: list[Alert], ev: Events
) -> None:
    if new.harmful > old.harmful and rules.rated(old):
        ev.harmful_hits.extend([(old.id, old.helpful)] * (new.harmful - old.harmful))
        if new.harmful > new.helpful:
            msg = f"[{old.id}] pushed from helpful {old.helpful}/harmful {old.harmful} to {new.helpful}/{new.harmful}"
            alerts.append(make("counters", "warning", msg, v, {"content": old.content}, ids=(old.id,)))


def _added(
    make: Callable[..., Alert],
    rules: Subtle,
    before: Playbook,
    new: Bullet,
    v: Versions,
    alerts: list[Alert],
    ev: Events,
) -> None:
    if (found := contradicted_in(before, new.content, rules.rules)) is not None:
        other, was, now = found
        msg = f"[{new.id}] says {_shown(now)} where [{other}] says {_shown(was)}"
        evidence = {"added": new.content, "existing": before[other].content}
        alerts.append(make("contradiction", "warning", msg, v, evidence, ids=(new.id, other), facts=(was, now)))
        return
    if (twin := twin_in(before, new.content, rules.rules)) is not None:
        ev.duplicate_adds.append(new.id)
        msg = f"[{new.id}] says what [{twin}] already says"
        evidence = {"added": new.content, "existing": before[twin].content}
        alerts.append(make("redundancy", "info", msg, v, evidence, ids=(new.id, twin)))


def _kept(fact: str, old: str, text: str, stated: Any) -> bool:
    """Whether ``fact`` of ``old`` survives in ``text`` (the bullet's new content, or what it was merged into). A
    hard fact also survives when another bullet states it; a condition belongs to its rule: it survives when its
    qualifier is still said as often, or with the word it bound."""
    if not fact.startswith("cond:"):
        return still_in(fact, text) or bool(stated.get(fact, NO_IDS))
    qualifier, _, bound = fact[5:].partition(":")
    rx = qualifier_rx(qualifier)
    n_new = len(rx.findall(text.casefold()))
    return n_new >= len(rx.findall(old.casefold())) or (n_new > 0 and bound in subject(text))


def _shown(fact: str) -> str:
    return repr(fact.split(":", 1)[1]) if ":" in fact else repr(fact)


@dataclass
class Window:
    """The rolling windows over the last steps: fed one step's :class:`Events` at a time."""

    rules: Subtle
    steps: deque[Events] = field(default_factory=deque)
    active: set[str] = field(default_factory=set)
    base_twinned: tuple[int, int] | None = None  # (twinned, bullets) at the window's first version
    top_helpful: int = 0  # the helpful count of the most helpful tenth of the bullets (refreshed every few steps)
    seen: int = 0

    def rank(self, pb: Playbook) -> None:
        """Find again which bullets are the most helpful (O(n): every ``window`` steps)."""
        counts = sorted((b.helpful for b in pb.bullets_by_id.values()), reverse=True)
        self.top_helpful = max(self.rules.well_rated + 1, counts[len(counts) // 10] if counts else 0)

    def start(self, pb: Playbook) -> None:
        """The baseline: the version the history starts from. Its indexes are built here, once (O(n)), so that
        every step after costs O(delta)."""
        for which in INDEX_KEYS:
            token_index(pb, which)
        self.rank(pb)
        self.base_twinned = (len(twins(pb, self.rules.rules)), len(pb))

    def feed(self, make: Callable[..., Alert], ev: Events, v: Versions) -> list[Alert]:
        r = self.rules
        self.steps.append(ev)
        while len(self.steps) > r.window:
            first = self.steps.popleft()
            self.base_twinned = (first.twinned, first.bullets)
        alerts: list[Alert] = []
        steps = list(self.steps)

        def counted(name: str, hits: list[tuple[int | None, str]], line: int, message: str) -> None:
            if len(hits) < line:
                self.active.discard(name)
                return
            if name in self.active:
                return
            self.active.add(name)
            versions = sorted({x for x, _ in hits if x is not None})
            ids = tuple(dict.fromkeys(i for _, i in hits))
            evidence = {"versions": versions, "window": r.window}
            alerts.append(make(name.split("/")[0], "warning", message.format(n=len(hits)), v, evidence, ids=ids))

        eroded = [(e.version, i) for e in steps if e.eroded for i in e.eroded[:1]]
        counted(
            "erosion",
            eroded,
            r.erosion_steps,
            f"{{n}} steps in the last {r.window} shortened a bullet or dropped a fact from it",
        )
        removed = [(e.version, i) for e in steps for i in e.removed]
        counted(
            "removal", removed, r.removals, f"{{n}} bullets that were not harmful removed in the last {r.window} steps"
        )
        top = self.top_helpful
        burst = [(e.version, i) for e in steps[-r.burst_window :] for i, helpful in e.harmful_hits if helpful >= top]
        counted(
            "counters/burst",
            burst,
            r.burst_hits,
            f"{{n}} harmful tags on the most helpful bullets (helpful >= {top}) in the last {r.burst_window} steps",
        )
        dups = [(e.version, i) for e in steps for i in e.duplicate_adds]
        counted(
            "redundancy/adds", dups, r.duplicate_adds, f"{{n}} additions in the last {r.window} steps repeat a bullet"
        )
        if self.base_twinned is not None and ev.bullets:
            t0, n0 = self.base_twinned
            share0, share1 = t0 / n0 if n0 else 0.0, ev.twinned / ev.bullets
            rising = share1 - share0 >= r.twin_rise and ev.twinned - t0 >= r.duplicate_adds
            if not rising:
                self.active.discard("redundancy/share")
            elif "redundancy/share" not in self.active:
                self.active.add("redundancy/share")
                msg = f"bullets with a near-duplicate rose from {share0:.0%} to {share1:.0%} in {len(steps)} steps"
                evidence: dict[str, Any] = {"share": [round(share0, 3), round(share1, 3)], "twinned": [t0, ev.twinned]}
                alerts.append(make("redundancy", "warning", msg, v, evidence))
        return alerts


__all__ = ["Events", "Subtle", "Window", "step"]
