"""Three-way merge of what a branch learned into the playbook it was branched from, pure (no I/O).

A branch is a playbook that starts as a copy of another at some version (its *fork point*) and learns apart; a merge
brings what it learned back. :func:`plan_merge` takes

- ``target``: the target's head, where the merge lands;
- ``base``: the branch's state at the common ancestor (the fork point, or the branch version merged last), whose
  bullets tell what the target changed since (a bullet's content on the target that differs from the base's is a
  target's edit; one missing from the target, a target's removal);
- ``ops``: the operations the branch committed since the base, in order, each as its branch's log resolved it;

and replays the branch's operations onto the target's head, each mapped from the branch's ids to the target's:

- non-conflicting operations apply as they did on the branch. A TAG is an increment, so counters add: the target's
  tags and the branch's both count;
- an ADD keeps the branch's id unless the target has a bullet with that id (then the target gives it a new one: the
  id clash is remapped, and later operations of the branch on that bullet follow it);
- ADDs that duplicate a bullet of the target, or each other, are merged into it with a MERGE, as grow-and-refine's
  dedup does (:mod:`ace.loop.refine`): the same lesson learned on two branches is one bullet, its counters summed,
  its sources kept. Without ``similar`` a duplicate is the same words and numbers in the same order (case and
  punctuation aside); with ``similar`` (cosines, e.g. an embedding index's), a cosine at or above ``threshold`` with
  the same numbers and codes (:func:`ace.playbook.text.specifics`), the dedup's rule;
- conflicts are listed (:class:`Conflict`), never dropped unsaid: two different UPDATEs of one bullet
  (``update/update``), an UPDATE of a bullet the target removed (``update/remove``), a REMOVE of a bullet the target
  edited (``remove/update``), a MERGE over a bullet the target removed or edited (``merge/remove``,
  ``merge/update``), a TAG of a bullet the target removed (``tag/remove``), an operation on a bullet whose ADD was
  left out (``depends``), one the target's rules refuse (``refused``: its quality gate, its section policy) and a
  change of a rollback on the branch that no operation states (``rollback``: counters that went down). The
  ``strategy`` says what happens to them: ``report`` (the default) leaves them out and returns them as ``pending``,
  so that the next merge of the branch takes them up again; ``ours`` keeps the target's side; ``theirs`` takes the
  branch's (an UPDATE of a removed bullet adds it back with the branch's content; a MERGE over removed bullets
  merges those still there). A TAG of a removed bullet and a refused operation cannot be taken under any strategy:
  ``ours`` and ``theirs`` drop them, listed (``report`` keeps them pending); a rollback's lowered counters are
  dropped, listed, under every strategy.

The result (:class:`MergePlan`) is one delta that applies to ``target`` (the merge's one new version), what it took,
the duplicates it merged, the conflicts and the id map (branch id to target id, None for a bullet that is not on
the target) that the next merge of the same branch starts from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ace.errors import InvalidInput
from ace.playbook.delta import (
    DEFAULT_POLICY,
    AddOp,
    ApplyPolicy,
    Delta,
    MergeOp,
    Operation,
    RemoveOp,
    TagOp,
    UpdateOp,
    apply,
)
from ace.playbook.errors import DeltaError
from ace.playbook.model import Bullet, Playbook, Source
from ace.playbook.text import specifics

Strategy = Literal["report", "ours", "theirs"]
STRATEGIES: tuple[str, ...] = ("report", "ours", "theirs")
# What each strategy did with a conflict
LEFT_OUT, TARGET_KEPT, BRANCH_TAKEN, DROPPED = "left out", "target kept", "branch taken", "dropped"
_TOKENS = re.compile(r"[^\W_]+(?:[.,:/-][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class BranchOp:
    """One operation the branch committed: the branch version and the operation's index in that version's delta
    (together its reference, stable: a log never changes), and the operation, resolved (an ADD with its id, a
    MERGE with its survivor) and stamped with its provenance. ``op`` is None for a change no operation states (a
    rollback on the branch lowered a counter): ``note`` says what."""

    version: int
    index: int
    op: Operation | None
    note: str | None = None

    @property
    def ref(self) -> tuple[int, int]:
        return (self.version, self.index)


@dataclass(frozen=True, slots=True)
class Taken:
    """A branch operation the merge applied: where it was on the branch, and the bullet on each side."""

    version: int
    index: int
    op: str
    branch_id: str | None
    target_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "index": self.index, "op": self.op, "branch_id": self.branch_id,
                "target_id": self.target_id}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A bullet the branch added that duplicates one of the target's (or another the merge added): its ADD gave it
    ``target_id``, then a MERGE folded it into ``into``."""

    branch_id: str
    target_id: str
    into: str
    content: str

    def to_dict(self) -> dict[str, Any]:
        return {"branch_id": self.branch_id, "target_id": self.target_id, "into": self.into, "content": self.content}


