"""Rendering: byte-stable output and the token-budgeted render."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ace.playbook import Bullet, Delta, Playbook, apply, approx_tokens, render
from ace.playbook.formats import parse_ace


def _book(scores: list[tuple[int, int]]) -> Playbook:
    bullets = [
        Bullet(f"s-{i:05d}", "S", " ".join([f"rule number {i}"] * 3), helpful=h, harmful=m)
        for i, (h, m) in enumerate(scores)
    ]
    return Playbook.from_sections([("S", bullets[: len(bullets) // 2]), ("T", bullets[len(bullets) // 2 :])])


def test_unchanged_playbook_renders_byte_identically_across_copies() -> None:
    pb = _book([(1, 0), (0, 0), (2, 1)])
    same = parse_ace(render(pb))
    assert render(same) == render(pb)
    # a delta that changes one bullet leaves every line before it unchanged (a stable prompt prefix)
    after = apply(pb, Delta.parse({"operations": [{"type": "TAG", "id": "s-00002", "tag": "helpful"}]})).playbook
    old, new = render(pb).split("\n"), render(after).split("\n")
    first_diff = next(i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
    assert old[:first_diff] == new[:first_diff] and "s-00002" in new[first_diff]


def test_budget_keeps_the_most_useful_bullets_in_original_order() -> None:
    pb = _book([(0, 0), (5, 0), (1, 3), (4, 0), (0, 0), (9, 1)])
    full = render(pb)
    one_line = approx_tokens(render(pb).split("\n")[1] + "\n")
    header = approx_tokens("## S\n") + approx_tokens("\n")
    text = render(pb, budget=2 * header + 3 * one_line)
    kept = [b.id for b in parse_ace(text)]
    assert kept == ["s-00001", "s-00003", "s-00005"]  # scores 5, 4 and 8; printed in playbook order
    assert approx_tokens(text) <= 2 * header + 3 * one_line
    assert render(pb, budget=10_000) == full
    assert render(pb, budget=0) == ""


def test_budget_ties_break_by_recency_then_position() -> None:
    pb = Playbook.from_sections(
        [("S", [Bullet("s-00001", "S", "old", updated_step=1), Bullet("s-00002", "S", "new", updated_step=7)])]
    )
    header = approx_tokens("## S\n") + approx_tokens("\n")
    text = render(pb, budget=header + approx_tokens("[s-00002] helpful=0 harmful=0 :: new\n"))
    assert [b.id for b in parse_ace(text)] == ["s-00002"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=30),
    st.integers(0, 400),
    st.sampled_from(["approx", "words"]),
)
def test_budget_is_never_exceeded_and_is_deterministic(
    scores: list[tuple[int, int]], budget: int, counter: str
) -> None:
    count = approx_tokens if counter == "approx" else (lambda s: len(s.split()))
    pb = _book(scores)
    text = render(pb, budget=budget, count_tokens=count)
    assert count(text) <= budget
    assert text == render(_book(scores), budget=budget, count_tokens=count)
    if text and counter == "approx":
        # the best bullet is always kept when it fits with its header alone
        best = max(pb, key=lambda b: (b.score, b.helpful, -int(b.id[2:])))
        header = approx_tokens(f"## {best.section}\n") + 1
        if header + approx_tokens(render(pb).split("\n")[1] + "\n") + 2 <= budget:
            assert best.id in parse_ace(text)
