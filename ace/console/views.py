"""What each console page shows, gathered through :class:`~ace.service.core.Service` (never the store): one plain
function per page, run in one of the service's threads, returning the template's context.

Pages are bounded whatever the playbook's size: bullets, versions and diff entries come a page at a time, and the
work per page is the service call it needs (the head is held by the store; an old version is rebuilt once).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ace.playbook.model import Bullet, Playbook
from ace.playbook.render import SCORES_HEADER, approx_tokens
from ace.service.auth import Grant
from ace.service.core import PROMPT_BUDGET, BadRequest, Service, TooMuchWork
from ace.service.queue import Status

PAGE_BULLETS = 100  # bullets on one page of a playbook
PAGE_VERSIONS = 50  # versions on one page of the timeline
PAGE_DIFF = 100  # entries (added, removed, changed) on one page of a diff
PAGE_PLAYBOOKS = 100  # playbooks on one page of the index
RECENT = 8  # versions shown on a playbook's own page
WORD_DIFF_TOKENS = 4_000  # words and spaces per side beyond which an UPDATE is shown as before / after only
BLAME_RANGE = 32  # versions apart within which a blame's deltas are read in one history call
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")
REVIEWABLE = ("review", "gated+review")

Context = dict[str, Any]
Segment = tuple[Literal["=", "-", "+"], str]


@dataclass(frozen=True, slots=True)
class Paged:
    """One page of a longer list: the items, the page number (from 1), how many pages and items in all."""

    items: list[Any]
    page: int
    pages: int
    total: int


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


# -- a playbook ---------------------------------------------------------------------------------------------------
def playbook(
    svc: Service,
    grant: Grant,
    namespace: str,
    name: str,
    *,
    q: str = "",
    section: str = "",
    page: int = 1,
    budget: int | None = PROMPT_BUDGET,
    version: int | None = None,
) -> Context:
    """A playbook's prompt (what an agent reads from ``serving``, or ``version``, under ``budget`` tokens), its
    sections and bullets (a page of them, filtered by ``q`` and ``section``), its channels and latest versions."""
    info, pb = svc.playbook(grant, namespace, name, version=version)
    channels = svc.channels(grant, namespace, name)
    head = next((c["version"] for c in channels if c["channel"] == "candidate"), info.version)
    prompt = svc.prompt(grant, namespace, name, budget=budget, version=version)
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
    for m in svc.channel_log(grant, namespace, name):
        moves.setdefault(m["version"], []).append(m)
    rows = []
    for before, h in zip([None, *history], history, strict=False):
        if h["version"] < lo:
            continue
        rows.append(_version_row(h, before, moves.get(h["version"], [])))
    follow = moves.get(None, [])  # moves back to following the head
    return {
        "rows": list(reversed(rows)),
        "paged": Paged([], page, pages, head),
        "head": head,
        "channels": channels,
        "follow": follow,
    }


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
def diff(svc: Service, grant: Grant, namespace: str, name: str, v1: int, v2: int, *, page: int = 1) -> Context:
    """What changed from ``v1`` to ``v2``: added, removed (or merged into another bullet) and changed bullets; an
    UPDATE word by word, a move between sections and counters as such."""
    d = svc.changes(grant, namespace, name, v1, v2)
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
    between = []
    lo, hi = min(v1, v2), max(v1, v2)
    if 0 < hi - lo <= PAGE_VERSIONS:
        between = [_version_row(h, None) for h in svc.history(grant, namespace, name, since=lo + 1, limit=hi - lo)]
    counts = Counter(e["kind"] for e in entries)
    return {"v1": v1, "v2": v2, "entries": paged(entries, page, PAGE_DIFF), "counts": counts, "between": between}


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
        words=word_diff(before.content, after.content) if "content" in fields else None,
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


def blame(svc: Service, grant: Grant, namespace: str, name: str, bullet_id: str) -> Context:
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
            b = svc.playbook(grant, namespace, name, version=v)[1].get(bullet_id)
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
def review(svc: Service, grant: Grant, namespace: str, name: str) -> Context:
    """What waits for a reviewer (:meth:`Service.pending`): the versions from serving to the candidate with their
    provenance, the change word by word and the collapse detectors' alerts; whether this token may decide."""
    try:
        pending = svc.pending(grant, namespace, name)
    except TooMuchWork as e:
        return {"pending": None, "problem": str(e), "can_review": False, "entries": None}
    entries = None
    if pending["candidate"] > pending["serving"]:
        entries = diff(svc, grant, namespace, name, pending["serving"], pending["candidate"])["entries"]
    can = grant.allows(namespace, "review") and pending["policy"] in REVIEWABLE
    return {
        "pending": pending,
        "problem": None,
        "can_review": can,
        "entries": entries,
        "versions": [_version_row(h, None) for h in pending["versions"]],
    }


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
