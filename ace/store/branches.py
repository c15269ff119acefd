"""Branches and merges: what a playbook learned apart, brought back three-way by delta.

A branch is a playbook of its own in the same namespace: ``store.branch("support", "support-agent-2")`` makes
``support-agent-2`` whose version 1 is ``support`` at the fork version (the head, or ``from_version``), and records
the fork point. Every writer and reader works on it by naming it (a run, a worker, the HTTP service, ``ace learn
--playbook``), and its history, diff and blame are a playbook's. ``store.merge(branch, into=...)`` replays what the
branch committed since the common ancestor onto the target's head as one new version (:mod:`ace.playbook.merge`:
counters add, duplicate ADDs merged, id clashes remapped, conflicts listed and resolved by the strategy), whose
message and provenance name the branch and its version. The merge is recorded (the branch version merged, the
version it made, the id map, the operations left out), so the next merge of the branch starts there: merging again
with nothing new writes nothing.

The common ancestor is the branch's state at the fork point (its version 1) for a first merge, and at the branch
version merged last for the next: what the target changed since is what its head holds differently from that state.

The tables (``ace_branches``: each branch's parent and fork version; ``ace_merges``: every merge) are a component of
the store's database under Alembic (:mod:`ace.store.components`, version table ``ace_branch_version``): made by the
first branch, never by a read.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    or_,
    select,
)

from ace.playbook.delta import AddOp, Delta, RemoveOp, TagOp, UpdateOp
from ace.playbook.diff import diff
from ace.playbook.merge import BranchOp, Conflict, Duplicate, MergePlan, Taken
from ace.playbook.model import Playbook, Source
from ace.store import schema as t
from ace.store.components import ComponentSchema, TablePresence
from ace.store.errors import CorruptRow, PlaybookNotFound, StoreError

metadata = MetaData()

forks = Table(
    "ace_branches",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("fork_version", Integer, nullable=False),
    Column("author", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_branches_parent", "parent_id"),
)

merges = Table(
    "ace_merges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("branch_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("target_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("branch_version", Integer, nullable=False),  # the branch merged up to this version
    Column("target_version", Integer, nullable=True),  # the version the merge made (None: it made none)
    Column("strategy", String(16), nullable=False),
    Column("ids", Text, nullable=False),  # JSON: branch bullet id -> target bullet id (null: not on the target)
    Column("pending", Text, nullable=False),  # JSON: [[version, index], ...] left out, taken up by the next merge
    Column("report", Text, nullable=False),  # JSON: what was taken, merged as duplicates, each conflict
    Column("author", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_merges_lookup", "branch_id", "id"),
)


def _recognise(conn: Connection) -> str | None:
    return None  # the branch tables had a history from their first revision on


SCHEMA = ComponentSchema("branches", "ace_branch_version", Path(__file__).parent / "branch_migrations", _recognise)


class BranchRefused(StoreError):
    """A branch or a merge that cannot be made as asked (a playbook merged into itself, a branch named after the
    playbook it comes from); nothing was written."""


class NotABranch(BranchRefused):
    """A merge of a playbook that is not a branch of the target (not a branch at all, or a branch of another)."""


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """A branch: its name, the playbook it was branched from and at which version, its head, and how far it was
    merged (the branch version merged last, the last target version a merge of it made, the operations left
    out)."""

    namespace: str
    name: str
    parent: str
    fork_version: int
    head: int
    created_at: datetime
    author: str | None = None
    merged: int | None = None
    merged_into: int | None = None
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "branch": self.name,
            "parent": self.parent,
            "fork_version": self.fork_version,
            "head": self.head,
            "created_at": self.created_at.isoformat(),
            "author": self.author,
            "merged": self.merged,
            "merged_into": self.merged_into,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class MergeResult:
    """What a merge did: the branch version merged and the base it was merged from (the branch version merged
    before, 1 at the fork), the version it made on the target (None: none, nothing to apply), the target's head
    after, what it took, the duplicates it merged, each conflict with what the strategy did, and ``pending``: the
    branch operations left out (``report``), taken up again by the next merge."""

    namespace: str
    branch: str
    into: str
    strategy: str
    branch_version: int
    base: int
    version: int | None
    head: int
    taken: list[Taken] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    pending: list[tuple[int, int]] = field(default_factory=list)
    message: str = ""

    @property
    def changed(self) -> bool:
        """Whether the merge made a version."""
        return self.version is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "branch": self.branch,
            "into": self.into,
            "strategy": self.strategy,
            "branch_version": self.branch_version,
            "base": self.base,
            "version": self.version,
            "head": self.head,
            "message": self.message,
            "taken": [x.to_dict() for x in self.taken],
            "duplicates": [d.to_dict() for d in self.duplicates],
            "conflicts": [c.to_dict() for c in self.conflicts],
            "pending": [list(p) for p in self.pending],
        }


@dataclass(frozen=True)
class MergeJob:
    """A merge about to be planned, read under the target's write lock: the branch's row, the fork point, and where
    the last merge of the branch left off (``through``: the branch version merged, 1 at the fork; the id map; the
    operations left out)."""

    branch_id: int
    branch: str
    head: int
    fork_version: int
    through: int
    ids: dict[str, str | None]
    pending: list[tuple[int, int]]

    @property
    def nothing_new(self) -> bool:
        """Whether a merge has nothing to look at: no branch version since the last merge and no operation it left
        out (those are looked at again: the target may have changed, or the strategy)."""
        return self.head == self.through and not self.pending


# whether the database has the branch tables (remembered per engine once it has)
tables_present = TablePresence("ace_branches")


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # SQLite gives the stored UTC time back without its zone


def record_fork(conn: Connection, branch_id: int, parent_id: int, version: int, *, author: str | None,
                now: datetime) -> None:  # fmt: skip
    conn.execute(forks.insert().values(playbook_id=branch_id, parent_id=parent_id, fork_version=version,
                                       author=author, created_at=now))  # fmt: skip


def _last_merge(conn: Connection, branch_id: int) -> Any:
    q = merges.select().where(merges.c.branch_id == branch_id).order_by(merges.c.id.desc()).limit(1)
    return conn.execute(q).first()


def listed(conn: Connection, namespace: str, parent_id: int, parent: str) -> list[BranchInfo]:
    """The branches of playbook ``parent_id``, by name, each with its fork point and its last merge."""
    if not tables_present(conn):
        return []
    rows = conn.execute(
        select(forks, t.playbooks.c.name, t.playbooks.c.head)
        .join(t.playbooks, t.playbooks.c.id == forks.c.playbook_id)
        .where(forks.c.parent_id == parent_id)
        .order_by(t.playbooks.c.name)
    ).all()
    found = []
    for r in rows:
        last = _last_merge(conn, r.playbook_id)
        pending = len(json.loads(last.pending)) if last is not None else 0
        made = conn.execute(select(func.max(merges.c.target_version)).where(merges.c.branch_id == r.playbook_id))
        found.append(BranchInfo(namespace, r.name, parent, int(r.fork_version), int(r.head), _utc(r.created_at),
                                r.author, int(last.branch_version) if last is not None else None, made.scalar(),
                                pending))  # fmt: skip
    return found


def prepare(conn: Connection, namespace: str, branch: str, target: Any) -> MergeJob:
    """The merge of ``branch`` into the playbook of row ``target`` (locked by the caller): raises
    :class:`~ace.store.PlaybookNotFound` for an unknown branch and :class:`NotABranch` for a playbook that is not a
    branch of the target."""
    row = conn.execute(
        select(t.playbooks).where(t.playbooks.c.namespace == namespace, t.playbooks.c.name == branch)
    ).one_or_none()
    if row is None:
        raise PlaybookNotFound(namespace, branch)
    fork = None
    if tables_present(conn):
        fork = conn.execute(forks.select().where(forks.c.playbook_id == row.id)).one_or_none()
    if fork is None:
        raise NotABranch(f"playbook {branch!r} in namespace {namespace!r} is not a branch (only a playbook made "
                         f"with `ace playbook branch` merges); nothing was written")  # fmt: skip
    if fork.parent_id != target.id:
        parent = conn.execute(select(t.playbooks.c.name).where(t.playbooks.c.id == fork.parent_id)).scalar()
        raise NotABranch(f"{branch!r} is a branch of {parent!r}, not of {target.name!r}: merge it into "
                         f"{parent!r}; nothing was written")  # fmt: skip
    last = _last_merge(conn, row.id)
    through, ids, pending = 1, {}, []
    if last is not None:
        through = int(last.branch_version)
        ids = CorruptRow.decoding(lambda: dict(json.loads(last.ids)))
        pending = CorruptRow.decoding(lambda: [(int(v), int(i)) for v, i in json.loads(last.pending)])
    return MergeJob(row.id, branch, int(row.head), int(fork.fork_version), through, ids, pending)


def record_merge(
    conn: Connection,
    job: MergeJob,
    target_id: int,
    plan: MergePlan,
    *,
    version: int | None,
    strategy: str,
    author: str | None,
    now: datetime,
) -> None:
    """Record that ``job``'s branch was merged up to its head (in the caller's write transaction)."""
    report = {
        "taken": len(plan.taken),
        "duplicates": [d.to_dict() for d in plan.duplicates],
        "conflicts": [c.to_dict() for c in plan.conflicts],
    }
    conn.execute(
        merges.insert().values(
            branch_id=job.branch_id, target_id=target_id, branch_version=job.head, target_version=version,
            strategy=strategy, ids=json.dumps(plan.id_map, sort_keys=True),
            pending=json.dumps([list(p) for p in plan.pending]), report=json.dumps(report, ensure_ascii=False),
            author=author, created_at=now,
        )
    )  # fmt: skip


def unchanged(namespace: str, into: str, strategy: str, job: MergeJob, head: int) -> MergeResult:
    """The result of a merge with nothing new to look at."""
    why = f"nothing new on {job.branch} since v{job.through} (merged already): nothing to merge"
    return MergeResult(namespace, job.branch, into, strategy, job.head, job.through, None, head, message=why)


def result(
    namespace: str, into: str, strategy: str, job: MergeJob, plan: MergePlan, version: int | None, head: int
) -> MergeResult:
    """What the merge of ``job`` by ``plan`` did; its message is the new version's."""
    n, dups = len(plan.taken), len(plan.duplicates)
    said = [f"{n} operation{'s' * (n != 1)}"]
    if dups:
        said.append(f"{dups} duplicate{'s' * (dups != 1)} merged")
    by: dict[str, int] = {}
    for c in plan.conflicts:
        by[c.resolution] = by.get(c.resolution, 0) + 1
    if by:
        k = len(plan.conflicts)
        said.append(f"{k} conflict{'s' * (k != 1)} (" + ", ".join(f"{v} {r}" for r, v in by.items()) + ")")
    message = f"merge of {job.branch}@v{job.head} into {into} ({strategy}): {', '.join(said)}"
    if version is None:
        message += "; no version made (nothing to apply)"
    return MergeResult(namespace, job.branch, into, strategy, job.head, job.through, version,
                       version if version is not None else head, plan.taken, plan.duplicates, plan.conflicts,
                       plan.pending, message)  # fmt: skip