@dataclass(frozen=True, slots=True)
class Conflict:
    """A branch operation that met a change of the target's (or the target's rules): the kind (see the module doc),
    where it was on the branch, the bullet on each side, what each side has (None: nothing, removed), what the
    strategy did (``left out``, ``target kept``, ``branch taken``, ``dropped``) and why."""

    kind: str
    version: int
    index: int
    op: str
    branch_id: str | None
    target_id: str | None
    branch: str | None
    target: str | None
    resolution: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "index": self.index, "op": self.op,
                "branch_id": self.branch_id, "target_id": self.target_id, "branch": self.branch,
                "target": self.target, "resolution": self.resolution, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class MergePlan:
    """What :func:`plan_merge` decided: ``delta`` applies to the target's head (empty: nothing to apply) and gives
    ``playbook``; ``pending`` are the references of the operations left out under ``report``, for the next merge."""

    delta: Delta
    playbook: Playbook
    taken: list[Taken] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    pending: list[tuple[int, int]] = field(default_factory=list)
    id_map: dict[str, str | None] = field(default_factory=dict)


def plan_merge(
    target: Playbook,
    base: Playbook,
    ops: Iterable[BranchOp],
    *,
    id_map: Mapping[str, str | None] | None = None,
    strategy: str = "report",
    similar: Callable[[list[str], list[str]], Any] | None = None,
    threshold: float = 0.9,
    policy: ApplyPolicy = DEFAULT_POLICY,
    source: Source | None = None,
) -> MergePlan:
    """Replay the branch's ``ops`` onto ``target`` three-way from ``base`` (see the module doc). ``id_map``: the
    branch's ids as the last merge mapped them (an id absent from it and present in ``base`` is the same bullet on
    both sides: it was there at the fork). ``source``: the provenance stamped on an operation that has none.
    Raises :class:`~ace.errors.InvalidInput` for an unknown strategy; a refused operation is a conflict, not an
    error."""
    if strategy not in STRATEGIES:
        raise InvalidInput(f"a merge strategy is one of {', '.join(STRATEGIES)}, not {strategy!r}")
    merge = _Merge(target, base, dict(id_map or {}), strategy, policy, source)
    for bop in ops:
        merge.take(bop)
    merge.dedup(similar, threshold)
    return merge.plan()


def duplicate_key(content: str) -> str:
    """What two contents must share to be the same lesson without an embedder: their words and numbers in order,
    case folded (punctuation and spacing aside)."""
    tokens = _TOKENS.findall(content.casefold())
    return " ".join(tokens) if tokens else content.strip()


