"""Collapse detectors: catch a context losing what it knew, one candidate version at a time or over a history.

Each detector compares a version with the one before it (and, for some, the history and task metrics) and emits
typed :class:`Alert` s with a severity, the evidence and the versions involved. ``critical`` alerts block: the
:class:`CollapseGuard` (the loop's guard node) rejects a candidate delta that raises one and records why.

Detectors and their default thresholds (all configurable):

- ``size``: the context shrinks by more than 35 % of its tokens or bullets in one step (critical), 25 % (warning).
  Playbooks under ``min_tokens`` are ignored (a few bullets moving is not a collapse).
- ``brevity``: the mean bullet length falls by more than 60 % (critical) or 30 % (warning), or the share of bullets
  carrying specifics (digits, formulas, code, quoted names) falls by more than half (warning).
- ``retention``: the share of the earlier version's bullets whose content is still present (same id and text, or
  a bullet that keeps every number and code of it and is close in wording: token-set Jaccard >= 0.6, or cosine
  >= 0.8 when an embedder is given) falls
  below 0.7 with at least 3 bullets lost (critical) or below 0.9 (warning). Probe facts (strings that must stay
  known) that were present and are now absent are critical.
- ``redundancy``: with an embedder, a step raises the share of bullets with a near-duplicate by more than 5 points
  (warning); without one, additions that repeat a bullet and a rising share of twins (:mod:`ace.collapse.subtle`).
- ``churn``: the share of the earlier bullets rewritten or removed in one step exceeds 0.8 (critical) or 0.5 (warning).
- ``quality``: bullets added or rewritten in the step that fail :class:`~ace.playbook.QualityRules` (numbers
  only, a fragment of under three words): a warning for an addition, critical when a bullet that met the rules is
  rewritten into one that does not (its meaning is erased), and for sections named like operations or with under
  three letters.
- ``injection``: bullets added or rewritten in the step that read as instructions to the model (overriding the
  prompt, asking for secrets, sending data to a URL, role tags, hidden characters): critical.
- ``regression``: rolling accuracy over the last ``window`` tasks is below the baseline's with a one-sided
  two-proportion z-test at p < 0.05 (warning: accuracy is noisy; make it blocking by policy if you trust it).

**Cost per step.** When ``after`` was made from ``before`` by ``apply`` (the loop's guard, a replay: see
:meth:`~ace.playbook.Playbook.touched_since`), a step costs O(delta), not O(bullets): the per-version aggregates
(rendered size, mean length, share of specific bullets, probe counts) are carried from the parent and updated for
the bullets the delta touched, per-bullet features are cached by content, and a changed or removed bullet is
matched for retention only against the bullets that share one of its rarest words (prefix filtering: a bullet
with Jaccard >= t must hold at least one of them), from a word index carried the same way (the index and the
aggregates are :mod:`ace.collapse.index`; this module is the detectors' policy). Playbooks with no such link are
compared in full, with the same results. The embedding-based checks (``similar``: redundancy, cosine
retention) stay O(n) per step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ace.collapse.alerts import Alert, Severity, _alert
from ace.collapse.index import (
    NO_IDS,
    Posting,
    carry_indexes,
    features,
    probe_count,
    specific_index,
    stats,
    tokens,
    word_index,
)
from ace.collapse.relations import link
from ace.collapse.subtle import Subtle, Window
from ace.collapse.subtle import step as subtle_step
from ace.playbook import Bullet, Playbook, QualityRules, injection
from ace.playbook.quality import content_problem, section_problem


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _position(pb: Playbook) -> Callable[[Bullet], tuple[int, int]]:
    """Sort key putting bullets in render order (section, then place in it), without walking the playbook."""
    sections = {name: n for n, name in enumerate(pb.sections)}

    def key(b: Bullet) -> tuple[int, int]:
        return sections[b.section], pb.sections[b.section].position(b.id)

    return key


@dataclass
class Detectors:
    """The detector set with its thresholds. ``similar(texts_a, texts_b) -> matrix`` (cosines) enables the
    embedding-based matching; without it, matching is by token-set Jaccard."""

    min_tokens: int = 200
    size_warning: float = 0.25
    size_critical: float = 0.35
    brevity_warning: float = 0.3
    brevity_critical: float = 0.6
    retention_warning: float = 0.9
    retention_critical: float = 0.7
    retention_min_lost: int = 3
    jaccard_match: float = 0.6
    cosine_match: float = 0.8
    redundancy_warning: float = 0.05
    churn_warning: float = 0.5
    churn_critical: float = 0.8
    probes: list[str] = field(default_factory=list)
    similar: Callable[[list[str], list[str]], Any] | None = None
    quality: QualityRules = field(default_factory=lambda: QualityRules(reject_injection=False))
    subtle: Subtle = field(default_factory=Subtle)

    # -- one step -------------------------------------------------------------------------------------------------
    def check(
        self, before: Playbook, after: Playbook, *, versions: tuple[int | None, int | None] = (None, None)
    ) -> list[Alert]:
        """The alerts of one step on its own (no window: :meth:`watch` keeps those over a history)."""
        return self._step(before, after, versions)[0]

    def _step(
        self, before: Playbook, after: Playbook, versions: tuple[int | None, int | None]
    ) -> tuple[list[Alert], Any]:
        alerts: list[Alert] = []
        link(before, after)
        carry_indexes(before, after)
        for fn in (self._size, self._brevity, self._retention, self._churn, self._redundancy):
            alerts.extend(fn(before, after, versions))
        found, events = subtle_step(_alert, self.subtle, before, after, versions)
        return alerts + found + self.content(before, after, versions=versions), events

    def watch(self, start: Playbook | None = None) -> Watch:
        """A :class:`Watch`: the per-step alerts plus the windows over the steps it is fed, from ``start``."""
        w = Watch(self, Window(self.subtle))
        if start is not None:
            w.window.start(start)
        return w

    def content(
        self, before: Playbook, after: Playbook, *, versions: tuple[int | None, int | None] = (None, None)
    ) -> list[Alert]:
        """The ``quality`` and ``injection`` alerts for what ``after`` adds or rewrites (everything, against an
        empty ``before``)."""
        alerts: list[Alert] = []
        touched = after.touched_since(before)
        for b in after if touched is None else sorted((after[i] for i in touched if i in after), key=_position(after)):
            old = before.get(b.id)
            if old is not None and old.content == b.content:
                continue
            if found := injection(b.content):
                msg = f"[{b.id}] reads as a prompt injection: {found}"
                alerts.append(Alert("injection", "critical", msg, versions, {"id": b.id}))
            if why := content_problem(b.content, self.quality):
                erased = old is not None and content_problem(old.content, self.quality) is None
                sev: Severity = "critical" if erased else "warning"
                msg = f"[{b.id}] {why}" + (" (it replaced a bullet that had one)" if erased else "")
                alerts.append(Alert("quality", sev, msg, versions, {"id": b.id}))
        for name in after.sections:
            if name not in before.sections and (why := section_problem(name, self.quality)):
                alerts.append(Alert("quality", "critical", why, versions, {"section": name}))
        return alerts

    def _size(self, before: Playbook, after: Playbook, v: tuple[int | None, int | None]) -> list[Alert]:
        t0, t1 = tokens(before), tokens(after)
        if t0 < self.min_tokens:
            return []
        tok_drop = 1 - t1 / t0
        bul_drop = 1 - len(after) / len(before) if len(before) else 0.0
        drop = max(tok_drop, bul_drop)
        sev: Severity | None = (
            "critical" if drop > self.size_critical else "warning" if drop > self.size_warning else None
        )
        if sev is None:
            return []
        msg = f"context shrank from {t0} to {t1} tokens ({len(before)} → {len(after)} bullets) in one step"
        ev = {"tokens": [t0, t1], "bullets": [len(before), len(after)], "drop": round(drop, 3)}
        return [Alert("size", sev, msg, v, ev)]

    def _brevity(self, before: Playbook, after: Playbook, v: tuple[int | None, int | None]) -> list[Alert]:
        if len(before) < 5 or not len(after):
            return []
        s0, s1 = stats(before), stats(after)
        mean0, mean1 = s0.content_chars / s0.bullets, s1.content_chars / s1.bullets
        spec0, spec1 = s0.specific / s0.bullets, s1.specific / s1.bullets
        shrink = 1 - mean1 / mean0 if mean0 else 0.0
        ev = {"mean_chars": [round(mean0, 1), round(mean1, 1)], "specific_share": [round(spec0, 3), round(spec1, 3)]}
        if shrink > self.brevity_critical:
            return [Alert("brevity", "critical", f"bullets got {shrink:.0%} shorter on average", v, ev)]
        if shrink > self.brevity_warning:
            return [Alert("brevity", "warning", f"bullets got {shrink:.0%} shorter on average", v, ev)]
        if spec0 >= 0.2 and spec1 < spec0 / 2:
            return [Alert("brevity", "warning", f"specific bullets fell from {spec0:.0%} to {spec1:.0%}", v, ev)]
        return []

    def retained(self, before: Playbook, after: Playbook) -> tuple[float, list[str]]:
        """The share of ``before``'s bullets still present in ``after``, and the ids of those lost."""
        if not len(before):
            return 1.0, []
        changed = after.touched_since(before)
        candidates: Iterable[str] = changed if changed is not None else before.bullets_by_id
        rest = []
        for i in candidates:
            b = before.get(i)
            if b is None:
                continue
            now = after.get(i)
            if now is None or now.content != b.content:
                rest.append(b)
        kept: set[str] = set()
        if rest and len(after):
            kept = self._matched(rest, after)
        lost = {b.id for b in rest} - kept
        return 1 - len(lost) / len(before), [b.id for b in sorted((before[i] for i in lost), key=_position(before))]

    def _matched(self, rest: list[Bullet], after: Playbook) -> set[str]:
        """Ids of the ``rest`` bullets whose fact is still stated by some bullet of ``after``."""
        kept: set[str] = set()
        if self.similar is not None:
            # only a bullet's own rewrite or the bullet it was merged into can keep it: a removed bullet is not
            # kept because some other bullet happens to read alike (that hid real cuts in a redundant playbook)
            into = {m: b.id for b in after for m in b.merged_from}
            for b in rest:
                target = after.get(b.id) or (after.get(into[b.id]) if b.id in into else None)
                if target is None:
                    continue
                need = features(b.content)[1]
                if need <= features(target.content)[1] and self.similar([b.content], [target.content])[0][0] >= (
                    self.cosine_match
                ):
                    kept.add(b.id)
            return kept
        by_id = after.bullets_by_id
        for b in rest:
            w, need, _ = features(b.content)
            pool: Iterable[str]
            if not w or self.jaccard_match <= 0:  # no words (or no threshold): compare with everything
                pool = by_id
            elif need:
                # a bullet that states b's fact states every number and code of it, so it is among the bullets
                # holding the rarest of those (the small index of numbers and codes tells which)
                specific = specific_index(after)
                smallest: Posting | None = None
                for token in need:
                    posting = specific.get(token, NO_IDS)
                    if smallest is None or len(posting) < len(smallest):
                        smallest = posting
                pool = smallest if smallest is not None else ()
            else:
                # a bullet with Jaccard >= t holds at least ceil(t |w|) of these words, so one of the rarest
                # |w| - ceil(t |w|) + 1 of them (the word index, built the first time a step needs it)
                index = word_index(after)
                rarest = sorted(w, key=lambda x: len(index.get(x, NO_IDS)))
                k = len(w) - math.ceil(self.jaccard_match * len(w) - 1e-9) + 1
                pool = {i for x in rarest[:k] for i in index.get(x, NO_IDS)}
            if w and b.id in by_id:  # its own rewrite first: the common match
                pool = itertools.chain((b.id,), pool)
            for j in pool:
                x, facts, _ = features(by_id[j].content)
                # a rewrite that drops or changes a number or code is not the same fact
                if need <= facts and _jaccard(w, x) >= self.jaccard_match:
                    kept.add(b.id)
                    break
        return kept

    def _retention(self, before: Playbook, after: Playbook, v: tuple[int | None, int | None]) -> list[Alert]:
        alerts: list[Alert] = []
        share, lost = self.retained(before, after)
        ev = {"retained": round(share, 3), "lost": lost[:20], "n_lost": len(lost)}
        if share < self.retention_critical and len(lost) >= self.retention_min_lost:
            alerts.append(Alert("retention", "critical", f"only {share:.0%} of the earlier bullets remain", v, ev))
        elif share < self.retention_warning and len(lost) >= self.retention_min_lost:
            alerts.append(Alert("retention", "warning", f"{share:.0%} of the earlier bullets remain", v, ev))
        if self.probes:
            gone = [p for p in self.probes if self.knows(before, p) and not self.knows(after, p)]
            if gone:
                alerts.append(
                    Alert("retention", "critical", f"{len(gone)} probe fact(s) forgotten", v, {"probes_lost": gone})
                )
        return alerts

    def knows(self, pb: Playbook, probe: str) -> bool:
        """Whether ``probe`` is stated in the playbook: as a substring (case-insensitive), else by similarity."""
        if probe_count(pb, probe.casefold()):
            return True
        if self.similar is not None and len(pb):
            return bool(max(self.similar([probe], [b.content for b in pb])[0]) >= self.cosine_match)
        return False

    def _churn(self, before: Playbook, after: Playbook, v: tuple[int | None, int | None]) -> list[Alert]:
        if len(before) < 5:
            return []
        touched = after.touched_since(before)
        ids: Iterable[str] = touched if touched is not None else before.bullets_by_id
        changed = [i for i in ids if i in before and (i not in after or after[i].content != before[i].content)]
        share = len(changed) / len(before)
        sev: Severity | None = (
            "critical" if share > self.churn_critical else "warning" if share > self.churn_warning else None
        )
        if sev is None:
            return []
        return [Alert("churn", sev, f"{share:.0%} of bullets rewritten or removed in one step", v, {"share": share})]

    def _redundancy(self, before: Playbook, after: Playbook, v: tuple[int | None, int | None]) -> list[Alert]:
        """With an embedder: a step that raises the share of bullets with a near-duplicate (cosine >= 0.9) by more
        than ``redundancy_warning`` points, judged against the version before (a playbook that always had
        near-duplicates does not warn on every step). Without one, :mod:`ace.collapse.subtle` counts twins."""
        if self.similar is None or len(after) < 5:
            return []
        share0, share1 = self._dup_share(before), self._dup_share(after)
        if share1 - share0 <= self.redundancy_warning:
            return []
        msg = f"bullets with a near-duplicate rose from {share0:.0%} to {share1:.0%} in one step"
        return [Alert("redundancy", "warning", msg, v, {"share": [round(share0, 3), round(share1, 3)]})]

    def _dup_share(self, pb: Playbook) -> float:
        import numpy as np

        def compute() -> float:
            texts = [b.content for b in pb]
            if len(texts) < 2 or self.similar is None:
                return 0.0
            sims = np.array(self.similar(texts, texts), dtype=float)
            np.fill_diagonal(sims, 0.0)
            return float((sims >= 0.9).any(axis=1).mean())

        return float(pb.derived(("collapse-dup-share", id(self.similar)), compute))

    # -- over a history -------------------------------------------------------------------------------------------
    def scan(self, versions: Sequence[tuple[int, Playbook]]) -> list[Alert]:
        """Alerts for each consecutive pair of ``(version, playbook)``, and the content alerts of the first version
        on its own (junk or an injection that came in with an import)."""
        alerts: list[Alert] = []
        if versions:
            v0, first = versions[0]
            alerts.extend(self.content(Playbook.empty(), first, versions=(None, v0)))
            watch = self.watch(first)
            for (v0, p0), (v1, p1) in itertools.pairwise(versions):
                alerts.extend(watch.step(p0, p1, versions=(v0, v1)))
        return alerts


