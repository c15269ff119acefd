"""Import/export formats, on the paper's released playbooks and on hand-made edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ace.playbook import Bullet, Playbook, PlaybookFormatError
from ace.playbook.formats import (
    dumps,
    guess_format,
    loads,
    parse_ace,
    parse_json,
    parse_markdown,
    parse_skillbook,
    to_ace,
    to_skillbook,
)


def _non_blank(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def test_released_playbooks_round_trip_through_ace_text(released_playbooks: list[Path]) -> None:
    """Every id and content comes back unchanged; the only normalization is blank-line layout (see README)."""
    for path in released_playbooks:
        original = path.read_text(encoding="utf-8")
        pb = parse_ace(original)
        assert len(pb) == sum(1 for line in original.split("\n") if line.startswith("["))
        exported = to_ace(pb, counters=False)
        assert _non_blank(exported) == _non_blank(original), path.name
        # With counters the id and content of every line are still the original ones.
        with_counters = parse_ace(to_ace(pb))
        assert [(b.id, b.section, b.content) for b in with_counters] == [(b.id, b.section, b.content) for b in pb]


def test_initial_released_playbook_is_byte_identical(shared_data: Path) -> None:
    original = (shared_data / "playbooks" / "appworld_initial_playbook.txt").read_text(encoding="utf-8")
    assert to_ace(parse_ace(original), counters=False) == original


def test_released_playbook_sections_ids_and_counter(shared_data: Path) -> None:
    pb = parse_ace((shared_data / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt").read_text())
    assert len(pb) == 318
    assert [s.slug for s in pb.sections.values()] == ["shr", "api", "code", "cms", "psw", "vc", "ts", "misc"]
    assert list(pb.sections)[6] == "TROUBLESHOOTING AND PITFALLS:"  # the trailing colon is kept verbatim
    assert pb.next_id == 1 + max(int(b.id.split("-")[1]) for b in pb)


def test_counters_parse_and_multiline_content_round_trips() -> None:
    pb = Playbook.from_sections(
        [("CODE", [Bullet("code-00001", "CODE", "Use:\n    for page in pages:\n\n        fetch(page)", helpful=3)])]
    )
    text = to_ace(pb)
    assert text == (
        "## CODE\n[code-00001] helpful=3 harmful=0 :: Use:\n      for page in pages:\n  \n          fetch(page)\n"
    )
    assert parse_ace(text)["code-00001"] == pb["code-00001"]


def test_content_that_looks_like_counters_survives_the_bare_form() -> None:
    pb = Playbook.from_sections([("S", [Bullet("s-00001", "S", "helpful=1 harmful=2 :: not counters")])])
    assert parse_ace(to_ace(pb, counters=False))["s-00001"].content == "helpful=1 harmful=2 :: not counters"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("## A\nthis is prose\n", 2, "expected a '## SECTION' header or a '[id] content' bullet"),
        ("## A\n[bad id!] x\n", 2, "expected a '## SECTION' header"),
        ("## A\n[a-1] \n", 2, "bullet a-1: content is empty"),
        ("## A\n## A\n", 2, "section 'A' appears twice"),
        ("## A\n[a-1] x\n[a-1] y\n", None, "bullet id 'a-1' appears twice"),
        ("## A\n[a-1] bell\x07\n", 2, "control character U+0007"),
    ],
)
def test_ace_parse_errors_name_the_line(text: str, line: int | None, reason: str) -> None:
    with pytest.raises(PlaybookFormatError) as exc:
        parse_ace(text)
    assert exc.value.line == line
    assert reason in str(exc.value)


def test_bullets_before_any_header_go_to_a_default_section() -> None:
    assert list(parse_ace("[x-1] loose bullet\n").sections) == ["GENERAL"]


def test_markdown_and_json_formats(tmp_path: Path) -> None:
    pb = parse_ace("## A\n[a-00001] helpful=2 harmful=1 :: first\n\n## EMPTY\n")
    md = dumps(pb, "md")
    assert "- **[a-00001]** (helpful 2, harmful 1) first" in md and "_(empty)_" in md
    assert parse_markdown(md).digest() == pb.digest()
    assert parse_json(dumps(pb, "json")).digest() == pb.digest()
    with pytest.raises(PlaybookFormatError, match="unknown format 'nope'"):
        parse_json('{"format": "nope"}')
    with pytest.raises(PlaybookFormatError, match="malformed playbook JSON"):
        parse_json('{"format": "ace.playbook/v1", "sections": 3}')


KAYBA: dict[str, Any] = {
    "schema_version": "2",
    "skills": {
        "context-00001": {
            "id": "context-00001",
            "section": "context",
            "keywords": ["api_1", "pagination"],
            "issue": "Issue 1: forgets to paginate",
            "insight": "Loop over page_index until an empty page.",
            "occurrences": [{"trace_uid": "t:1", "source_system": "bench", "trace_id": "trace-1", "epoch": 1}],
            "active": True,
            "used_count": 4,
            "helpful_count": 3,
            "harmful_count": 1,
            "neutral_count": 2,
            "created_at": "2026-11-22T04:58:50+00:00",
            "updated_at": "2026-11-22T04:58:51+00:00",
        },
        "harness-00002": {
            "id": "harness-00002",
            "section": "harness",
            "keywords": ["harness"],
            "issue": "Retry a failing tool once.",
            "insight": None,
            "occurrences": [],
            "active": True,
            "used_count": 0,
            "helpful_count": 0,
            "harmful_count": 0,
            "neutral_count": 0,
            "created_at": "2026-11-22T04:58:50+00:00",
            "updated_at": "2026-11-22T04:58:50+00:00",
        },
        "harness-00003": {
            "id": "harness-00003",
            "section": "harness",
            "keywords": [],
            "issue": "soft-deleted",
            "active": False,
        },
    },
    "sections": {"context": ["context-00001"], "harness": ["harness-00002", "harness-00003"]},
    "next_id": 3,
    "similarity_decisions": {},
}


def test_kayba_skillbook_v2_round_trip() -> None:
    pb = parse_skillbook(json.dumps(KAYBA))
    assert [b.id for b in pb] == ["context-00001", "harness-00002"]  # the inactive skill is not imported
    b = pb["context-00001"]
    assert (b.helpful, b.harmful, b.neutral) == (3, 1, 2)
    assert b.content == "Issue 1: forgets to paginate\nLoop over page_index until an empty page."
    assert pb.next_id == 4
    back = json.loads(to_skillbook(pb))
    expected = {k: v for k, v in KAYBA["skills"].items() if v["active"]}
    assert back["skills"] == expected
    assert back["next_id"] == 3 and back["sections"]["context"] == ["context-00001"]


def test_guess_format() -> None:
    assert guess_format(json.dumps(KAYBA)) == "skillbook"
    assert guess_format('{"format": "ace.playbook/v1"}') == "json"
    assert guess_format("# Playbook\n") == "md"
    assert guess_format("## A\n", "notes.md") == "md"
    assert guess_format("## A\n[a-1] x\n") == "ace"
    with pytest.raises(PlaybookFormatError, match="unknown format 'yaml'"):
        loads("x", "yaml")


def test_a_leading_byte_order_mark_is_not_content() -> None:
    pb = parse_ace("\ufeff## A\n[a-00001] x\n")
    assert list(pb.sections) == ["A"] and pb["a-00001"].content == "x"


def test_a_bulk_build_pauses_the_collector_and_leaves_it_as_it_found_it() -> None:
    """parse_json (and the store's loads) build with the cyclic collector paused: it is back on afterwards, even
    after an error, and stays off if the caller had turned it off."""
    import gc

    from ace.playbook.bulk import builds_in_bulk

    seen: list[bool] = []

    @builds_in_bulk
    def build(fail: bool) -> None:
        seen.append(gc.isenabled())
        if fail:
            raise ValueError("bad input")

    assert gc.isenabled()
    build(False)
    with pytest.raises(ValueError):
        build(True)
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        build(False)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(PlaybookFormatError):
        parse_json('{"format": "ace.playbook/v1", "next_id": 1, "sections": [{"name": 3}]}')
    assert gc.isenabled()


def test_every_serialization_of_a_bullet_carries_every_field_of_the_field_table() -> None:
    """Bullet and Source are serialized from one table each (ace.playbook.model.BULLET_FIELDS, SOURCE_FIELDS): a
    bullet with every field set comes back whole from each path (to_dict/from_dict, the canonical row and
    from_canonical, changed), and the canonical text is json.dumps of the dict with sorted keys."""
    from ace.playbook.model import BULLET_FIELDS, SOURCE_FIELDS, Source

    source = Source(task_id="t-1", step=3, run_id="r", role="curator", note="n")
    b = Bullet("x-00001", "S", "Check the units.", 1, 2, 3, 4, 5, (source,), ("x-00002",), {"keywords": ["units"]})
    assert list(b.to_dict()) == [f.name for f in BULLET_FIELDS]  # in table order, each one written
    assert list(source.to_dict()) == [f.name for f in SOURCE_FIELDS]
    text = b.canonical()
    assert text == json.dumps(b.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for back in (Bullet.from_dict(b.to_dict()), Bullet.from_canonical(json.loads(text), text), b.changed()):
        assert back == b and back.canonical() == text and back.digest() == b.digest()
    assert Source.from_dict(source.to_dict()) == source
    unset = Bullet("x-00001", "S", "Check the units.")
    assert unset.to_dict() == {"id": "x-00001", "section": "S", "content": "Check the units.", "helpful": 0,
                               "harmful": 0, "neutral": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("[a-00001] helpful=abc harmful=0 :: Refunds need a form.", "'helpful=abc' is not a count"),
        ("[a-00001] harmful=2 :: Refunds need a form.", "'harmful=2' is not a count"),
        ("[a-00001] helpful=99999999999999999999999999 harmful=0 :: Refunds need a form.", "is over 2,147,483,647"),
    ],
)
def test_a_hand_edit_that_breaks_the_counters_is_an_error_naming_the_line(line: str, said: str) -> None:
    with pytest.raises(PlaybookFormatError, match=f"line 2: bullet a-00001: .*{said}"):
        parse_ace(f"## RULES\n{line}\n")


def test_content_that_starts_like_counters_round_trips_with_counters_written() -> None:
    pb = parse_ace("## RULES\n[a-00001] helpful=1 harmful=0 :: helpful=yes means the flag is set.\n")
    for counters in (True, False):
        again = parse_ace(to_ace(pb, counters=counters))
        assert [b.content for b in again] == ["helpful=yes means the flag is set."]
