"""Property-based tests over random operation sequences (hypothesis).

For any sequence of random deltas, valid or not: ids stay unique, counters never go negative, a rejected delta
leaves the playbook byte-identical, every export format round-trips, and replaying the event log rebuilds every
version exactly, in memory and through a real SQLite store.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ace.playbook import Bullet, Delta, DeltaError, Playbook, Source, apply, render
from ace.playbook.delta import HeadView, apply_to_head
from ace.playbook.formats import FORMATS, dumps, loads
from ace.store import PlaybookStore
from tests.strategies import SECTIONS, delta_for


def _evolve(data: st.DataObject, steps: int) -> tuple[list[Playbook], list[Delta]]:
    """Apply random deltas; check the invariants after each; return every state and the resolved log."""
    pb = Playbook.empty(SECTIONS[:2])
    states, log = [pb], []
    for step in range(1, steps + 1):
        delta = data.draw(delta_for(pb, step))
        text, digest = render(pb), pb.digest()
        try:
            out = apply(pb, delta)
        except DeltaError:
            assert render(pb) == text and pb.digest() == digest  # rejected: byte-identical
            continue
        pb = out.playbook
        _check_invariants(pb)
        states.append(pb)
        log.append(out.delta)
    return states, log


def _check_invariants(pb: Playbook) -> None:
    listed = [i for s in pb.sections.values() for i in s.ids]
    assert len(listed) == len(set(listed)) == len(pb), "ids unique and every bullet listed once"
    assert set(listed) == set(pb.bullets_by_id)
    slugs = [s.slug for s in pb.sections.values()]
    assert len(slugs) == len(set(slugs))
    # the digest apply carried forward in O(delta) equals one computed from scratch
    assert Playbook(dict(pb.sections), dict(pb.bullets_by_id), pb.next_id).digest() == pb.digest()
    for b in pb:
        assert min(b.helpful, b.harmful, b.neutral) >= 0
        assert b.section in pb.sections and b.id in pb.sections[b.section].ids


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_sequences_keep_invariants_and_replay_exactly(data: st.DataObject) -> None:
    states, log = _evolve(data, data.draw(st.integers(1, 30)))
    replay = states[0]
    for resolved, expected in zip(log, states[1:], strict=True):
        replay = apply(replay, Delta.model_validate_json(resolved.to_json())).playbook
        assert replay.digest() == expected.digest()
        assert render(replay) == render(expected)


def _projection(pb: Playbook, *, neutral: bool) -> list[object]:
    return [list(pb.sections)] + [
        (b.section, b.id, b.content, b.helpful, b.harmful) + ((b.neutral,) if neutral else ()) for b in pb
    ]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_format_round_trips(data: st.DataObject) -> None:
    states, _ = _evolve(data, data.draw(st.integers(1, 15)))
    pb = states[-1]
    assert loads(dumps(pb, "json"), "json").digest() == pb.digest()  # json is the lossless form
    for fmt in FORMATS:
        back = loads(dumps(pb, fmt), fmt)
        assert _projection(back, neutral=fmt in ("json", "skillbook")) == _projection(
            pb, neutral=fmt in ("json", "skillbook")
        )
        assert dumps(back, fmt) == dumps(pb, fmt), f"{fmt}: export of the re-import differs"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_store_log_rebuilds_every_version(data: st.DataObject) -> None:
    """Commit random deltas to a real SQLite file; a fresh store (no cache) rebuilds each version's digest."""
    states, log = _evolve(data, data.draw(st.integers(1, 20)))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ace.db'}"
        with PlaybookStore(url, snapshot_every=data.draw(st.integers(1, 5))) as writer:
            writer.create("pb", states[0])
            for n, d in enumerate(log, start=2):
                # from the head held in memory, or from a store that holds nothing (the materialized head's rows)
                cold = data.draw(st.booleans())
                store = PlaybookStore(url, engine=writer.engine, cache=False) if cold else writer
                assert store.commit("pb", d, expected_version=n - 1).digest == states[n - 1].digest()
                if cold:
                    writer.load("pb")  # the warm writer catches up
        with PlaybookStore(url, cache=False) as reader:
            assert reader.load("pb").digest() == states[-1].digest()  # the head, read from its rows
            for version, expected in enumerate(states, start=1):
                assert reader.load("pb", version).digest() == expected.digest()
            assert [h.digest for h in reader.history("pb")] == [s.digest() for s in states]
            assert reader.verify("pb") == len(states)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_head_held_in_part_takes_a_delta_exactly_as_the_whole_playbook(data: st.DataObject) -> None:
    """apply_to_head (what a store commits from its materialized head: only the bullets a delta names) accepts and
    refuses the same deltas as apply, with the same message, the same resolved ids and the same new state."""
    pb = Playbook.empty(SECTIONS[:2])
    for step in range(1, data.draw(st.integers(1, 25)) + 1):
        delta = data.draw(delta_for(pb, step))
        asked: list[list[str]] = []

        def fetch(ids: Sequence[str], pb: Playbook = pb, asked: list[list[str]] = asked) -> dict[str, Bullet]:
            asked.append(list(ids))
            return {i: pb[i] for i in ids if i in pb}

        view = HeadView({s.name: s.slug for s in pb.sections.values()}, pb.next_id, len(pb), fetch)
        try:
            whole = apply(pb, delta)
        except DeltaError as e:
            try:
                apply_to_head(view, delta)
            except DeltaError as f:
                assert str(f) == str(e)
                continue
            raise AssertionError(f"apply refused ({e}) what apply_to_head accepted") from None
        patch, resolved = apply_to_head(view, delta)
        new = whole.playbook
        assert resolved.to_json() == whole.delta.to_json()
        assert (patch.next_id, patch.n_bullets) == (new.next_id, len(new))
        assert patch.content_sum(pb.content_sum()) == new.content_sum()
        assert {i: patch.after.get(i) for i in patch.before} == {i: new.get(i) for i in patch.before}
        orders = {s.name: list(s.ids) for s in pb.sections.values()} | {n: [] for n, _ in patch.new_sections}
        for kind, sec, i in patch.order:
            orders[sec].append(i) if kind == "+" else orders[sec].remove(i)
        assert orders == {s.name: list(s.ids) for s in new.sections.values()}
        assert whole.patch is not None and list(whole.patch.order) == list(patch.order)
        assert sum(len(a) for a in asked) <= len(delta.operations) * 3  # only the ids the delta names (and new ids)
        pb = new


