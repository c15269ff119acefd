"""What each console page shows, gathered through :class:`~ace.service.core.Service` (never the store): one plain
function per page, run in one of the service's threads, returning the template's context.

Pages are bounded whatever the playbook's size: bullets, versions and diff entries come a page at a time, and the
work per page is the service call it needs (the head is held by the store; an old version is rebuilt once).
"""

from __future__ import annotations

import difflib
import re
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from ace.playbook.diff import BulletChange, PlaybookDiff
from ace.playbook.diff import diff as compare
from ace.playbook.model import Bullet, Playbook
from ace.playbook.render import SCORES_HEADER, approx_tokens, render
from ace.service.auth import Grant
from ace.service.core import (
    PROMPT_BUDGET,
    PROMPT_LAYOUT,
    BadRequest,
    NoMemory,
    Read,
    Service,
    TooMuchWork,
    normal_name,
)
from ace.service.queue import Status
from ace.store import VersionInfo

PAGE_BULLETS = 100  # bullets on one page of a playbook
PAGE_VERSIONS = 50  # versions on one page of the timeline
PAGE_DIFF = 100  # entries (added, removed, changed) on one page of a diff
PAGE_PLAYBOOKS = 100  # playbooks on one page of the index
RECENT = 8  # versions shown on a playbook's own page
WORD_DIFF_TOKENS = 4_000  # words and spaces per side beyond which an UPDATE is shown as before / after only
BLAME_RANGE = 32  # versions apart within which a blame's deltas are read in one history call
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")
REVIEWABLE = ("review", "gated+review")
TURNED_DOWN = 20  # lessons reviewers turned down lately, shown on the review page
ALERT_VERSIONS = 20  # the last versions whose alerts the index and the timeline show (the check page: any span)
INDEX_CHECK_WORK = 100_000  # bullet-versions one index request may check anew (the others: a later request)
MOVES_SHOWN = 20  # the latest channel moves listed on the timeline
SEVERITIES = ("critical", "warning", "info")

Context = dict[str, Any]
Segment = tuple[Literal["=", "-", "+"], str]


@dataclass(frozen=True, slots=True)
class Paged:
    """One page of a longer list: the items, the page number (from 1), how many pages and items in all."""

    items: list[Any]
    page: int
    pages: int
    total: int
    counts: Counter[str] = field(default_factory=Counter)  # of every item by kind, where the list has kinds


