"""Grow-and-refine: find near-duplicate bullets by embedding and really merge them; prune harmful bullets.

Both produce an ordinary :class:`~ace.playbook.Delta` (MERGE and REMOVE operations), so a refinement is applied by
the same atomic ``apply``, committed as a version like any other, and can be rolled back.

Duplicates: bullets whose embeddings have cosine similarity >= ``threshold`` (default 0.9) and that state the same
numbers and codes (bullets that differ in them are different facts, however alike their wording). Groups are formed
greedily from the most similar pair down; a bullet joins a group only if it is similar enough to the group's
anchor (its first member), so a chain a~b~c never merges a with an unrelated c. In each group the survivor is the
most useful bullet (score, then helpful count, then the longer, more specific content, then playbook order); it
keeps its id and content, the others are merged into it (counters summed, provenance kept; see ``MERGE``).

Pruning: a bullet whose harmful count exceeds its helpful count by ``prune_margin`` or more is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ace.llm.embeddings import Embedder
from ace.playbook import Bullet, Delta, MergeOp, Playbook, RemoveOp, Source
from ace.playbook.text import specifics


@dataclass(frozen=True, slots=True)
class SimilarPair:
    a: str
    b: str
    similarity: float


class EmbeddingIndex:
    """Bullet-content vectors, computed once per distinct content and reused across versions."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vec in zip(missing, self.embedder.embed(missing), strict=True):
                self._vectors[text] = vec
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarities of every text of ``a`` with every text of ``b`` (the vectors are unit length)."""
        sims: np.ndarray = self.vectors(a) @ self.vectors(b).T
        return sims


def similar_pairs(
    playbook: Playbook,
    index: EmbeddingIndex,
    threshold: float = 0.9,
    *,
    block: int = 1024,
    same_specifics: bool = True,
) -> list[SimilarPair]:
    """Every pair of bullets at cosine >= ``threshold``, most similar first (blockwise: memory O(block x n)).

    ``same_specifics``: skip pairs whose numbers and codes differ (:func:`ace.playbook.text.specifics`): "supplier
    S012 uses code K12" and "supplier S013 uses code K13" embed at cosine > 0.9 but are two facts, and merging
    them would forget one (the collapse benchmark caught exactly that)."""
    bullets = list(playbook)
    vecs = index.vectors([b.content for b in bullets])
    facts = [specifics(b.content) for b in bullets] if same_specifics else None
    pairs: list[SimilarPair] = []
    for start in range(0, len(bullets), block):
        sims = vecs[start : start + block] @ vecs.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i and (facts is None or facts[i] == facts[c]):
                pairs.append(SimilarPair(bullets[i].id, bullets[c].id, float(sims[r, c])))
    position = {b.id: n for n, b in enumerate(bullets)}
    pairs.sort(key=lambda p: (-p.similarity, position[p.a], position[p.b]))
    return pairs


def duplicate_groups(playbook: Playbook, pairs: Sequence[SimilarPair]) -> list[list[str]]:
    """Greedy anchored grouping (see module doc); each group in playbook order, groups in order of first member."""
    sim = {(p.a, p.b): p.similarity for p in pairs} | {(p.b, p.a): p.similarity for p in pairs}
    group_of: dict[str, list[str]] = {}
    for p in pairs:
        ga, gb = group_of.get(p.a), group_of.get(p.b)
        if ga is None and gb is None:
            group_of[p.a] = group_of[p.b] = [p.a, p.b]
        elif ga is not None and gb is None and (ga[0], p.b) in sim:
            ga.append(p.b)
            group_of[p.b] = ga
        elif gb is not None and ga is None and (gb[0], p.a) in sim:
            gb.append(p.a)
            group_of[p.a] = gb
    position = {b.id: n for n, b in enumerate(playbook)}
    unique = {id(g): g for g in group_of.values()}.values()
    return sorted((sorted(g, key=position.__getitem__) for g in unique), key=lambda g: position[g[0]])


def survivor(bullets: Sequence[Bullet], position: dict[str, int]) -> Bullet:
    return min(bullets, key=lambda b: (-b.score, -b.helpful, -len(b.content), position[b.id]))


def dedup_delta(playbook: Playbook, groups: Sequence[Sequence[str]], *, source: Source | None = None) -> Delta:
    """MERGE operations folding each group into its most useful bullet."""
    position = {b.id: n for n, b in enumerate(playbook)}
    ops: list[MergeOp] = []
    for group in groups:
        members = [playbook[i] for i in group]
        keep = survivor(members, position)
        ids = [keep.id, *(b.id for b in members if b.id != keep.id)]
        ops.append(MergeOp(ids=ids, content=keep.content, reason=f"near-duplicates of {keep.id}"))
    return Delta(operations=ops, reasoning="grow-and-refine: merge near-duplicate bullets", source=source)


def prune_delta(playbook: Playbook, margin: int = 3, *, source: Source | None = None) -> Delta:
    """REMOVE operations for bullets tagged harmful at least ``margin`` more often than helpful."""
    ops = [
        RemoveOp(id=b.id, reason=f"harmful {b.harmful} vs helpful {b.helpful}")
        for b in playbook
        if b.harmful - b.helpful >= margin
    ]
    return Delta(operations=ops, reasoning="grow-and-refine: prune harmful bullets", source=source)


@dataclass
class Refiner:
    """Dedup and prune with one embedding cache; ``refine`` returns one delta (possibly empty)."""

    index: EmbeddingIndex
    threshold: float = 0.9
    prune_margin: int | None = 3

    def refine(self, playbook: Playbook, *, source: Source | None = None) -> Delta:
        pruned = prune_delta(playbook, self.prune_margin, source=source) if self.prune_margin is not None else None
        removed = {op.id for op in pruned.operations} if pruned else set()
        pairs = [
            p for p in similar_pairs(playbook, self.index, self.threshold) if p.a not in removed and p.b not in removed
        ]
        merged = dedup_delta(playbook, duplicate_groups(playbook, pairs), source=source)
        ops = [*(pruned.operations if pruned else []), *merged.operations]
        return Delta(operations=ops, reasoning="grow-and-refine", source=source)


@dataclass(frozen=True)
class DedupPlan:
    """What merging a playbook's near-duplicates would do: the similar pairs (most similar first), the groups they
    form, and the delta that merges each group into its most useful bullet."""

    threshold: float
    pairs: list[SimilarPair]
    groups: list[list[str]]
    delta: Delta
    before: int  # bullets now

    @property
    def after(self) -> int:
        return self.before - sum(len(g) - 1 for g in self.groups)


def plan_dedup(playbook: Playbook, index: EmbeddingIndex, threshold: float = 0.9) -> DedupPlan:
    """The :class:`DedupPlan` for ``playbook`` at cosine ``threshold`` (nothing is applied)."""
    pairs = similar_pairs(playbook, index, threshold)
    groups = duplicate_groups(playbook, pairs)
    source = Source(role="refine", note=f"dedup at cosine >= {threshold}")
    return DedupPlan(threshold, pairs, groups, dedup_delta(playbook, groups, source=source), len(playbook))