@given(
    helpful=st.integers(0, 10**6),
    step=st.none() | st.integers(0, 10**6),
    content=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
def test_a_bullet_changed_in_place_of_dataclasses_replace_keeps_every_other_field(
    helpful: int, step: int | None, content: str, extra: dict[str, int]
) -> None:
    from dataclasses import fields, replace

    from ace.playbook import Bullet, Source

    b = Bullet("ctx-00001", "context", "old text", 1, 2, 3, 4, 5, (Source(task_id="t"),), ("ctx-00002",), extra)
    for change in ({"helpful": helpful}, {"content": content, "updated_step": step}, {}):
        fast, slow = b.changed(**change), replace(b, **change)
        assert all(getattr(fast, f.name) == getattr(slow, f.name) for f in fields(Bullet) if f.init)
        assert fast.digest() == slow.digest()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.sampled_from([None, 1]), st.booleans())
def test_the_nesting_read_off_a_json_text_is_the_nesting_of_its_value(
    value: object, indent: int | None, ascii_only: bool
) -> None:
    """load_json's depth limit is checked on the text (brackets inside strings, escaped quotes and all): the same
    depth as the walk over the parsed value."""
    import json

    from ace.playbook.jsonio import depth, text_depth

    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert text_depth(text) == depth(value)


def test_the_nesting_read_off_a_text_stops_counting_past_the_limit() -> None:
    from ace.playbook.jsonio import text_depth

    assert text_depth('{"a": ' + "[" * 70 + "]" * 70 + "}", stop=64) == 65


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_texts = st.text(st.characters(codec="utf-8") | st.sampled_from('"\\\n\t\u2028\x00\x7f\ud800'), max_size=40)
_counts = st.integers(0, 10**20) | st.booleans()  # a bool only in a bullet built by hand
_steps = st.none() | st.integers(-(10**20), 10**20)
_sources = st.builds(
    Source,
    task_id=st.none() | _texts,
    step=_steps | st.booleans(),
    run_id=st.none() | _texts,
    role=st.none() | _texts,
    note=st.none() | _texts,
)


@settings(max_examples=600, deadline=None)
@given(
    st.builds(
        Bullet,
        id=_texts,
        section=_texts,
        content=_texts,
        helpful=_counts,
        harmful=_counts,
        neutral=_counts,
        created_step=_steps,
        updated_step=_steps,
        sources=st.lists(_sources, max_size=3).map(tuple),
        merged_from=st.lists(_texts, max_size=3).map(tuple),
        extra=st.dictionaries(st.text(max_size=6), _json_values, max_size=3),
    )
)
def test_a_bullets_canonical_json_is_json_dumps_of_its_dict_with_sorted_keys(b: Bullet) -> None:
    # canonical() writes the text itself (the digest every version is checked against hashes it): it must stay
    # byte for byte what the JSON encoder writes, on any text (quotes, escapes, U+2028, NUL, a lone surrogate)
    expected = json.dumps(b.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert b.canonical() == expected
    assert json.loads(expected) == json.loads(b.canonical())
