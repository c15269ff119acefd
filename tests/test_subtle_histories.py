"""The held-out subtle histories (benchmarks/collapse/subtle_histories.py) do what their labels say, on fresh seeds.

Nothing here asks the detectors anything: these are the generator's own properties (its episodes really lose,
contradict, remove, bloat and burst what they claim, its healthy steps lose nothing, its rewordings keep every
specific), checked with its definition of a specific, on two seeds drawn afresh each run (printed on failure).
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ace.playbook import AddOp, MergeOp, Playbook, RemoveOp, TagOp, UpdateOp, apply

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "collapse"))
try:
    import subtle_histories as sh
finally:
    sys.path.pop(0)

SEEDS = [random.SystemRandom().randrange(1_000_000) for _ in range(2)]
T = TypeVar("T")


@pytest.fixture(scope="module")
def base(released_playbooks: list[Path]) -> tuple[str, Playbook]:
    return sh.load_base(max(released_playbooks, key=lambda p: p.stat().st_size))


@pytest.fixture(scope="module")
def histories(base: tuple[str, Playbook]) -> list[sh.History]:
    return [sh.generate(seed, 400, base=base) for seed in SEEDS]


def stated(pb: Playbook) -> Counter[str]:
    """How many bullets state each specific."""
    out: Counter[str] = Counter()
    for b in pb:
        out.update(sh.specifics(b.content))
    return out


def transitions(h: sh.History) -> Iterator[tuple[sh.Step, Playbook, Playbook, Counter[str], Counter[str]]]:
    """Each step with the versions around it and who states what in each (carried step by step)."""
    counts = stated(h.versions[0])
    for st in h.steps:
        before, after = h.versions[st.version - 1], h.versions[st.version]
        new = counts.copy()
        for bid in dict.fromkeys(i for i, _op in st.delta.ids_touched()):  # a bullet tagged and updated: once
            if bid in before:
                new.subtract(sh.specifics(before[bid].content))
            if bid in after:
                new.update(sh.specifics(after[bid].content))
        new = +new
        yield st, before, after, counts, new
        counts = new


def ops(st: sh.Step, kind: type[T]) -> list[T]:
    return [op for op in st.delta.operations if isinstance(op, kind)]


def occurrences(text: str, value: str) -> int:
    return len(re.findall(rf"(?<![\w.]){re.escape(value)}(?![\w])", text, re.I))


def test_steps_are_labelled_and_replay_to_their_versions(histories: list[sh.History]) -> None:
    for h in histories:
        assert len(h.steps) == len(h.versions) - 1 >= 400, h.seed
        assert [e.kind for e in h.episodes].count("cut") == 1 and set(sh.KINDS) == {e.kind for e in h.episodes}
        owner: dict[int, sh.Episode] = {}
        for e in h.episodes:
            assert e.start <= e.end, (h.seed, e)
            for v in range(e.start, e.end + 1):
                assert v not in owner, f"seed {h.seed}: episodes overlap at {v}"
                owner[v] = e
        graces = {v for e in h.episodes for v in range(e.end + 1, e.end + sh.GRACE + 1)}
        for st in h.steps:
            assert st.kind in sh.LABELS, (h.seed, st.version)
            if st.version in owner:
                assert (st.kind, st.episode) == (owner[st.version].kind, owner[st.version].id), (h.seed, st.version)
            else:
                assert st.kind in ("healthy", "correction") and st.episode is None, (h.seed, st.version)
                assert st.in_grace == (st.version in graces), (h.seed, st.version)
                assert not (st.kind == "correction" and st.version in graces), (h.seed, st.version)
            replayed = apply(h.versions[st.version - 1], st.delta).playbook
            assert replayed.digest() == h.versions[st.version].digest(), (h.seed, st.version)


def test_healthy_steps_lose_no_specific_but_by_removing_a_harmful_bullet(histories: list[sh.History]) -> None:
    kinds: Counter[str] = Counter()
    for h in histories:
        runs: set[str | None] = set()
        for st, before, _after, was, now in transitions(h):
            if st.kind != "healthy":
                continue
            kinds.update(op.type for op in st.delta.operations)
            lost = set(was) - set(now)
            cleaned = {k for rem in ops(st, RemoveOp) for k in sh.specifics(before[rem.id].content)}
            assert lost <= cleaned, f"seed {h.seed} version {st.version} lost {sorted(lost - cleaned)}"
            for rem in ops(st, RemoveOp):
                assert before[rem.id].harmful > before[rem.id].helpful, (h.seed, st.version)
            for upd in ops(st, UpdateOp):  # a healthy UPDATE keeps the bullet's specifics and adds to them
                assert sh.specifics(upd.content) > sh.specifics(before[upd.id].content), (h.seed, st.version)
            for mrg in ops(st, MergeOp):
                both = sh.specifics(before[mrg.ids[0]].content) | sh.specifics(before[mrg.ids[1]].content)
                assert sh.specifics(mrg.content) >= both, (h.seed, st.version)
            for add in ops(st, AddOp):  # a new bullet brings a fact the playbook did not state
                assert any(was[k] == 0 for k in sh.specifics(add.content)), (h.seed, st.version)
            runs.update(tag.source.run_id for tag in ops(st, TagOp) if tag.source)
        assert len(runs) >= 4, f"seed {h.seed}: healthy tags from {len(runs)} reflector runs"
    assert all(kinds[t] >= 5 for t in ("ADD", "UPDATE", "TAG", "REMOVE", "MERGE")), kinds


def test_reworded_and_lossy_merge_steps_drop_a_specific_no_other_bullet_states(histories: list[sh.History]) -> None:
    for h in histories:
        for st, before, _after, was, now in transitions(h):
            if st.kind not in ("reworded", "lossy_merge"):
                continue
            lost = set(was) - set(now)
            assert lost and lost == set(st.detail["dropped"]), (h.seed, st.version)
            if st.kind == "reworded":
                (upd,) = ops(st, UpdateOp)
                old, new = sh.specifics(before[upd.id].content), sh.specifics(upd.content)
                assert lost <= old and all(was[k] == 1 for k in lost), (h.seed, st.version)
                assert len(new) >= len(old) / 2 and new <= old, (h.seed, st.version)  # the gist stays
                assert upd.content != before[upd.id].content
            else:
                (mrg,) = ops(st, MergeOp)
                parts = [sh.specifics(before[i].content) for i in mrg.ids]
                assert len(mrg.ids) == 2 and lost <= parts[0] | parts[1], (h.seed, st.version)
                assert any(lost & (p - q) for p, q in (parts, parts[::-1])), (h.seed, st.version)


def test_erosion_wears_down_a_quarter_of_the_specifics_in_small_steps(histories: list[sh.History]) -> None:
    for h in histories:
        (e,) = [e for e in h.episodes if e.kind == "erosion"]
        assert 50 <= e.end - e.start + 1 <= 100, h.seed
        pool = e.detail["bullets"]
        first, last = h.versions[e.start - 1], h.versions[e.end]
        keys = {k for i in pool for k in sh.specifics(first[i].content)}
        at_end = stated(last)
        gone = {k for k in keys if at_end[k] == 0}
        assert len(gone) >= 0.25 * len(keys), f"seed {h.seed}: {len(gone)} of {len(keys)} gone"
        for st, before, _after, was, now in transitions(h):
            if st.kind != "erosion":
                continue
            updates = ops(st, UpdateOp)
            assert len(updates) <= 1 and not ops(st, RemoveOp) and not ops(st, MergeOp), (h.seed, st.version)
            for op in updates:
                assert op.id in pool and len(op.content) >= 0.6 * len(before[op.id].content), (h.seed, st.version)
            assert len(set(was) - set(now)) <= 4, (h.seed, st.version)  # no step is large


def test_contradictions_state_another_value_and_corrections_record_the_old_one(histories: list[sh.History]) -> None:
    seen: Counter[str] = Counter()
    for h in histories:
        for st, before, after, _was, _now in transitions(h):
            if st.kind not in ("contradiction", "correction"):
                continue
            old, new = st.detail["old"], st.detail["new"]
            bid = st.detail["bullet"]
            if st.kind == "correction" or st.detail["via"] == "UPDATE":
                (upd,) = ops(st, UpdateOp)
                assert upd.id == bid, (h.seed, st.version)
                text, source = after[bid].content, upd.source
                seen["UPDATE" if st.kind == "contradiction" else "correction"] += 1
            else:
                (add,) = ops(st, AddOp)
                text, source = add.content, add.source
                assert add.section == before[bid].section and before[bid].content == after[bid].content
                assert occurrences(before[bid].content, old), (h.seed, st.version)  # the old bullet still says it
                seen["ADD"] += 1
            was_text = before[bid].content
            assert occurrences(text, new) > occurrences(was_text, new), (h.seed, st.version)
            if old.lower() not in new.lower():  # (must -> must not still says "must")
                assert occurrences(text, old) < occurrences(was_text, old), (h.seed, st.version)
            if st.kind == "correction":
                b = before[bid]
                assert b.harmful >= max(2, b.helpful), (h.seed, st.version)
                note = source.note if source else None
                assert note and note.startswith("correction:") and old in note, (h.seed, st.version)
                assert after[bid].sources[-1].note == note  # the record the bullet keeps
    assert seen["UPDATE"] and seen["ADD"] and seen["correction"] >= 4, seen


def test_creeping_removal_burst_and_cut_do_what_they_claim(histories: list[sh.History]) -> None:
    for h in histories:
        for e in h.episodes:
            steps = [h.step(v) for v in range(e.start, e.end + 1)]
            before = h.versions[e.start - 1]
            if e.kind == "creeping_removal":
                assert len(steps) >= 8, h.seed
                for st in steps:
                    (op,) = ops(st, RemoveOp)
                    b = h.versions[st.version - 1][op.id]
                    assert b.helpful > b.harmful and b.helpful >= 3, (h.seed, st.version)
            elif e.kind == "counter_burst":
                assert len(steps) <= 3, h.seed
                tags = [op for st in steps for op in st.delta.operations]
                assert all(isinstance(op, TagOp) and op.tag == "harmful" for op in tags), h.seed
                assert len({(op.source.run_id, op.source.role) for op in tags if op.source}) == 1, h.seed
                assert all(op.source for op in tags), h.seed
                targets = set(e.detail["targets"])
                top = sorted(b.helpful for b in before)[-len(targets)]
                assert all(before[i].helpful >= top for i in targets), h.seed  # the most helpful bullets
                after = h.versions[e.end]
                assert all(after[i].harmful > after[i].helpful for i in targets), h.seed
            elif e.kind == "cut":
                (st,) = steps
                assert len(ops(st, RemoveOp)) == round(0.4 * len(before)) == len(before) - len(h.versions[e.end])


def test_bloat_twins_a_fifth_of_the_bullets_with_real_rewordings(histories: list[sh.History]) -> None:
    for h in histories:
        (e,) = [e for e in h.episodes if e.kind == "bloat"]
        end = h.versions[e.end]
        pairs = [(o, c) for o, c in e.detail["added"] if o in end and c in end]
        twinned = {x for pair in pairs for x in pair}
        assert len(twinned) >= 0.2 * len(end), f"seed {h.seed}: {len(twinned)} of {len(end)}"
        for o, c in pairs:
            orig, copy = end[o].content, end[c].content
            assert sh.specifics(copy) >= sh.specifics(orig), (h.seed, c)
            assert copy.split() != orig.split(), (h.seed, c)
        for v in range(e.start, e.end + 1):
            assert {op.type for op in h.step(v).delta.operations} == {"ADD"}, (h.seed, v)


def test_rewordings_keep_every_specific_and_vary_with_the_seed(base: tuple[str, Playbook]) -> None:
    bullets = list(base[1])[:120]
    differ = 0
    for b in bullets:
        one = sh.paraphrase(b.content, random.Random(SEEDS[0]))
        two = sh.paraphrase(b.content, random.Random(SEEDS[0] + 1))
        for p in (one, two):
            if p is not None:
                assert sh.specifics(p) >= sh.specifics(b.content) and p.split() != b.content.split(), p
        differ += one is not None and two is not None and one != two
    assert differ >= 0.6 * len(bullets), differ


def test_a_seed_gives_one_history_and_two_seeds_two(base: tuple[str, Playbook]) -> None:
    plan = {"reworded": 1, "contradiction": 1}
    one, again, other = (sh.generate(s, sh.MIN_STEPS, base=base, plan=plan) for s in (SEEDS[0], SEEDS[0], SEEDS[1]))
    assert [v.digest() for v in one.versions] == [v.digest() for v in again.versions]
    assert one.versions[-1].digest() != other.versions[-1].digest()
    with pytest.raises(ValueError, match="at least"):
        sh.generate(1, 20, base=base)
