"""The subtle-loss detectors: facts reworded away, slow erosion, lossy merges, contradictions, creeping removal,
duplicate bloat, counter manipulation; their windows; and the same alerts from the guard, the CLI and the service.

Each kind is built here by hand from the released AppWorld playbook (read from ../shared/data) and from bullets
written for these tests; the held-out measurement on generated histories is ``benchmarks/collapse/bench_subtle.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ace.cli import app
from ace.collapse import Alert, CollapseGuard, Detectors
from ace.collapse.facts import facts, flipped, subject
from ace.collapse.index import fact_index
from ace.collapse.relations import Rules, twins
from ace.playbook import ApplyPolicy, Delta, Playbook, apply
from ace.playbook.formats import loads
from ace.store import PlaybookStore

ROOT = Path(__file__).resolve().parent.parent
RELEASED = ROOT.parent / "shared" / "data" / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt"
OPEN = ApplyPolicy(quality=None)

RULES = [
    "When paginating apis.venmo.show_transactions, pass page_index only when paginating past the first page.",
    "Refunds from Oslo use ledger code LC-4410 and settle within 30 days.",
    "Always call apis.supervisor.complete_task() with status='success' before ending the episode.",
    "The Spotify API caps page_limit at 20 items per request.",
    "Convert every amount to USD before summing across currencies.",
    "Never hardcode dates: compute them with datetime.now() at run time.",
    "File system paths under ~/documents are case sensitive on the Linux host.",
    "For Gmail searches, quote the subject exactly: 'Quarterly report'.",
]


def _apply(pb: Playbook, ops: Sequence[Mapping[str, object]]) -> Playbook:
    return apply(pb, Delta.parse({"operations": ops}), policy=OPEN).playbook


def _base(extra: Sequence[str] = ()) -> Playbook:
    return _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": c} for c in [*RULES, *extra]])


def _rated(pb: Playbook, bullet_id: str, helpful: int = 5) -> Playbook:
    return _apply(pb, [{"type": "TAG", "id": bullet_id, "tag": "helpful"}] * helpful)


def _ids(pb: Playbook) -> list[str]:
    return [b.id for b in pb]


def _kinds(alerts: Sequence[Alert], severity: str = "warning") -> set[str]:
    return {a.detector for a in alerts if a.at_least(severity)}  # type: ignore[arg-type]


def test_facts_are_identifiers_codes_quotes_numbers_names_and_conditions() -> None:
    f = facts(RULES[0])
    assert {"id:apis.venmo.show_transactions", "id:page_index", "cond:only when:paginat"} <= f
    assert {"code:lc-4410", "num:30 days", "name:oslo"} <= facts(RULES[1])
    assert {"quote:success", "id:apis.supervisor.complete_task", "cond:before:ending"} <= facts(RULES[2])
    assert {"name:spotify", "num:20 items", "id:page_limit", "code:api"} <= facts(RULES[3])
    assert "quote:quarterly report" in facts(RULES[7])
    assert subject("Paginating the results") == subject("paginate results")
    assert flipped("Always retry a 429.", "Never retry a 429.") == ("always", "never")
    assert flipped("Always retry a 429.", "Always retry a 429 twice.") is None


def test_healthy_steps_raise_nothing_at_warning() -> None:
    pb = _rated(_base(), "rule-00004")
    ids = _ids(pb)
    steps = [
        # a new fact
        [{"type": "ADD", "section": "rules", "content": "Amazon orders ship from warehouse W-17 on weekdays."}],
        # an update that keeps every fact and adds detail
        [{"type": "UPDATE", "id": ids[3], "content": RULES[3] + " Ask for the next page with page_index + 1."}],
        # cleanup of a harmful bullet
        [{"type": "TAG", "id": ids[6], "tag": "harmful"}] * 3,
        [{"type": "REMOVE", "id": ids[6]}],
        # scattered tags
        [{"type": "TAG", "id": ids[1], "tag": "helpful"}, {"type": "TAG", "id": ids[5], "tag": "harmful"}],
        # a merge of two statements of one fact that keeps every fact of both
        [{"type": "ADD", "section": "rules", "content": "Oslo refunds settle within 30 days under code LC-4410."}],
    ]
    versions = [pb]
    for ops in steps:
        versions.append(_apply(versions[-1], ops))
    merged_id = _ids(versions[-1])[-1]
    versions.append(_apply(versions[-1], [{"type": "MERGE", "ids": [ids[1], merged_id], "content": RULES[1]}]))
    alerts = Detectors().scan(list(enumerate(versions, start=1)))
    assert [a for a in alerts if a.at_least("warning")] == []
    # the restatement was named (info), not hidden
    assert [a.detector for a in alerts] == ["redundancy"]


@pytest.mark.parametrize(
    ("index", "rewrite", "fact"),
    [
        (0, "When paginating apis.venmo.show_transactions, pass page_index.", "cond:only when:paginat"),
        (3, "The Spotify API caps the page size at 20 items per request.", "id:page_limit"),
        (7, "For Gmail searches, quote the subject exactly.", "quote:quarterly report"),
        (1, "Refunds from Oslo use ledger code LC-4410 and settle within a month.", "num:30 days"),
    ],
)
def test_a_fact_reworded_away_warns_and_critical_on_a_well_rated_bullet(index: int, rewrite: str, fact: str) -> None:
    pb = _base()
    bullet = _ids(pb)[index]
    after = _apply(pb, [{"type": "UPDATE", "id": bullet, "content": rewrite}])
    (alert,) = [a for a in Detectors().check(pb, after) if a.detector == "facts"]
    assert alert.severity == "warning" and alert.ids == (bullet,) and fact in alert.facts
    assert alert.evidence["before"] == RULES[index] and alert.evidence["after"] == rewrite
    rated = _rated(pb, bullet)
    (alert,) = [
        a
        for a in Detectors().check(rated, _apply(rated, [{"type": "UPDATE", "id": bullet, "content": rewrite}]))
        if a.detector == "facts"
    ]
    assert alert.severity == "critical"
    # the same fact still stated by another bullet: no loss; a condition belongs to its rule: still lost
    kept = _apply(pb, [{"type": "ADD", "section": "rules", "content": RULES[index] + " (kept here too)"}])
    again = Detectors().check(kept, _apply(kept, [{"type": "UPDATE", "id": bullet, "content": rewrite}]))
    assert ("facts" in _kinds(again)) == fact.startswith("cond:")


def test_a_lossy_merge_warns_with_the_dropped_fact() -> None:
    pb = _base()
    ids = _ids(pb)
    after = _apply(pb, [{"type": "MERGE", "ids": [ids[3], ids[0]], "content": RULES[3] + " Paginate with page_index."}])
    (alert,) = [a for a in Detectors().check(pb, after) if a.detector == "facts"]
    assert alert.ids == (ids[0],) and "id:apis.venmo.show_transactions" in alert.facts


@pytest.mark.parametrize(
    ("index", "rewrite", "was", "now"),
    [
        (1, "Refunds from Oslo use ledger code LC-4471 and settle within 30 days.", "code:lc-4410", "code:lc-4471"),
        (3, "The Spotify API caps page_limit at 50 items per request.", "num:20 items", "num:50 items"),
        (5, "Always hardcode dates: compute them with datetime.now() at run time.", "never", "always"),
    ],
)
def test_an_update_that_swaps_a_fact_is_a_contradiction(index: int, rewrite: str, was: str, now: str) -> None:
    pb = _base()
    bullet = _ids(pb)[index]
    after = _apply(pb, [{"type": "UPDATE", "id": bullet, "content": rewrite}])
    alerts = Detectors().check(pb, after)
    (alert,) = [a for a in alerts if a.detector == "contradiction"]
    assert alert.facts == (was, now) and alert.evidence == {"before": RULES[index], "after": rewrite}
    assert "facts" not in _kinds(alerts)  # the swapped value is reported once, as what it is


def test_an_add_that_contradicts_a_bullet_is_flagged_but_a_different_subject_is_not() -> None:
    pb = _base()
    after = _apply(
        pb,
        [
            {
                "type": "ADD",
                "section": "rules",
                "content": "Refunds from Oslo use ledger code LC-9999 and settle within 30 days.",
            }
        ],
    )
    (alert,) = [a for a in Detectors().check(pb, after) if a.detector == "contradiction"]
    assert set(alert.facts) == {"code:lc-4410", "code:lc-9999"} and _ids(pb)[1] in alert.ids
    other = _apply(
        pb,
        [
            {
                "type": "ADD",
                "section": "rules",
                "content": "Refunds from Bergen use ledger code LC-9999 and settle within 45 days.",
            }
        ],
    )
    assert "contradiction" not in _kinds(Detectors().check(pb, other))


def test_slow_erosion_raises_one_window_alert() -> None:
    pb = _base(
        [f"Batch job J-{n} runs nightly at 0{n}:00 UTC and retries 3 times before paging on-call." for n in range(1, 9)]
    )
    ids = _ids(pb)[len(RULES) :]
    versions = [pb]
    for n, i in enumerate(ids):
        # vaguer, no fact dropped: the numbers go to words a reader cannot act on
        text = versions[-1][i].content
        vaguer = text.replace(" and retries 3 times before paging on-call", ", retrying before it pages")
        versions.append(_apply(versions[-1], [{"type": "UPDATE", "id": i, "content": vaguer}]))
        versions.append(_apply(versions[-1], [{"type": "TAG", "id": _ids(pb)[n % 3], "tag": "helpful"}]))
    alerts = Detectors().scan(list(enumerate(versions, start=1)))
    erosion = [a for a in alerts if a.detector == "erosion"]
    assert len(erosion) == 1 and erosion[0].severity == "warning"
    assert len(erosion[0].evidence["versions"]) == 4 and set(erosion[0].ids) <= set(ids)


def test_creeping_removal_of_well_rated_bullets_warns_each_step_and_once_over_the_window() -> None:
    pb = _base()
    for i in _ids(pb)[:5]:
        pb = _rated(pb, i, 3)
    versions = [pb]
    for i in _ids(pb)[:4]:
        versions.append(_apply(versions[-1], [{"type": "REMOVE", "id": i}]))
    alerts = Detectors().scan(list(enumerate(versions, start=1)))
    assert len([a for a in alerts if a.detector == "counters"]) == 4
    assert len([a for a in alerts if a.detector == "removal"]) == 1


def test_duplicate_bloat_warns_once_a_few_paraphrases_pile_up() -> None:
    pb = _base()
    paraphrases = [
        "Oslo refunds: use ledger code LC-4410; they settle within 30 days.",
        "Within 30 days, refunds from Oslo settle, booked under LC-4410.",
        "Use LC-4410 as ledger code for Oslo refunds (settled in 30 days).",
    ]
    versions = [pb]
    for text in paraphrases:
        versions.append(_apply(versions[-1], [{"type": "ADD", "section": "rules", "content": text}]))
    alerts = Detectors().scan(list(enumerate(versions, start=1)))
    assert [a.severity for a in alerts if a.detector == "redundancy"].count("info") == 3
    assert [a.severity for a in alerts if a.detector == "redundancy"].count("warning") >= 1


def test_a_burst_of_harmful_tags_on_well_rated_bullets_warns() -> None:
    pb = _base()
    top = _ids(pb)[:3]
    for i in top:
        pb = _rated(pb, i, 4)
    versions = [pb, _apply(pb, [{"type": "TAG", "id": i, "tag": "harmful"} for i in top])]
    versions.append(_apply(versions[-1], [{"type": "TAG", "id": top[0], "tag": "harmful"}] * 4))
    alerts = Detectors().scan(list(enumerate(versions, start=1)))
    counters = [a for a in alerts if a.detector == "counters"]
    assert any("harmful tags" in a.message for a in counters)  # the burst
    assert any("pushed" in a.message and a.ids == (top[0],) for a in counters)  # pushed negative


def test_a_forty_percent_cut_is_still_critical() -> None:
    pb = _apply(
        Playbook.empty(),
        [{"type": "ADD", "section": "rules", "content": b.content} for b in loads(RELEASED.read_text())][:120],
    )
    cut = _apply(pb, [{"type": "REMOVE", "id": i} for i in _ids(pb)[::5] + _ids(pb)[1::5]])
    assert "critical" in {a.severity for a in Detectors().check(pb, cut)}


def test_the_released_playbook_imported_raises_no_subtle_alert() -> None:
    pb = loads(RELEASED.read_text())
    assert [a for a in Detectors().scan([(1, pb)]) if a.at_least("warning")] == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40), st.integers(0, 3)), min_size=1, max_size=12))
def test_carried_indexes_and_twins_equal_a_full_computation(steps: list[tuple[int, int, int]]) -> None:
    texts = [*RULES, "Oslo refunds settle within 30 days under code LC-4410.", "Paginate with page_index."]
    pb = _base()
    fact_index(pb)
    twins(pb, Rules())
    for op, pick, t in steps:
        ids = _ids(pb)
        target = ids[pick % len(ids)] if ids else None
        text = texts[(pick + t) % len(texts)] + (" " + "x" * t if t else "")
        ops: list[dict[str, object]]
        if op == 0 or target is None:
            ops = [{"type": "ADD", "section": "rules", "content": text}]
        elif op == 1:
            ops = [{"type": "UPDATE", "id": target, "content": text}]
        elif op == 2 and len(ids) > 2:
            ops = [{"type": "REMOVE", "id": target}]
        elif op == 3 and len(ids) > 2:
            ops = [{"type": "MERGE", "ids": [target, ids[(pick + 1) % len(ids)]], "content": text}]
        else:
            ops = [{"type": "TAG", "id": target, "tag": "harmful"}]
        pb = _apply(pb, ops)
        incremental_facts, incremental_twins = fact_index(pb), twins(pb, Rules())
        fresh = Playbook.from_dict(pb.to_dict())
        assert {k: set(v) for k, v in incremental_facts.items()} == {k: set(v) for k, v in fact_index(fresh).items()}
        assert dict(incremental_twins) == dict(twins(fresh, Rules()))


def test_guard_cli_and_service_agree_on_every_alert(tmp_path: Path) -> None:
    from ace.service.auth import Grant
    from ace.service.core import Service

    db = f"sqlite:///{tmp_path / 'p.db'}"
    store = PlaybookStore(db)
    pb = _base()
    for i in _ids(pb)[:3]:
        pb = _rated(pb, i, 3)
    store.create("p", pb)
    ids = _ids(pb)
    deltas = [
        [{"type": "UPDATE", "id": ids[0], "content": "When paginating apis.venmo.show_transactions, pass page_index."}],
        [
            {
                "type": "ADD",
                "section": "rules",
                "content": "Refunds from Oslo use ledger code LC-9999 and settle within 30 days.",
            }
        ],
        [{"type": "REMOVE", "id": ids[2]}],
        [{"type": "REMOVE", "id": ids[1]}],
        [{"type": "UPDATE", "id": ids[3], "content": "The Spotify API caps page_limit at 50 items per request."}],
        [{"type": "REMOVE", "id": ids[4]}],
    ]
    guard = CollapseGuard(block_at="critical")
    head = store.load("p")
    guarded: list[Alert] = []
    for ops in deltas:
        candidate = _apply(head, ops)
        v = store.head_version("p")
        reason = guard(head, candidate, versions=(v, v + 1))
        if reason is None:
            store.commit("p", Delta.parse({"operations": ops}), expected_version=v)
            head = candidate
    guarded = guard.alerts
    assert {a.detector for a in guarded} >= {"facts", "contradiction", "counters", "removal"}
    blocked = [a for a in guarded if a.severity == "critical"]
    assert blocked and blocked[0].detector == "facts"  # the well-rated bullet's fact: the step was not committed
    committed = [a for a in guarded if a.versions[1] is not None and a.versions[1] <= store.head_version("p")]
    committed = [a for a in committed if a.severity != "critical"]
    result = CliRunner().invoke(app, ["playbook", "check", "p", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.output)["alerts"]
    service = Service(store).check(Grant.local("t", ["default"]), "default", "p")["alerts"]
    assert cli == service
    assert [a for a in cli if a["versions"][0] is not None] == [a.to_dict() for a in committed]
    for a in cli:
        assert set(a) >= {"detector", "severity", "versions", "ids", "facts", "evidence", "message"}


# -- what an outside trial on held-out histories found missing (issue #25) ---------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "lost"),
    [
        ("Keep calling search_orders only when paginating.", "Keep calling search_orders.", "cond:only when:paginat"),
        ("Check that every amount was extracted before summing.", "Check that every amount was extracted.",
         "cond:before:summ"),
    ],
)  # fmt: skip
def test_a_condition_of_one_word_at_the_end_of_a_sentence_is_a_fact(old: str, new: str, lost: str) -> None:
    assert lost in facts(old)
    pb = _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": old}])
    after = _apply(pb, [{"type": "UPDATE", "id": _ids(pb)[0], "content": new}])
    (alert,) = [a for a in Detectors().check(pb, after) if a.detector == "facts"]
    assert lost in alert.facts


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Retry the upload up to 3 times before failing.", "Retry the upload up to 30 times before failing."),
        ("Call list_songs with page_limit=20 on every page.", "Call list_songs with page_limit=200 on every page."),
        ("Wait 5 seconds between polls of get_status.", "Wait 15 seconds between polls of get_status."),
        ("search_album(page_index=0) returns the first page.", "search_album(page_index=10) returns the first page."),
        ("To find the newest email, sort by received_at.", "To find the oldest email, sort by received_at."),
    ],
)
def test_a_new_value_that_contains_the_old_one_or_an_opposite_word_is_a_swap(old: str, new: str) -> None:
    pb = _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": old}])
    after = _apply(pb, [{"type": "UPDATE", "id": _ids(pb)[0], "content": new}])
    assert "contradiction" in _kinds(Detectors().check(pb, after))


def test_an_add_that_restates_one_sentence_of_a_bullet_with_a_value_changed_is_a_contradiction() -> None:
    long = ("Fetch the token first. A missing token makes count_voice_messages answer HTTP 500. Retry once after "
            "refreshing it.")  # fmt: skip
    pb = _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": long}])
    add = "In practice, a missing token makes count_voice_messages answer HTTP 409."
    after = _apply(pb, [{"type": "ADD", "section": "rules", "content": add}])
    (alert,) = [a for a in Detectors().check(pb, after) if a.detector == "contradiction"]
    assert set(alert.facts) == {"num:500", "num:409"} and _ids(pb)[0] in alert.ids
    same = _apply(pb, [{"type": "ADD", "section": "rules", "content": "A missing token makes count_voice_messages "
                                                                       "answer HTTP 500 on retries too."}])  # fmt: skip
    assert "contradiction" not in _kinds(Detectors().check(pb, same))


def test_a_list_marker_does_not_make_a_verb_a_name_and_a_merge_does_not_push_counters() -> None:
    assert not any(f.startswith("name:") for f in facts("4) Gather all liked songs with list_liked()"))
    pair = ("Use list_liked() to gather the liked songs.", "Use list_liked() to gather the songs that were liked.")
    pb = _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": c} for c in pair])
    a, b = _ids(pb)
    pb = _rated(pb, a, 3)
    pb = _apply(pb, [{"type": "TAG", "id": b, "tag": "harmful"}] * 4)
    merged = _apply(pb, [{"type": "MERGE", "ids": [a, b], "content": pb[a].content}])
    assert merged[a].harmful == 4  # counters summed: nobody tagged anything harmful in this step
    assert "counters" not in _kinds(Detectors().check(pb, merged))


def test_an_alert_on_the_first_version_names_it_and_a_damaged_log_is_a_clear_error(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 's.db'}"
    store = PlaybookStore(url)
    store.create("p", loads("## 规则\n[r-00001] Refunds from Oslo use ledger code LC-4410.\n"))  # a CJK section: fine
    store.commit("p", Delta.parse({"operations": [{"type": "TAG", "id": "r-00001", "tag": "helpful"}]}))
    store.close()
    runner = CliRunner()
    done = runner.invoke(app, ["playbook", "check", "p", "--db", url, "--json", "--strict"])
    assert done.exit_code == 0, done.output
    assert all(None not in a["versions"] for a in json.loads(done.stdout)["alerts"])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("update ace_versions set delta = '{not json' where version = 2"))
    bad = runner.invoke(app, ["playbook", "check", "p", "--db", url])
    assert bad.exit_code != 0 and "a bug in ace" not in bad.output and "Traceback" not in bad.output
    with engine.begin() as conn:
        conn.execute(text("delete from ace_versions where version = 2"))
        conn.execute(text("update ace_playbooks set head = 3"))
        conn.execute(text("insert into ace_versions (playbook_id, version, parent, kind, delta, digest, n_bullets, "
                          "created_at) select playbook_id, 3, 1, kind, delta, digest, n_bullets, created_at from "
                          "ace_versions where version = 1"))  # fmt: skip
    gap = runner.invoke(app, ["playbook", "check", "p", "--db", url, "--strict"])
    assert gap.exit_code != 0 and "version 2" in gap.output and "missing" in gap.output