@dataclass
class Watch:
    """The detectors over a history, one step at a time: each step's own alerts, and the windows' (erosion over
    many steps, creeping removal, bursts of harmful tags, near-duplicates piling up). What :meth:`Detectors.scan`,
    ``ace playbook check``, the service's ``/check`` and the :class:`CollapseGuard` all use, so they agree."""

    detectors: Detectors
    window: Window

    def step(
        self, before: Playbook, after: Playbook, *, versions: tuple[int | None, int | None] = (None, None)
    ) -> list[Alert]:
        if self.window.base_twinned is None:
            self.window.start(before)
        alerts, events = self.detectors._step(before, after, versions)
        self.window.seen += 1
        if self.window.seen % self.window.rules.window == 0:
            self.window.rank(after)
        return alerts + self.window.feed(_alert, events, versions)


def regression(
    outcomes: Sequence[bool], *, baseline: int | None = None, window: int = 20, alpha: float = 0.05
) -> Alert | None:
    """Performance regression: the last ``window`` outcomes against the first ``baseline`` ones (default: all
    before the window), one-sided two-proportion z-test. None when not significant or too few outcomes."""
    if len(outcomes) < window + 5:
        return None
    recent = outcomes[-window:]
    base = outcomes[:baseline] if baseline is not None else outcomes[:-window]
    n1, n2 = len(base), len(recent)
    p1, p2 = sum(base) / n1, sum(recent) / n2
    pooled = (sum(base) + sum(recent)) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0 or p2 >= p1:
        return None
    z = (p1 - p2) / se
    p = 0.5 * math.erfc(z / math.sqrt(2))
    if p >= alpha:
        return None
    ev = {"baseline": round(p1, 3), "recent": round(p2, 3), "z": round(z, 2), "p": round(p, 4), "n": [n1, n2]}
    return Alert("regression", "warning", f"accuracy fell from {p1:.0%} to {p2:.0%} (p={p:.3f})", (None, None), ev)