class _Merge:
    """The working state of one :func:`plan_merge`."""

    def __init__(
        self,
        target: Playbook,
        base: Playbook,
        ids: dict[str, str | None],
        strategy: str,
        policy: ApplyPolicy,
        source: Source | None,
    ) -> None:
        self.start, self.cur, self.base = target, target, base
        self.ids = ids
        self.strategy, self.policy, self.source = strategy, policy, source
        self.won: set[str] = set()  # branch ids whose conflict the branch won in this merge: its ops on them apply
        self.added: list[tuple[str, str]] = []  # (branch id, target id) of each bullet the branch's ADDs put
        self.ops: list[Any] = []
        self.taken: list[Taken] = []
        self.duplicates: list[Duplicate] = []
        self.conflicts: list[Conflict] = []
        self.pending: list[tuple[int, int]] = []
        # target ids some branch bullet maps to: an ADD never takes one of them, even when the target removed it
        self.mapped: set[str] = {t for t in ids.values() if t is not None}

    # -- the two sides --------------------------------------------------------------------------------------------
    def target_of(self, branch_id: str) -> str | None:
        """The target's id of a branch's bullet: as mapped, else the same id for a bullet the base has (it was there
        at the fork), else None (its ADD was left out, or never seen)."""
        if branch_id in self.ids:
            return self.ids[branch_id]
        return branch_id if branch_id in self.base else None

    def target_change(self, branch_id: str) -> str | None:
        """What the target did to a bullet of the base since the base: ``removed``, ``updated`` (its content differs
        from the base's), or None (nothing, or a bullet the branch added since, or one the branch won here)."""
        was = self.base.get(branch_id)
        if was is None or branch_id in self.won:
            return None
        tid = self.target_of(branch_id)
        now = self.start.get(tid) if tid is not None else None
        if now is None:
            return "removed"
        return "updated" if now.content != was.content else None

    # -- applying ----------------------------------------------------------------------------------------------------
    def _apply(self, bop: BranchOp, op: Any, branch_id: str | None) -> Any | None:
        """Apply ``op`` to the merged state; the resolved op, or None when the target's rules refuse it (listed)."""
        try:
            applied = apply(self.cur, Delta(operations=[op]), policy=self.policy)
        except DeltaError as e:
            self._conflict("refused", bop, branch_id, getattr(op, "id", None), f"the target's rules refuse it: {e}")
            return None
        self.cur = applied.playbook
        resolved = applied.delta.operations[0]
        self.ops.append(resolved)
        return resolved

    def _took(self, bop: BranchOp, branch_id: str | None, target_id: str | None) -> None:
        assert bop.op is not None
        self.taken.append(Taken(bop.version, bop.index, bop.op.type, branch_id, target_id))

    def _conflict(
        self, kind: str, bop: BranchOp, branch_id: str | None, target_id: str | None, reason: str,
        resolution: str | None = None,
    ) -> None:  # fmt: skip
        """List a conflict. Without a ``resolution`` (what no strategy can take), ``report`` leaves the operation out
        and ``ours``/``theirs`` drop it; an operation left out is pending: the next merge takes it up again."""
        if resolution is None:
            resolution = LEFT_OUT if self.strategy == "report" else DROPPED
        op = bop.op
        if resolution == LEFT_OUT and op is not None:
            self.pending.append(bop.ref)
        text = getattr(op, "content", None) if op is not None else bop.note
        kind_of = op.type if op is not None else "ROLLBACK"
        before = self.start.get(target_id) if target_id is not None else None
        self.conflicts.append(Conflict(kind, bop.version, bop.index, kind_of, branch_id, target_id, text,
                                       before.content if before is not None else None, resolution,
                                       reason))  # fmt: skip

    def _resolve(self, kind: str, bop: BranchOp, branch_id: str, target_id: str | None, reason: str) -> bool:
        """A conflict between the branch's op and the target's change, resolved by the strategy: True when the
        branch's side is to be taken (``theirs``; the caller applies it), False when it is left out or the target
        kept (listed either way)."""
        if self.strategy == "theirs":
            self._conflict(kind, bop, branch_id, target_id, reason, resolution=BRANCH_TAKEN)
            self.won.add(branch_id)
            return True
        self._conflict(kind, bop, branch_id, target_id, reason,
                       resolution=TARGET_KEPT if self.strategy == "ours" else LEFT_OUT)  # fmt: skip
        return False

    def _map(self, branch_id: str, target_id: str) -> None:
        self.ids[branch_id] = target_id
        self.mapped.add(target_id)

    def _stamped(self, op: Any) -> Any:
        return op if op.source is not None or self.source is None else op.model_copy(update={"source": self.source})

    # -- one operation of the branch ---------------------------------------------------------------------------------
    def take(self, bop: BranchOp) -> None:
        op = bop.op
        if op is None:
            # no operation states it, so no later merge could take it: dropped (listed) whatever the strategy
            self._conflict("rollback", bop, None, None, bop.note or "a change no operation states", DROPPED)
            return
        op = self._stamped(op)
        if isinstance(op, AddOp):
            self._add(bop, op)
        elif isinstance(op, UpdateOp):
            self._update(bop, op)
        elif isinstance(op, TagOp):
            self._tag(bop, op)
        elif isinstance(op, RemoveOp):
            self._remove(bop, op)
        elif isinstance(op, MergeOp):
            self._merge(bop, op)

    def _depends(self, bop: BranchOp, branch_id: str) -> None:
        self._conflict("depends", bop, branch_id, None,
                       f"bullet {branch_id} of the branch is not on the target (its ADD was left out)")  # fmt: skip

    def _add(self, bop: BranchOp, op: AddOp) -> None:
        bid = op.id
        free = bid is not None and bid not in self.cur and (bid not in self.mapped or self.ids.get(bid) == bid)
        keep = bid if free else None  # a clash: the target gives a new id
        done = self._apply(bop, op.model_copy(update={"id": keep}), bid)
        if bid is None:
            return
        if done is None:
            self.ids[bid] = None
            return
        self._map(bid, done.id)
        self.added.append((bid, done.id))
        self._took(bop, bid, done.id)

    def _update(self, bop: BranchOp, op: UpdateOp) -> None:
        tid = self.target_of(op.id)
        if tid is None:
            return self._depends(bop, op.id)
        change = self.target_change(op.id)
        now = self.start.get(tid)
        if change == "updated" and now is not None and now.content != op.content:
            why = f"the target changed {tid} since the base, the branch too (differently)"
            if not self._resolve("update/update", bop, op.id, tid, why):
                return None
        elif change == "removed":
            why = f"the target removed {tid} since the base; the branch updated it"
            if not self._resolve("update/remove", bop, op.id, tid, why):
                return None
            was = self.base[op.id]
            back = tid if tid not in self.cur else None
            done = self._apply(bop, AddOp(section=was.section, content=op.content, id=back, source=op.source,
                                          reason=op.reason), op.id)  # fmt: skip
            if done is not None:
                self._map(op.id, done.id)
                self._took(bop, op.id, done.id)
            return None
        if self._apply(bop, op.model_copy(update={"id": tid}), op.id) is not None:
            self._took(bop, op.id, tid)
        return None

    def _tag(self, bop: BranchOp, op: TagOp) -> None:
        tid = self.target_of(op.id)
        if tid is None:
            return self._depends(bop, op.id)
        if self.target_change(op.id) == "removed":
            self._conflict("tag/remove", bop, op.id, tid,
                           f"the target removed {tid} since the base; the branch tagged it {op.tag}")  # fmt: skip
            return None
        if self._apply(bop, op.model_copy(update={"id": tid}), op.id) is not None:
            self._took(bop, op.id, tid)
        return None

    def _remove(self, bop: BranchOp, op: RemoveOp) -> None:
        tid = self.target_of(op.id)
        if tid is None:
            return self._depends(bop, op.id)
        change = self.target_change(op.id)
        if change == "removed":
            return None  # both removed it: nothing to do
        if change == "updated":
            why = f"the target changed {tid} since the base; the branch removed it"
            if not self._resolve("remove/update", bop, op.id, tid, why):
                return None
        if self._apply(bop, op.model_copy(update={"id": tid}), op.id) is not None:
            self._took(bop, op.id, tid)
        return None

    def _merge(self, bop: BranchOp, op: MergeOp) -> None:
        survivor = op.id or op.ids[0]
        mapped = [self.target_of(i) for i in op.ids]
        if any(t is None for t in mapped):
            return self._depends(bop, next(i for i, t in zip(op.ids, mapped, strict=True) if t is None))
        changes = {i: self.target_change(i) for i in op.ids}
        tids = [t for t in mapped if t is not None]
        sid = self.target_of(survivor)
        if not any(changes.values()):
            done = self._apply(bop, op.model_copy(update={"ids": tids, "id": sid}), survivor)
            if done is not None:
                self._took(bop, survivor, done.id)
            return None
        removed = [self.target_of(i) for i, c in changes.items() if c == "removed"]
        kind = "merge/remove" if removed else "merge/update"
        edited = ", ".join(str(self.target_of(i)) for i, c in changes.items() if c)
        why = f"the target {'removed' if removed else 'changed'} {edited} since the base; the branch merged them"
        if not self._resolve(kind, bop, survivor, sid, why):
            return None
        there = [t for t in tids if t in self.cur]
        keep = sid if sid in there else there[0] if there else None
        if len(there) >= 2:
            parts = [keep, *(t for t in there if t != keep)]
            done = self._apply(bop, op.model_copy(update={"ids": parts, "id": keep}), survivor)
        elif there:
            done = self._apply(bop, UpdateOp(id=there[0], content=op.content, source=op.source, reason=op.reason),
                               survivor)  # fmt: skip
        else:
            was = self.base.get(survivor)
            if was is None:
                return None
            back = sid if sid is not None and sid not in self.cur else None
            done = self._apply(bop, AddOp(section=was.section, content=op.content, id=back, source=op.source,
                                          reason=op.reason), survivor)  # fmt: skip
        if done is not None:
            self._map(survivor, done.id)
            self._took(bop, survivor, done.id)
        return None

    # -- duplicates ----------------------------------------------------------------------------------------------
    def dedup(self, similar: Callable[[list[str], list[str]], Any] | None, threshold: float) -> None:
        """Merge each bullet the branch's ADDs put that duplicates one of the target's (or an earlier one of its
        own) into it, with a MERGE that keeps the target's bullet (its id and content), as the dedup does."""
        new = [(b, t) for b, t in self.added if self.ids.get(b) == t and t in self.cur]
        if not new:
            return
        fresh = {t for _, t in new}
        old = [b for b in self.cur if b.id not in fresh]
        into: dict[str, str] = {}  # a new bullet's target id -> the bullet it duplicates
        if similar is None:
            seen: dict[str, str] = {}
            for b in old:
                seen.setdefault(duplicate_key(b.content), b.id)
            for _, t in new:
                key = duplicate_key(self.cur[t].content)
                if key in seen:
                    into[t] = seen[key]
                else:
                    seen[key] = t
        else:
            self._similar(new, old, similar, threshold, into)
        groups: dict[str, list[str]] = {}
        for _, t in new:
            if t in into:
                groups.setdefault(into[t], []).append(t)
        back = {t: b for b, t in new}
        for keep, dups in groups.items():
            kept, texts = self.cur[keep], {t: self.cur[t].content for t in dups}
            op = MergeOp(ids=[keep, *dups], content=kept.content, id=keep, reason=f"duplicates of {keep} (merge)",
                         source=self.source)  # fmt: skip
            try:
                applied = apply(self.cur, Delta(operations=[op]), policy=self.policy)
            except DeltaError:
                continue  # the target's rules refuse its own bullet's text: both stay, nothing is lost
            self.cur = applied.playbook
            self.ops.append(applied.delta.operations[0])
            for t in dups:
                self.ids[back[t]] = keep
                self.duplicates.append(Duplicate(back[t], t, keep, texts[t]))

    def _similar(
        self,
        new: Sequence[tuple[str, str]],
        old: Sequence[Bullet],
        similar: Callable[[list[str], list[str]], Any],
        threshold: float,
        into: dict[str, str],
    ) -> None:
        """The dedup's rule: cosine at or above ``threshold`` and the same numbers and codes; a new bullet joins the
        most similar of the target's bullets or of the new ones before it that joined none."""
        candidates = [b.id for b in old] + [t for _, t in new]
        texts = [self.cur[i].content for i in candidates]
        facts = [specifics(x) for x in texts]
        sims = similar([self.cur[t].content for _, t in new], texts)
        for row, (_, t) in enumerate(new):
            me = len(old) + row
            best, at = None, float(threshold)
            for col, cand in enumerate(candidates):
                if col >= me or cand in into or facts[col] != facts[me]:
                    continue  # itself, a later new one, or one already folded into another
                s = float(sims[row][col])
                if s >= at and (best is None or s > at):
                    best, at = cand, s
            if best is not None:
                into[t] = best

    def plan(self) -> MergePlan:
        n = (len(self.taken), len(self.duplicates), len(self.conflicts))
        reasons = "merge: {} operations taken, {} duplicates merged, {} conflicts".format(*n)
        delta = Delta(operations=self.ops, reasoning=reasons, source=self.source)
        return MergePlan(delta, self.cur, self.taken, self.duplicates, self.conflicts, self.pending, self.ids)


__all__ = [
    "BRANCH_TAKEN",
    "DROPPED",
    "LEFT_OUT",
    "STRATEGIES",
    "TARGET_KEPT",
    "BranchOp",
    "Conflict",
    "Duplicate",
    "MergePlan",
    "Strategy",
    "Taken",
    "duplicate_key",
    "plan_merge",
]
