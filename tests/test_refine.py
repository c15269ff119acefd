"""Grow-and-refine: embedding dedup that really merges, anchored grouping, pruning, and `ace playbook dedup`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.llm.embeddings import MiniLMEmbedder
from ace.loop.refine import (
    EmbeddingIndex,
    Refiner,
    SimilarPair,
    dedup_delta,
    duplicate_groups,
    prune_delta,
    similar_pairs,
)
from ace.playbook import Bullet, MergeOp, Playbook, apply
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore


@pytest.fixture(scope="module")
def index() -> EmbeddingIndex:
    return EmbeddingIndex(MiniLMEmbedder())


@pytest.fixture(scope="module")
def appworld(shared_data: Path) -> Playbook:
    return parse_ace((shared_data / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt").read_text())


def book(*bullets: Bullet) -> Playbook:
    return Playbook.from_sections([("S", list(bullets))])


def test_near_duplicates_really_merge(index: EmbeddingIndex) -> None:
    pb = book(
        Bullet("s-00001", "S", "Always loop over page_index until an empty page is returned.", helpful=1),
        Bullet("s-00002", "S", "Quarterly revenue is reported in thousands of dollars.", helpful=5),
        Bullet("s-00003", "S", "Always loop over page_index until an empty page comes back.", helpful=4, harmful=1),
    )
    pairs = similar_pairs(pb, index, 0.9)
    assert [(p.a, p.b) for p in pairs] == [("s-00001", "s-00003")] and pairs[0].similarity >= 0.9
    out = apply(pb, dedup_delta(pb, duplicate_groups(pb, pairs))).playbook
    # s-00003 has the higher score (3 vs 1): it survives with its content, counters summed
    assert [b.id for b in out] == ["s-00002", "s-00003"]
    merged = out["s-00003"]
    assert (merged.helpful, merged.harmful, merged.merged_from) == (5, 1, ("s-00001",))
    assert merged.content == "Always loop over page_index until an empty page comes back."


def test_groups_are_anchored_so_chains_do_not_merge_unrelated_bullets() -> None:
    pb = book(*(Bullet(f"s-0000{i}", "S", f"rule {i}") for i in range(1, 6)))
    pairs = [
        SimilarPair("s-00001", "s-00002", 0.99),
        SimilarPair("s-00002", "s-00003", 0.95),
        SimilarPair("s-00001", "s-00004", 0.93),
        SimilarPair("s-00004", "s-00005", 0.92),
    ]
    # s-00003 is similar to s-00002 but not to the anchor s-00001; s-00005 likewise to s-00004
    assert duplicate_groups(pb, pairs) == [["s-00001", "s-00002", "s-00004"]]


def test_prune_removes_bullets_harmful_by_the_margin() -> None:
    pb = book(
        Bullet("s-00001", "S", "a", helpful=1, harmful=4),
        Bullet("s-00002", "S", "b", harmful=2),
        Bullet("s-00003", "S", "c", helpful=9, harmful=9),
    )
    assert [op.id for op in prune_delta(pb, margin=3).operations] == ["s-00001"]
    assert [op.id for op in prune_delta(pb, margin=2).operations] == ["s-00001", "s-00002"]


def test_refiner_prunes_then_merges_and_reuses_embeddings(index: EmbeddingIndex) -> None:
    pb = book(
        Bullet("s-00001", "S", "Check the units of every figure before adding them."),
        Bullet("s-00002", "S", "Check the units of every figure before adding them up.", helpful=2),
        Bullet("s-00003", "S", "Guess when the data is missing.", harmful=5),
    )
    delta = Refiner(index, threshold=0.9, prune_margin=3).refine(pb)
    assert [(op.type, op.ids if isinstance(op, MergeOp) else getattr(op, "id", None)) for op in delta.operations] == [
        ("REMOVE", "s-00003"),
        ("MERGE", ["s-00002", "s-00001"]),
    ]
    assert len(apply(pb, delta).playbook) == 1


def test_released_appworld_playbook_has_near_duplicates(appworld: Playbook, index: EmbeddingIndex) -> None:
    pairs = similar_pairs(appworld, index, 0.9)
    exact = [p for p in pairs if appworld[p.a].content == appworld[p.b].content]
    assert len(pairs) > 50 and len(exact) >= 1
    assert all(p.similarity >= 0.9 for p in pairs)
    groups = duplicate_groups(appworld, pairs)
    out = apply(appworld, dedup_delta(appworld, groups)).playbook
    assert len(out) == len(appworld) - sum(len(g) - 1 for g in groups)
    assert sum(b.helpful for b in out) == sum(b.helpful for b in appworld)  # nothing lost in a merge


def test_cli_dedup_dry_run_changes_nothing_and_the_real_run_commits(tmp_path: Path, shared_data: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    runner = CliRunner()
    path = shared_data / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt"
    assert runner.invoke(app, ["playbook", "import", str(path), "--name", "aw", "--db", db]).exit_code == 0
    before = PlaybookStore(db).head("aw")

    r = runner.invoke(app, ["playbook", "dedup", "aw", "--dry-run", "--db", db])
    assert r.exit_code == 0, r.output
    assert "pairs at cosine >= 0.9" in r.output and "dry run: nothing written" in r.output
    after = PlaybookStore(db).head("aw")
    assert (after.version, after.digest) == (before.version, before.digest)

    r = runner.invoke(app, ["playbook", "dedup", "aw", "--threshold", "0.95", "--db", db])
    assert r.exit_code == 0, r.output
    store = PlaybookStore(db)
    head = store.head("aw")
    assert head.version == 2 and head.n_bullets < before.n_bullets
    assert head.delta is not None and head.author == "ace dedup"
    assert {op.type for op in head.delta.operations} == {"MERGE"}
    assert store.verify("aw") == 2