@dataclass
class CollapseGuard:
    """The loop's guard: runs the detectors on each candidate; an alert at ``block_at`` or above rejects it.
    Every alert seen is kept in ``alerts`` (rejected candidates included) for the run's record."""

    detectors: Detectors = field(default_factory=Detectors)
    block_at: Severity = "critical"
    alerts: list[Alert] = field(default_factory=list)
    _watch: Watch | None = field(default=None, repr=False)

    def __call__(
        self, before: Playbook, after: Playbook, *, versions: tuple[int | None, int | None] = (None, None)
    ) -> str | None:
        """None when ``after`` may be committed, else why not. The windows see the steps it let through."""
        if self._watch is None:
            self._watch = self.detectors.watch(before)
        window = self._watch.window
        saved = (window.steps.copy(), set(window.active), window.base_twinned)
        found = self._watch.step(before, after, versions=versions)
        self.alerts.extend(found)
        blocking = [a for a in found if a.at_least(self.block_at)]
        if not blocking:
            return None
        window.steps, window.active, window.base_twinned = saved  # a rejected step did not happen
        return "; ".join(f"{a.detector} ({a.severity}): {a.message}" for a in blocking)


__all__ = ["Alert", "CollapseGuard", "Detectors", "Severity", "Watch", "regression"]
