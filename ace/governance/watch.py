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

from sqlalchemy import select

from ace.collapse.detectors import Alert, regression
from ace.governance import gate as g
from ace.store import SERVING, ChannelMoved, PlaybookNotFound, PlaybookStore
from ace.store import schema as t

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
    if version is None:
        version = serving  # an agent that does not say which version it read read the one served
    elif isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= head:
        return Watched(serving)  # a version the agent could not have read: not believed, not kept
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
        # the version it replaced, and every version with the same state (a rejection, a rollback, an approval of
        # part of a change make a new version of a state agents read before: its outcomes are that state's)
        same = set(_same_state(conn, pid, previous)) | _rejected_back(moves, previous)
        base = [o for v in sorted(same) for o in g.outcomes_of(conn, pid, v)]
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


def _rejected_back(moves: list[Any], version: int) -> set[int]:
    """The versions served before ``version`` with the same bullets: a rejection serves the state agents read
    before it as a new version (its ids counter moved on, so its digest differs); followed back through rejections."""
    found: set[int] = set()
    for move in reversed(moves):
        if move.version == version and (move.evidence or {}).get("decision") == "rejected" and move.previous:
            found.add(int(move.previous))
            version = int(move.previous)
    return found


def _same_state(conn: Any, pid: int, version: int) -> list[int]:
    """``version`` and every other version of the playbook whose recorded digest is the same (oldest first)."""
    digest = select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == version)
    rows = conn.execute(
        select(t.versions.c.version)
        .where(t.versions.c.playbook_id == pid, t.versions.c.digest == digest.scalar_subquery())
        .order_by(t.versions.c.version)
    ).all()
    return [int(r.version) for r in rows] or [version]


__all__ = ["MIN_BASELINE", "WATCHER", "Watched", "check", "observe"]