def branch_ops(conn: Connection, job: MergeJob, state: Callable[[int], Playbook]) -> list[BranchOp]:
    """The branch's operations a merge replays, in order: those left out by the last merge, then every one of the
    versions since it. A version without a delta (a rollback on the branch) is stated as the operations that take
    the version before it to it (``state(v)``: the branch at version ``v``)."""
    refs = set(job.pending)
    earlier = sorted({v for v, _ in refs if v <= job.through})
    version = t.versions.c.version
    rows = conn.execute(
        select(version, t.versions.c.delta)
        .where(
            t.versions.c.playbook_id == job.branch_id,
            or_((version > job.through) & (version <= job.head), version.in_(earlier)),
        )
        .order_by(version)
    ).all()
    found: list[BranchOp] = []
    for r in rows:
        v = int(r.version)
        if r.delta is not None:
            delta = CorruptRow.decoding(functools.partial(Delta.model_validate_json, r.delta))
            ops = [BranchOp(v, i, _stamped(op, delta.source)) for i, op in enumerate(delta.operations)]
        else:
            ops = stated(state(v - 1), state(v), v, job.branch)
        found.extend(o for o in ops if v > job.through or o.ref in refs)
    return found


def _stamped(op: Any, source: Source | None) -> Any:
    return op if op.source is not None or source is None else op.model_copy(update={"source": source})


