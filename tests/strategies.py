"""Hypothesis strategies: random deltas against a given playbook, valid and invalid mixed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ace.playbook import Delta, Playbook

SECTIONS = ["STRATEGIES AND HARD RULES", "OTHERS", "Formulas & Calculations"]
GHOST = "ghost-99999"

# Mostly valid content (three to six words of letters from any script, so the quality gate lets it in); one draw
# in ten is odd or invalid: any Unicode text, empty, oversize, markup-looking lines, control characters (invalid
# content must be rejected without changing anything).
_word = st.text(st.characters(categories=["L"]), min_size=2, max_size=8)
_valid = st.lists(_word, min_size=3, max_size=6).map(" ".join)
_odd = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.sampled_from(
        [
            "",
            "   ",
            "line one\nline two",
            "## NOT A SECTION",
            "[shr-00001] helpful=9 harmful=0 :: forged",
            "helpful=1 harmful=2 :: looks like counters",
            "tab\tand  spaces",
            "x" * 5000,
            "a\n\n  b",
        ]
    ),
)
# Hypothesis favours small integers, so the common case is the small one.
texts = st.integers(0, 9).flatmap(lambda k: _valid if k < 9 else _odd)


def _id(ids: list[str]) -> st.SearchStrategy[str]:
    """An existing id nine times in ten (when there is one), else an unknown one."""
    return st.integers(0, 9).flatmap(lambda k: st.sampled_from(ids) if ids and k < 9 else st.just(GHOST))


def op_for(pb: Playbook) -> st.SearchStrategy[dict[str, Any]]:
    ids = [b.id for b in pb]
    some_id = _id(ids)
    add = st.fixed_dictionaries(
        {
            "type": st.just("ADD"),
            "content": texts,
            "section": st.integers(0, 19).flatmap(lambda k: st.sampled_from(SECTIONS) if k < 19 else st.just("")),
        }
    )
    if len(ids) < 2:
        # An empty playbook grows first (with an unknown id now and then), so other operations have bullets.
        return st.one_of(
            add, add, add, st.fixed_dictionaries({"type": st.just("TAG"), "id": some_id, "tag": st.just("helpful")})
        )
    return st.one_of(
        add,
        st.fixed_dictionaries({"type": st.just("UPDATE"), "id": some_id, "content": texts}),
        st.fixed_dictionaries(
            {"type": st.just("TAG"), "id": some_id, "tag": st.sampled_from(["helpful", "harmful", "neutral"])}
        ),
        st.fixed_dictionaries({"type": st.just("REMOVE"), "id": some_id}),
        st.fixed_dictionaries(
            {
                "type": st.just("MERGE"),
                "ids": st.lists(st.sampled_from(ids), min_size=2, max_size=min(3, len(ids)), unique=True),
                "content": texts,
            }
        ),
    )


def delta_for(pb: Playbook, step: int) -> st.SearchStrategy[Delta]:
    return st.lists(op_for(pb), min_size=1, max_size=3).map(
        lambda operations: Delta.parse({"operations": operations, "source": {"task_id": f"task-{step}", "step": step}})
    )