def paged(items: list[Any], page: int, size: int) -> Paged:
    pages = max(1, -(-len(items) // size))
    page = min(max(page, 1), pages)
    return Paged(items[(page - 1) * size : page * size], page, pages, len(items))


# -- text ---------------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def word_diff(before: str, after: str) -> list[Segment]:
    """``before`` -> ``after`` word by word (difflib over words, spaces and punctuation): ``=`` kept, ``-`` gone,
    ``+`` new. Texts longer than :data:`WORD_DIFF_TOKENS` tokens a side are one removal and one addition."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    if len(a) > WORD_DIFF_TOKENS or len(b) > WORD_DIFF_TOKENS:
        return [("-", before), ("+", after)]
    out: list[Segment] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return out


def as_stored(text: str) -> str:
    """Content as :func:`ace.playbook.text.clean_text` stores it (a resolved delta keeps the text as sent)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n").strip()


# -- the index ----------------------------------------------------------------------------------------------------
def index(svc: Service, grant: Grant, *, page: int = 1) -> Context:
    """Every playbook the token may read, by namespace: size, head, channels, last change."""
    listed = svc.catalog(grant)
    shown = paged(listed, page, PAGE_PLAYBOOKS)
    rows = []
    for p in shown.items:
        last = svc.history(grant, p.namespace, p.name, since=p.head, limit=1)[0]
        channels = {c["channel"]: c for c in svc.channels(grant, p.namespace, p.name)}
        serving = channels.get("serving", {})
        rows.append(
            {
                "namespace": p.namespace,
                "name": p.name,
                "head": p.head,
                "bullets": last["bullets"],
                "last": last,
                "serving": serving.get("version"),
                "follows": serving.get("follows_head", True),
                "others": sorted(c for c in channels if c not in ("serving", "candidate")),
            }
        )
    namespaces = sorted({p.namespace for p in listed} | {n for n in grant.namespaces if n != "*"})
    return {"rows": rows, "paged": shown, "namespaces": namespaces}


# -- versions read lately --------------------------------------------------------------------------------------
class States:
    """The playbook versions the console read lately, kept: a version never changes (its digest is checked when the
    store rebuilds it), and the store itself holds only its newest state, so a page of ``serving`` pinned behind the
    head, of an old version or of a blame back to the import would rebuild one (about 100 ms at 10,000 bullets) at
    every request. Every use still goes through the service: :meth:`get` reads the version's record (the token's
    read check) and keeps a state only while that record's digest is the one it was read with."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self._held: OrderedDict[tuple[str, str, int], tuple[VersionInfo, Playbook]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, svc: Service, grant: Grant, namespace: str, name: str, version: int | None
    ) -> tuple[VersionInfo, Playbook]:
        """``(record, playbook)`` of ``version`` (None: the head, which the store holds)."""
        if version is None:
            return svc.playbook(grant, namespace, name)
        key = (normal_name(namespace, "namespace"), normal_name(name, "playbook"), version)
        record = svc.history(grant, namespace, name, since=version, limit=1)
        with self._lock:
            held = self._held.get(key)
            if held is not None and record and held[0].digest == record[0]["digest"]:
                self._held.move_to_end(key)
                return held
        found = svc.playbook(grant, namespace, name, version=version)
        with self._lock:
            self._held[key] = found
            while len(self._held) > self.size:
                self._held.popitem(last=False)
        return found


def prompt_of(namespace: str, name: str, version: int, pb: Playbook, budget: int | None) -> Read:
    """What :meth:`Service.prompt` gives for ``pb`` (version ``version``), from a state already read: its first
    line, then the bullets under ``budget`` tokens in the prompt layout (tests/test_console.py holds them equal)."""
    ns, name = normal_name(namespace, "namespace"), normal_name(name, "playbook")
    header = (
        f"# playbook {ns}/{name} v{version} ({len(pb)} bullets): lessons "
        "learned from earlier episodes. Follow the bullets that apply and cite their ids (e.g. [shr-00001]) "
        "when you use one.\n\n"
    )
    text = render(pb, budget=budget, layout=PROMPT_LAYOUT)
    return Read(version, header + text, "text/plain", len(pb))


# -- a playbook ---------------------------------------------------------------------------------------------------
def playbook(
    svc: Service,
    grant: Grant,
    namespace: str,
    name: str,
    states: States,
    *,
    q: str = "",
    section: str = "",
    page: int = 1,
    budget: int | None = PROMPT_BUDGET,
    version: int | None = None,
) -> Context:
    """A playbook's prompt (what an agent reads from ``serving``, or ``version``, under ``budget`` tokens), its
    sections and bullets (the head's or ``version``'s, a page of them, filtered by ``q`` and ``section``), its
    channels and latest versions."""
    channels = svc.channels(grant, namespace, name)
    head = next(c["version"] for c in channels if c["channel"] == "candidate")
    serving = next((c["version"] for c in channels if c["channel"] == "serving"), head)
    info, pb = states.get(svc, grant, namespace, name, version)
    shown_info, shown = (info, pb) if version is not None else states.get(svc, grant, namespace, name, serving)
    prompt = prompt_of(namespace, name, shown_info.version, shown, budget)
    needle = q.strip().casefold()
    found = [
        b
        for b in pb
        if (not section or b.section == section) and (not needle or needle in b.id or needle in b.content.casefold())
    ]
    recent = svc.history(grant, namespace, name, since=max(1, head - RECENT + 1), limit=RECENT)
    return {
        "info": info,
        "head": head,
        "channels": channels,
        "sections": [(s, len(sec)) for s, sec in pb.sections.items()],
        "bullets": paged(found, page, PAGE_BULLETS),
        "q": q,
        "section": section,
        "prompt": prompt,
        "prompt_tokens": approx_tokens(prompt.text),
        "prompt_bullets": _bullets_in(prompt.text),
        "budget": budget,
        "version": version,
        "stats": _stats(pb),
        "recent": [_version_row(h, None) for h in reversed(recent)],
    }


def _bullets_in(text: str) -> int:
    """How many bullets a rendered prompt holds (the stable layout's scores block lists some of them again)."""
    body = text.split("\n" + SCORES_HEADER, 1)[0]
    return sum(1 for line in body.splitlines() if line.startswith("["))


def _stats(pb: Playbook) -> dict[str, int]:
    helpful = harmful = 0
    for b in pb:
        helpful += b.helpful
        harmful += b.harmful
    return {"bullets": len(pb), "sections": len(pb.sections), "helpful": helpful, "harmful": harmful}


# -- the timeline -------------------------------------------------------------------------------------------------
def timeline(svc: Service, grant: Grant, namespace: str, name: str, *, page: int = 1) -> Context:
    """Versions newest first, :data:`PAGE_VERSIONS` a page: size and its change, author, message, the delta's
    operations and provenance, and the channel moves (promotions, approvals, rollbacks of serving) to each."""
    channels = svc.channels(grant, namespace, name)
    head = next(c["version"] for c in channels if c["channel"] == "candidate")
    pages = max(1, -(-head // PAGE_VERSIONS))
    page = min(max(page, 1), pages)
    hi = head - (page - 1) * PAGE_VERSIONS
    lo = max(1, hi - PAGE_VERSIONS + 1)
    since = max(1, lo - 1)  # one more: the size before the first row
    history = svc.history(grant, namespace, name, since=since, limit=hi - since + 1)
    moves: dict[int | None, list[dict[str, Any]]] = {}
    log = [{**m, "kind": move_kind(m)} for m in svc.channel_log(grant, namespace, name)]
    for m in log:
        moves.setdefault(m["version"], []).append(m)
    rows = []
    for before, h in zip([None, *history], history, strict=False):
        if h["version"] < lo:
            continue
        rows.append(_version_row(h, before, moves.get(h["version"], [])))
    follow = moves.get(None, [])  # moves back to following the head
    top = history if page == 1 else svc.history(grant, namespace, name, since=head, limit=1)  # the head's size
    return {
        "rows": list(reversed(rows)),
        "paged": Paged([], page, pages, head),
        "head": head,
        "head_bullets": top[-1]["bullets"],
        "channels": channels,
        "follow": follow,
        "log": list(reversed(log[-MOVES_SHOWN:])),
        "moves_total": len(log),
    }


MOVE_KINDS = {"approved": "approval", "approved part": "approval of a part", "rejected": "rejection"}


def move_kind(m: dict[str, Any]) -> str:
    """What a channel move was: an ``approval`` (or ``approval of a part``) or a ``rejection`` by a reviewer, a
    ``promotion`` by a trial or to a later version, a ``demotion`` by the watch or to an earlier version, the policy
    pinning ``serving`` (``pin``), or following the head again (``follow``)."""
    evidence = m.get("evidence") or {}
    decision = evidence.get("decision")
    if isinstance(decision, str) and decision in MOVE_KINDS:
        return MOVE_KINDS[decision]
    if evidence.get("kind") == "demotion":
        return "demotion"
    if "trial" in evidence:
        return "promotion"
    if m.get("version") is None:
        return "follow"
    if str(m.get("reason") or "").startswith("policy "):
        return "pin"
    before, after = m.get("previous"), m["version"]
    if before is None or before == after:
        return "move"
    return "promotion" if after > before else "demotion"


# -- alerts: the collapse detectors over the last versions, kept per head -------------------------------------
class Alerts:
    """The collapse detectors' alerts over a playbook's last :data:`ALERT_VERSIONS` versions (fewer for a large
    playbook: at most the service's work bound), from :meth:`Service.check`, kept per head: the index and the
    timeline never run the detectors over a whole history, and run them once per head (a version never changes)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._held: OrderedDict[tuple[str, str, int], Context] = OrderedDict()
        self._lock = threading.Lock()

    def span(self, svc: Service, bullets: int) -> int:
        """How many of the last versions are checked for a playbook of ``bullets`` bullets."""
        limits = svc.limits
        return max(1, min(ALERT_VERSIONS, limits.check_span, limits.check_work // max(bullets, 1)))

    def get(
        self, svc: Service, grant: Grant, namespace: str, name: str, head: int, bullets: int, *, compute: bool = True
    ) -> Context | None:
        """The alerts of the last versions up to ``head`` (a playbook of ``bullets`` bullets there): ``first``,
        ``head``, ``alerts`` (most severe first), ``counts`` by severity and ``by_version`` (each alert under the
        version it is about), or ``problem``. None when not kept and ``compute`` is False."""
        ns = svc.allowed(grant, namespace, "read")  # what is kept is shown only to a token that may read it
        key = (ns, normal_name(name, "playbook"), head)
        with self._lock:
            if (held := self._held.get(key)) is not None:
                self._held.move_to_end(key)
                return held
        if not compute:
            return None
        first = max(1, head - self.span(svc, bullets) + 1)
        try:
            found = svc.check(grant, namespace, name, first=first)
        except TooMuchWork as e:  # the playbook grew since its size was read
            return {"first": first, "head": head, "alerts": [], "counts": {}, "by_version": {}, "problem": str(e)}
        order = {s: i for i, s in enumerate(SEVERITIES)}
        alerts = sorted(found["alerts"], key=lambda a: (order.get(a["severity"], 3), -(a["versions"][1] or 0)))
        by_version: dict[int, list[dict[str, Any]]] = {}
        for a in alerts:
            about = a["versions"][1] if a["versions"][1] is not None else a["versions"][0]
            if about is not None:
                by_version.setdefault(about, []).append(a)
        counts = Counter(a["severity"] for a in alerts)
        result = {"first": first, "head": head, "alerts": alerts, "by_version": by_version, "problem": None,
                  "counts": {s: counts[s] for s in SEVERITIES if counts[s]}}  # fmt: skip
        with self._lock:
            self._held[key] = result
            while len(self._held) > self.size:
                self._held.popitem(last=False)
        return result


def index_alerts(svc: Service, grant: Grant, rows: list[Context], alerts: Alerts) -> None:
    """Each index row's alerts (``row["alerts"]``): those kept, and new checks while their work (versions x
    bullets) stays under :data:`INDEX_CHECK_WORK` for this request; None for the rest (not checked yet)."""
    work = 0
    for r in rows:
        cost = alerts.span(svc, r["bullets"]) * max(r["bullets"], 1)
        kept = alerts.get(svc, grant, r["namespace"], r["name"], r["head"], r["bullets"], compute=False)
        if kept is None and work + cost <= INDEX_CHECK_WORK:
            work += cost
            kept = alerts.get(svc, grant, r["namespace"], r["name"], r["head"], r["bullets"])
        r["alerts"] = kept


def _version_row(
    h: dict[str, Any], before: dict[str, Any] | None, moves: list[dict[str, Any]] | None = None
) -> Context:
    delta = h.get("delta") or {}
    ops = delta.get("operations") or []
    kinds = Counter(op.get("type", "?") for op in ops)
    return {
        **h,
        "change": None if before is None else h["bullets"] - before["bullets"],
        "ops": dict(sorted(kinds.items())),
        "source": delta.get("source"),
        "moves": moves or [],
        "merge": (h.get("message") or "").startswith("merge of "),
    }


# -- diff ---------------------------------------------------------------------------------------------------------
def diff(
    svc: Service, grant: Grant, namespace: str, name: str, v1: int, v2: int, *, page: int = 1,
    states: States | None = None,
) -> Context:  # fmt: skip
    """What changed from ``v1`` to ``v2``: added, removed (or merged into another bullet) and changed bullets; an
    UPDATE word by word, a move between sections and counters as such. Versions far apart are compared from the
    states ``states`` keeps (what the store's diff does for them too, from states it rebuilds every time); near
    ones by the store, which replays the deltas between and compares only the bullets they touched."""
    lo, hi = min(v1, v2), max(v1, v2)
    if states is not None and hi - lo > PAGE_VERSIONS:
        d = compare(states.get(svc, grant, namespace, name, v1)[1], states.get(svc, grant, namespace, name, v2)[1])
    else:
        d = svc.changes(grant, namespace, name, v1, v2)
    between = []
    if 0 < hi - lo <= PAGE_VERSIONS:
        between = [_version_row(h, None) for h in svc.history(grant, namespace, name, since=lo + 1, limit=hi - lo)]
    shown = _page(d, page)
    head = next(c["version"] for c in svc.channels(grant, namespace, name) if c["channel"] == "candidate")
    # head: no "change after" the head's own
    return {"v1": v1, "v2": v2, "entries": shown, "counts": shown.counts, "between": between, "head": head}


def _page(d: PlaybookDiff, page: int) -> Paged:
    """A page of ``d``'s entries: added, removed or merged away, changed or moved (word by word on the page)."""
    absorbed: dict[str, str] = {}  # id merged away -> the bullet that took it
    for b in [*d.added, *(c.after for c in d.changed)]:
        for gone in b.merged_from:
            absorbed.setdefault(gone, b.id)
    entries: list[Context] = [_entry("added", b) for b in d.added]
    entries += [
        _entry("merged", b, into=absorbed[b.id]) if b.id in absorbed else _entry("removed", b) for b in d.removed
    ]
    for c in d.changed:
        entries.append(_change(c.before, c.after, c.fields))
    shown = paged(entries, page, PAGE_DIFF)
    for e in shown.items:  # word by word only what the page shows
        if e["kind"] == "changed" and "content" in e["fields"]:
            e["words"] = word_diff(e["before"].content, e["bullet"].content)
    shown.counts.update(e["kind"] for e in entries)
    return shown


def _entry(kind: str, bullet: Bullet, **fields: Any) -> Context:
    """One entry of a diff; every entry has every key (the templates are strict)."""
    return {
        "kind": kind,
        "bullet": bullet,
        "before": None,
        "fields": (),
        "words": None,
        "counters": [],
        "merged": [],
        "into": None,
        **fields,
    }


def _change(before: Bullet, after: Bullet, fields: tuple[str, ...]) -> Context:
    return _entry(
        "moved" if "section" in fields and "content" not in fields else "changed",
        after,
        before=before,
        fields=fields,
        counters=[
            (f, getattr(before, f), getattr(after, f))
            for f in ("helpful", "harmful", "neutral")
            if getattr(before, f) != getattr(after, f)
        ],
        merged=[i for i in after.merged_from if i not in before.merged_from],
    )


# -- blame --------------------------------------------------------------------------------------------------------
@dataclass
class BlameRow:
    """One change of a bullet: the version, the operation, its text before and after, where it came from."""

    version: int
    op: str
    author: str | None
    message: str | None
    created_at: str
    source: dict[str, Any] | None
    before: str | None
    after: str | None
    tag: str | None = None
    into: str | None = None  # merged into this bullet
    words: list[Segment] = field(default_factory=list)


def blame(svc: Service, grant: Grant, namespace: str, name: str, bullet_id: str, states: States) -> Context:
    """Every change of ``bullet_id`` with its text before and after, its source (task, step, run) and author,
    newest first; the bullet as it is at the head, with its counters and sources."""
    entries = svc.blame(grant, namespace, name, bullet_id)
    deltas = _deltas(
        svc, grant, namespace, name, [e["version"] for e in entries if e["op"] not in ("IMPORT", "ROLLBACK")]
    )
    rows: list[BlameRow] = []
    text: str | None = None
    for e in entries:
        v, op = e["version"], e["op"]
        before, tag, into = text, None, None
        found = _op_for(deltas.get(v), bullet_id)
        if found is None:  # an import, a rollback, or an operation the delta does not name: the version's own state
            b = states.get(svc, grant, namespace, name, v)[1].get(bullet_id)
            text = None if b is None else b.content
        elif found["type"] in ("ADD", "UPDATE") or (found["type"] == "MERGE" and found.get("id") == bullet_id):
            text = as_stored(str(found.get("content", "")))
        elif found["type"] == "TAG":
            tag = str(found.get("tag"))
        elif found["type"] == "MERGE":
            text, into = None, found.get("id")
        elif found["type"] == "REMOVE":
            text = None
        row = BlameRow(v, op, e["author"], e["message"], e["created_at"], e["source"], before, text, tag, into)
        if before is not None and text is not None and before != text:
            row.words = word_diff(before, text)
        rows.append(row)
    info, head = svc.playbook(grant, namespace, name)
    return {"bullet_id": bullet_id, "rows": list(reversed(rows)), "current": head.get(bullet_id), "head": info.version}


def _op_for(delta: dict[str, Any] | None, bullet_id: str) -> dict[str, Any] | None:
    if not delta:
        return None
    for op in delta.get("operations") or []:
        if bullet_id in (op.get("ids") or []) or op.get("id") == bullet_id:
            return dict(op)
    return None


def _deltas(svc: Service, grant: Grant, namespace: str, name: str, versions: list[int]) -> dict[int, Any]:
    """The delta of each of ``versions``, read in as few history calls as runs of nearby versions allow."""
    wanted = sorted(set(versions))
    found: dict[int, Any] = {}
    i = 0
    while i < len(wanted):
        j = i
        while j + 1 < len(wanted) and wanted[j + 1] - wanted[j] <= BLAME_RANGE and wanted[j + 1] - wanted[i] < 1000:
            j += 1
        for h in svc.history(grant, namespace, name, since=wanted[i], limit=wanted[j] - wanted[i] + 1):
            if h["version"] in wanted:
                found[h["version"]] = h.get("delta")
        i = j + 1
    return found


# -- review -------------------------------------------------------------------------------------------------------
def review(svc: Service, grant: Grant, namespace: str, name: str, states: States, reviews: Reviews) -> Context:
    """What waits for a reviewer (:meth:`Service.pending`): the versions from serving to the candidate with their
    provenance, the change word by word and the collapse detectors' alerts; whether this token may decide.

    ``Service.pending`` rebuilds both versions and runs the detectors (a few hundred ms at 10,000 bullets): its
    answer is kept in ``reviews`` while serving and the candidate stay where they were, for :data:`REVIEW_TTL_S`
    at most (a trial's verdict may change meanwhile); every request still reads the channels (the read check)."""
    channels = {c["channel"]: c for c in svc.channels(grant, namespace, name)}
    serving = channels.get("serving") or channels["candidate"]
    key = (normal_name(namespace, "namespace"), normal_name(name, "playbook"), serving["version"],
           bool(serving["follows_head"]), channels["candidate"]["version"])  # fmt: skip
    found = reviews.get(key)
    if found is None:
        try:
            pending = svc.pending(grant, namespace, name)
        except TooMuchWork as e:
            return {"pending": None, "problem": str(e), "can_review": False, "entries": None, "turned_down": []}
        entries = None
        if pending["candidate"] > pending["serving"] and pending["diff"] is not None:
            before = states.get(svc, grant, namespace, name, pending["serving"])[1]
            entries = _entries(pending["diff"], before, page=1)
        found = {"pending": pending, "problem": None, "entries": entries,
                 "versions": [_version_row(h, None) for h in pending["versions"]],
                 "turned_down": svc.turned_down(grant, namespace, name, limit=TURNED_DOWN)}  # fmt: skip
        reviews.put(key, found)
    can = grant.allows(namespace, "review") and found["pending"]["policy"] in REVIEWABLE
    return {**found, "can_review": can, "example_id": _example_id(found["entries"])}


def _example_id(entries: Paged | None) -> str:
    """A bullet of the change waiting (one it adds or changes), for the edit box's example; else a placeholder no
    bullet has."""
    for e in [] if entries is None else entries.items:
        if e["kind"] not in ("removed", "merged"):
            return str(e["bullet"].id)
    return "ID-OF-A-BULLET"


def approve(
    svc: Service, grant: Grant, namespace: str, name: str, *, to: int, reason: str | None,
    keep: list[int] | None = None, edit: str = "",
) -> Context:  # fmt: skip
    """The review form's approval: ``to`` whole, or only the versions in ``keep`` (the checkboxes: the versions
    waiting and unchecked are turned down, which needs a ``reason``), with ``edit`` (a delta as a curator writes it,
    JSON) applied on top (:meth:`Service.approve`). ``part``: whether what is served is not ``to`` as it was."""
    edited = edit.strip() or None
    left: list[int] = []
    if keep is not None:
        channels = {c["channel"]: c["version"] for c in svc.channels(grant, namespace, name)}
        serving = channels.get("serving", channels["candidate"])
        left = [v for v in range(serving + 1, to + 1) if v not in keep]
        if not keep and not edited:  # nothing served: that is a rejection, never an approval of a part
            raise BadRequest("this approval keeps no version: check the versions to serve, or reject the change "
                             "(with its reason) below")  # fmt: skip
        if left and not reason:
            shown = ", ".join(f"v{v}" for v in left[:10]) + (" …" if len(left) > 10 else "")
            raise BadRequest(f"approving part of the change turns {shown} down: say why in the reason")
        if not left:
            keep = None  # every version waiting: the change as is
    found = svc.approve(grant, namespace, name, to=to, reason=reason, only=keep, edit=edited)
    return {"pending": found, "part": found["serving"] != to}  # a part or an edit is served as a new head


def _entries(found: dict[str, Any], before: Playbook, *, page: int) -> Paged:
    """A page of :meth:`Service.pending`'s diff (JSON) as the diff page shows it, each change beside ``before``."""
    d = PlaybookDiff(
        [Bullet.from_dict(b) for b in found["added"]],
        [Bullet.from_dict(b) for b in found["removed"]],
        [
            BulletChange(before[c["id"]], Bullet.from_dict(c["after"]), tuple(c["fields"]))
            for c in found["changed"]
            if c["id"] in before
        ],
    )
    return _page(d, page)


REVIEW_TTL_S = 30.0


class Reviews:
    """:meth:`Service.pending`'s answers, by playbook and the versions it was asked at, for a while."""

    def __init__(self, size: int = 32, ttl_s: float = REVIEW_TTL_S) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._held: OrderedDict[tuple[Any, ...], tuple[float, Context]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Context | None:
        with self._lock:
            held = self._held.get(key)
            if held is None or time.monotonic() - held[0] > self.ttl_s:
                return None
            return held[1]

    def put(self, key: tuple[Any, ...], value: Context) -> None:
        with self._lock:
            self._held[key] = (time.monotonic(), value)
            while len(self._held) > self.size:
                self._held.popitem(last=False)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what was kept of a playbook (after an approval or a rejection from this console)."""
        ns, name = normal_name(namespace, "namespace"), normal_name(name, "playbook")
        with self._lock:
            for key in [k for k in self._held if k[:2] == (ns, name)]:
                del self._held[key]


# -- episodes, check, memory --------------------------------------------------------------------------------------
def episodes(svc: Service, grant: Grant, namespace: str, name: str, *, status: str | None = None) -> Context:
    """The playbook's latest episodes (at most 1,000), how many of them in each state, and those of ``status``."""
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status is one of {', '.join(STATUSES)}")
    listed = svc.episodes(grant, namespace, name, limit=1000)
    counts = Counter(e.status for e in listed)
    shown = [e.to_dict() for e in listed if status is None or e.status == status][:200]
    return {
        "episodes": shown,
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "status": status,
        "listed": len(listed),
    }


SEARCH_HITS = 10  # episodes an episode search shows


def search(svc: Service, grant: Grant, namespace: str, name: str, query: str, *, every: bool = False) -> Context:
    """The episodic memory's episodes most like ``query`` (:meth:`Service.search_episodes`): this playbook's, or
    (``every``) the namespace's; ``problem`` where the service has no episodic memory."""
    if not query.strip():
        return {"hits": None, "problem": None}
    try:
        hits = svc.search_episodes(grant, namespace, query, k=SEARCH_HITS, playbook=None if every else name)
    except NoMemory as e:
        return {"hits": None, "problem": str(e)}
    return {"hits": hits, "problem": None}


def check(svc: Service, grant: Grant, namespace: str, name: str, *, first: int | None = None) -> Context:
    """The collapse detectors' alerts over the last versions (:meth:`Service.check`)."""
    try:
        found = svc.check(grant, namespace, name, first=first)
    except TooMuchWork as e:
        return {"result": None, "problem": str(e)}
    order = {"critical": 0, "warning": 1, "info": 2}
    alerts = sorted(found["alerts"], key=lambda a: (order.get(a["severity"], 3), a["versions"][1] or 0))
    return {"result": found, "alerts": alerts, "problem": None}


def facts(
    svc: Service,
    grant: Grant,
    namespace: str,
    *,
    subject: str | None = None,
    relation: str | None = None,
    history: bool = False,
) -> Context:
    """The knowledge graph's facts of a namespace (current, or every one with those superseded)."""
    found = svc.facts(grant, namespace, subject=subject or None, relation=relation or None, history=history)
    return {
        "facts": found[:500],
        "total": len(found),
        "subject": subject or "",
        "relation": relation or "",
        "history": history,
    }
