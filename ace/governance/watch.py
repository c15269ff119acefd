"""Watch after a promotion: the outcomes agents report for the version they read feed the regression detector
(:func:`ace.collapse.detectors.regression`), and a significant drop demotes ``serving`` to the version it was
promoted from. ``candidate`` is not touched: learning goes on at the head.

Under a playbook whose gate has the watch on (``ace review policy NAME gated --watch``), every episode reported with
an outcome (``success``/``correct``/``won``) is kept with the version the agent read (its ``playbook_version``, as
the Agents SDK hooks send it; else the version served when it is reported). Once the version served has
``window`` outcomes since it was moved there by a promotion (a trial, an approval, an admin's promote), its last
``window`` outcomes are compared with the outcomes of the version it replaced (one-sided two-proportion test at the
watch's alpha); on an alert, ``serving`` moves back to that version, the move's reason carrying the alert's message
and its evidence the alert and the counts. A demotion is not watched in turn (the version it goes back to was served
before), and a move by someone else in the meantime wins (the demotion is then not made).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ace.collapse.detectors import Alert, regression
from ace.governance import gate as g
from ace.store import SERVING, ChannelMoved, PlaybookNotFound, PlaybookStore

WATCHER = "ace:watch"
MIN_BASELINE = 5  # outcomes of the previous version the comparison needs at least


@dataclass(frozen=True)
class Watched:
    """What one reported outcome led to: the version it was kept for, and the alert and demotion if any."""

    version: int
    alert: Alert | None = None
    demoted_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "alert": None if self.alert is None else self.alert.to_dict(),
                "demoted_to": self.demoted_to}  # fmt: skip


def observe(
    store: PlaybookStore,
    name: str,
    *,
    namespace: str,
    success: bool,
    version: int | None = None,
    episode: str | None = None,
) -> Watched | None:
    """Keep an outcome reported for ``version`` (default: the version served now) and check the version served
    (see the module doc). None when the playbook's watch is off (nothing is kept)."""
    with store.transaction() as conn:
        try:
            pid = g.playbook_id(conn, namespace, name)
        except PlaybookNotFound:  # an episode for a playbook a worker will make: nothing is watched yet
            return None
        settings = g.read(conn, pid)
    if settings is None or not settings.watch:
        return None
    serving = store.resolve(name, SERVING, namespace=namespace)
    head = store.head_version(name, namespace=namespace)
    if version is None or not 1 <= version <= head:
        version = serving  # a version the agent could not have read is not believed
    with store.transaction(write=True) as conn:
        g.add_outcome(conn, pid, version, bool(success), None if episode is None else episode[:200])
    if version != serving:
        return Watched(version)
    return check(store, name, namespace=namespace, window=settings.watch_window, alpha=settings.watch_alpha)


def check(store: PlaybookStore, name: str, *, namespace: str, window: int, alpha: float) -> Watched:
    """Compare the version served with the one it was promoted from, and demote it on a significant drop."""
    serving = store.resolve(name, SERVING, namespace=namespace)
    moves = store.channel_log(name, namespace=namespace, channel=SERVING)
    last = moves[-1] if moves else None
    if last is None or last.version != serving or last.previous is None or last.previous == serving:
        return Watched(serving)  # serving follows the head, or was never promoted from a version
    if (last.evidence or {}).get("kind") == "demotion":
        return Watched(serving)
    previous = last.previous
    with store.transaction() as conn:
        pid = g.playbook_id(conn, namespace, name)
        recent = g.outcomes_of(conn, pid, serving, last=window)
        base = g.outcomes_of(conn, pid, previous)
    if len(recent) < window or len(base) < MIN_BASELINE:
        return Watched(serving)
    alert = regression(base + recent, baseline=len(base), window=window, alpha=alpha)
    if alert is None:
        return Watched(serving)
    alert = Alert(alert.detector, alert.severity, alert.message, (previous, serving), alert.evidence)
    evidence = {"kind": "demotion", "alert": alert.to_dict(), "demoted": serving, "to": previous,
                "window": window, "alpha": alpha, "baseline": [sum(base), len(base)],
                "recent": [sum(recent), len(recent)]}  # fmt: skip
    reason = f"watch: demoted v{serving} to v{previous}: {alert.message}"
    try:
        store.move_channel(name, SERVING, previous, namespace=namespace, author=WATCHER, reason=reason,
                           evidence=evidence, expected=serving)  # fmt: skip
    except ChannelMoved:
        return Watched(serving, alert)
    return Watched(serving, alert, previous)


__all__ = ["MIN_BASELINE", "WATCHER", "Watched", "check", "observe"]