def stated(before: Playbook, after: Playbook, version: int, branch: str) -> list[BranchOp]:
    """The operations that take ``before`` to ``after`` (a rollback on the branch, which has no delta): REMOVE what
    went, ADD (with its id) what came back and TAG its counters, UPDATE a changed content, TAG a counter that went up;
    a counter that went down is a change no operation states (an op of None, with a note)."""
    src = Source(role="rollback", note=f"rollback on branch {branch} (v{version})")
    d = diff(before, after)
    ops: list[Any] = []
    notes: list[str] = []
    moved = [c for c in d.changed if "section" in c.fields]
    for b in [*d.removed, *(c.before for c in moved)]:
        ops.append(RemoveOp(id=b.id, source=src))
    for b in [*d.added, *(c.after for c in moved)]:
        ops.append(AddOp(section=b.section, content=b.content, id=b.id, source=src))
        ops.extend(TagOp(id=b.id, tag=tag, source=src) for tag in _TAGS for _ in range(getattr(b, tag)))
    for c in d.changed:
        if c in moved:
            continue
        if "content" in c.fields:
            ops.append(UpdateOp(id=c.after.id, content=c.after.content, source=src))
        for tag in _TAGS:
            up = getattr(c.after, tag) - getattr(c.before, tag)
            ops.extend(TagOp(id=c.after.id, tag=tag, source=src) for _ in range(max(up, 0)))
            if up < 0:
                notes.append(f"{c.after.id}: {tag} went from {getattr(c.before, tag)} to {getattr(c.after, tag)} "
                             f"(a rollback on the branch); the target keeps its count")  # fmt: skip
    found = [BranchOp(version, i, op) for i, op in enumerate(ops)]
    return found + [BranchOp(version, len(ops) + k, None, note) for k, note in enumerate(notes)]


_TAGS: Sequence[str] = ("helpful", "harmful", "neutral")


__all__ = [
    "SCHEMA",
    "BranchInfo",
    "BranchRefused",
    "MergeJob",
    "MergeResult",
    "NotABranch",
    "branch_ops",
    "listed",
    "prepare",
    "record_fork",
    "record_merge",
    "result",
    "stated",
    "tables_present",
    "unchanged",
]
