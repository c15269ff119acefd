"""Branches and merge (issue #24, item 6): a branch is a playbook of its own whose version 1 is its parent at the fork
point; what it learns merges back three-way by delta, as one version naming the branch: counters add, duplicate ADDs
are merged, id clashes remapped, conflicts listed and resolved by a stated strategy, and merging again with nothing
new writes nothing. On real SQLite files (and PostgreSQL where the store tests run on it); the learning runs on the
public scripted provider (a test double: the merge is the point, not the model)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from ace.cli import app as cli
from ace.errors import ConfigError
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.names import InvalidName
from ace.playbook import Delta, Playbook, apply
from ace.playbook.formats import parse_ace
from ace.playbook.merge import BranchOp, plan_merge
from ace.runs.from_logs import learn, to_task
from ace.runs.trajectory import export, replay
from ace.store import BranchRefused, NotABranch, PlaybookExists, PlaybookNotFound, PlaybookStore, VersionNotFound

ROOT = Path(__file__).resolve().parents[1]
START = parse_ace(
    "## LEDGER CODES\n"
    "[lc-00001] Refunds from Oslo use ledger code LC-4471.\n"
    "[lc-00002] Refunds from Bergen use ledger code LC-8799.\n"
    "[lc-00003] Refunds from Ghent use ledger code LC-1203.\n"
)


def _delta(*ops: dict[str, Any]) -> Delta:
    return Delta.parse({"operations": list(ops)})


def add(content: str, section: str = "LEDGER CODES") -> dict[str, Any]:
    return {"type": "ADD", "section": section, "content": content}


def update(bullet: str, content: str) -> dict[str, Any]:
    return {"type": "UPDATE", "id": bullet, "content": content}


def tag(bullet: str, kind: str = "helpful") -> dict[str, Any]:
    return {"type": "TAG", "id": bullet, "tag": kind}


def remove(bullet: str) -> dict[str, Any]:
    return {"type": "REMOVE", "id": bullet}


def _store(url: str) -> PlaybookStore:
    store = PlaybookStore(url)
    store.create("p", START, namespace="t")
    return store


def contents(store: PlaybookStore, name: str) -> dict[str, Any]:
    return {b.content: b for b in store.load(name, namespace="t")}


# -- the bar: four branches learned from disjoint episodes merge into one -------------------------------------
CITIES = [
    [("Lyon", "LC-5001"), ("Porto", "LC-5002"), ("Turku", "LC-5003")],
    [("Malmo", "LC-6001"), ("Riga", "LC-6002"), ("Gdansk", "LC-6003")],
    [("Tartu", "LC-7001"), ("Bilbao", "LC-7002"), ("Lyon", "LC-5001")],  # Lyon: learned on branch 0 too
    [("Graz", "LC-8001"), ("Brno", "LC-8002"), ("Aarhus", "LC-8003")],
]


def _episode(agent: int, i: int, city: str, code: str) -> dict[str, Any]:
    question = f"Which ledger code do refunds from {city} use?"
    return {
        "id": f"agent-{agent}-episode-{i}",
        "task": question,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "LC-0000"}],
        "outcome": {"success": False, "message": f"wrong: refunds from {city} use {code}"},
        "target": code,
    }


def _roles(request: Any) -> Any:
    """The reflector states the episode's lesson as its key insight; the curator adds it (what a model would do)."""
    said = "\n".join(m.content for m in request.messages)
    name = request.schema_name or ""
    if name.startswith("Reflection"):
        city, code = re.findall(r"refunds from (\w+) use (LC-\d+)", said)[-1]
        return {**valid_reply(request), "key_insight": f"Refunds from {city} use ledger code {code}."}
    if name.startswith("CuratorOutput"):
        lesson = re.findall(r"Key insight: (.*)", said)[-1]
        return {"reasoning": "a new office", "operations": [add(lesson)]}
    return valid_reply(request)


def test_four_branches_learned_from_disjoint_episodes_merge_into_one(db_url: str, tmp_path: Path) -> None:
    store = _store(db_url)
    names = [f"p-agent-{k}" for k in range(4)]
    for k, name in enumerate(names):
        store.branch("p", name, namespace="t", author=f"agent-{k}")
        tasks = [to_task(_episode(k, i, c, code), f"e{i}") for i, (c, code) in enumerate(CITIES[k])]
        result = learn(tasks, LLM(ScriptedProvider(_roles)), store, name, run_id=f"agent-{k}", namespace="t",
                       workdir=tmp_path / name)  # fmt: skip
        assert all(r.committed for r in result.results)
    # two agents also fix one starter rule by hand, differently: a conflict; a third tags it and another rule
    store.commit(names[0], _delta(update("lc-00002", "Refunds from Bergen use ledger code LC-8800 since May.")),
                 namespace="t")  # fmt: skip
    store.commit(names[1], _delta(update("lc-00002", "Refunds from Bergen use ledger code LC-8801 since June.")),
                 namespace="t")  # fmt: skip
    store.commit(names[2], _delta(tag("lc-00002"), tag("lc-00003"), tag("lc-00003")), namespace="t")
    store.commit(names[3], _delta(tag("lc-00003", "harmful")), namespace="t")
    store.commit("p", _delta(tag("lc-00003")), namespace="t")  # the target learns meanwhile

    results = [store.merge(name, into="p", namespace="t", author="ops") for name in names]
    assert all(r.changed for r in results)
    pb = store.load("p", namespace="t")
    learned = {f"Refunds from {c} use ledger code {code}." for cities in CITIES for c, code in cities}
    assert learned <= {b.content for b in pb}  # no bullet lost
    assert sum(b.content == "Refunds from Lyon use ledger code LC-5001." for b in pb) == 1  # learned twice: one bullet
    assert [(d.branch_id, d.content) for d in results[2].duplicates] == [
        (results[2].duplicates[0].branch_id, "Refunds from Lyon use ledger code LC-5001.")]  # fmt: skip
    # the conflict is listed, with both sides, and left for a decision (nothing silently lost)
    [conflict] = [c for r in results for c in r.conflicts]
    assert (conflict.kind, conflict.resolution, conflict.target_id) == ("update/update", "left out", "lc-00002")
    assert "LC-8801" in str(conflict.branch) and "LC-8800" in str(conflict.target)
    assert results[1].pending and pb["lc-00002"].content == "Refunds from Bergen use ledger code LC-8800 since May."
    # counters add: the target's own tag, branch 2's two, branch 3's harmful one
    assert (pb["lc-00003"].helpful, pb["lc-00003"].harmful, pb["lc-00002"].helpful) == (3, 1, 1)
    # provenance: the merged bullet came from agent 1's run, by a version that names the branch
    graz = next(b for b in pb if "Graz" in b.content)
    blame = store.blame("p", graz.id, namespace="t")
    at = store.head_version(names[3], namespace="t")
    assert blame[-1].message is not None and blame[-1].message.startswith(f"merge of p-agent-3@v{at} into p")
    assert blame[-1].source is not None and blame[-1].source.run_id == "agent-3"
    assert [h.message.split(" (")[0] for h in store.history("p", namespace="t", since=3) if h.message] == [
        f"merge of {n}@v{store.head_version(n, namespace='t')} into p" for n in names]  # fmt: skip
    for name in ["p", *names]:
        assert store.verify(name, namespace="t") == store.head_version(name, namespace="t")
    head = store.head_version("p", namespace="t")
    again = [store.merge(name, into="p", namespace="t") for name in names]
    assert not any(r.changed for r in again) and store.head_version("p", namespace="t") == head  # a no-op
    assert [r.conflicts for r in again][1]  # the left-out update is still listed, not forgotten
    listed = store.branches("p", namespace="t")
    assert [(b.name, b.fork_version, b.merged, b.pending) for b in listed] == [
        (names[0], 1, 5, 0), (names[1], 1, 5, 1), (names[2], 1, 5, 0), (names[3], 1, 5, 0)]  # fmt: skip
    # and the merged history replays from its trajectory, every version hash verified
    assert export(store, "p", tmp_path / "p.jsonl", namespace="t") == head - 1
    replayed = replay(tmp_path / "p.jsonl")
    assert replayed.ok and replayed.playbook == store.load("p", namespace="t")
    store.close()


# -- a branch ---------------------------------------------------------------------------------------------------------
def test_a_branch_is_a_playbook_of_its_own_starting_at_the_fork_point(db_url: str) -> None:
    store = _store(db_url)
    store.commit("p", _delta(add("Refunds from Paris use ledger code LC-5555.")), namespace="t")  # v2
    info = store.branch("p", "p-old", from_version=1, namespace="t", author="alice")
    assert (info.parent, info.fork_version, info.head, info.author) == ("p", 1, 1, "alice")
    assert store.head("p-old", namespace="t").digest == store.version("p", 1, namespace="t").digest
    assert store.head("p-old", namespace="t").message == "branch of p@v1"
    store.commit("p-old", _delta(tag("lc-00001")), namespace="t")  # learns apart
    assert store.load("p", namespace="t")["lc-00001"].helpful == 0
    assert store.branch("p", "p-new", namespace="t").fork_version == 2  # the head by default
    assert [b.name for b in store.branches("p", namespace="t")] == ["p-new", "p-old"]
    assert store.branches("p-old", namespace="t") == []  # a branch of a branch is listed under its own parent
    store.close()


def test_the_tables_are_made_by_the_first_branch_never_by_a_read(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    assert store.branches("p", namespace="t") == []
    store.create("q", START, namespace="t")
    with pytest.raises(NotABranch):
        store.merge("q", into="p", namespace="t")  # refused: nothing made
    with store.engine.connect() as conn:
        found = conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'ace_%branch%' OR "
                                  "name LIKE 'ace_merges'")).all()  # fmt: skip
    assert found == []
    store.branch("p", "b", namespace="t")
    with store.engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).all()}
        stamped = conn.execute(text("SELECT version_num FROM ace_branch_version")).scalar()
    assert {"ace_branches", "ace_merges"} <= tables and stamped == "0001"
    store.close()


# -- conflicts, by strategy -------------------------------------------------------------------------------------------
OSLO_T = "Refunds from Oslo use ledger code LC-4472 from March."
OSLO_B = "Refunds from Oslo use ledger code LC-4473 from April."


def _forked(url: str) -> PlaybookStore:
    store = _store(url)
    store.branch("p", "b", namespace="t")
    return store


@pytest.mark.parametrize("strategy", ["report", "ours", "theirs"])
def test_update_against_update_is_listed_and_resolved_by_the_strategy(sqlite_url: str, strategy: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(update("lc-00001", OSLO_T)), namespace="t")
    store.commit("b", _delta(update("lc-00001", OSLO_B), tag("lc-00001")), namespace="t")
    r = store.merge("b", into="p", namespace="t", strategy=strategy)
    [c] = r.conflicts
    assert (c.kind, c.branch, c.target, c.version, c.index) == ("update/update", OSLO_B, OSLO_T, 2, 0)
    want = {"report": ("left out", OSLO_T), "ours": ("target kept", OSLO_T), "theirs": ("branch taken", OSLO_B)}
    assert (c.resolution, store.load("p", namespace="t")["lc-00001"].content) == want[strategy]
    assert store.load("p", namespace="t")["lc-00001"].helpful == 1  # the tag counts whatever the content
    assert r.pending == ([(2, 0)] if strategy == "report" else [])
    assert store.verify("p", namespace="t") == 3
    store.close()


def test_the_same_update_on_both_sides_is_no_conflict(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(update("lc-00001", OSLO_T)), namespace="t")
    store.commit("b", _delta(update("lc-00001", OSLO_T)), namespace="t")
    assert store.merge("b", into="p", namespace="t").conflicts == []
    store.close()


@pytest.mark.parametrize("strategy", ["report", "ours", "theirs"])
def test_update_against_remove_and_remove_against_update(sqlite_url: str, strategy: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(remove("lc-00001"), update("lc-00002", "Refunds from Bergen use code LC-8800 now.")),
                 namespace="t")  # fmt: skip
    store.commit("b", _delta(update("lc-00001", OSLO_B), remove("lc-00002")), namespace="t")
    r = store.merge("b", into="p", namespace="t", strategy=strategy)
    kinds = [(c.kind, c.target_id) for c in r.conflicts]
    assert kinds == [("update/remove", "lc-00001"), ("remove/update", "lc-00002")]
    pb = store.load("p", namespace="t")
    if strategy == "theirs":  # the branch's side: its updated bullet back (same id), the edited one gone
        assert pb["lc-00001"].content == OSLO_B and "lc-00002" not in pb
    else:  # the target's side (report: until decided)
        assert "lc-00001" not in pb and pb["lc-00002"].content == "Refunds from Bergen use code LC-8800 now."
    assert r.changed == (strategy == "theirs")
    assert store.verify("p", namespace="t") == store.head_version("p", namespace="t")
    store.close()


def test_a_merge_over_a_removed_bullet_and_a_tag_of_one_are_conflicts(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(remove("lc-00002"), remove("lc-00003")), namespace="t")
    store.commit("b", _delta({"type": "MERGE", "ids": ["lc-00001", "lc-00002"], "content": "Nordic refunds use LC-4471 "
                                                                                            "or LC-8799 by office."},
                             tag("lc-00003")), namespace="t")  # fmt: skip
    r = store.merge("b", into="p", namespace="t", strategy="theirs")
    kinds = [(c.kind, c.resolution) for c in r.conflicts]
    assert kinds == [("merge/remove", "branch taken"), ("tag/remove", "dropped")]
    pb = store.load("p", namespace="t")
    assert pb["lc-00001"].content.startswith("Nordic refunds") and len(pb) == 1  # merged what is still there
    store.close()


def test_report_leaves_conflicts_pending_and_a_later_merge_decides_them(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(update("lc-00001", OSLO_T)), namespace="t")
    store.commit("b", _delta(update("lc-00001", OSLO_B), add("Refunds from Lyon use ledger code LC-5001.")),
                 namespace="t")  # fmt: skip
    first = store.merge("b", into="p", namespace="t")
    assert first.changed and first.pending == [(2, 0)]  # the ADD went in; the update waits
    head = store.head_version("p", namespace="t")
    assert not store.merge("b", into="p", namespace="t").changed  # still in conflict: nothing written
    assert store.head_version("p", namespace="t") == head and store.branches("p", namespace="t")[0].pending == 1
    assert store.branches("p", namespace="t")[0].merged_into == head  # the version the first merge made
    decided = store.merge("b", into="p", namespace="t", strategy="theirs")
    assert decided.changed and decided.pending == [] and [c.resolution for c in decided.conflicts] == ["branch taken"]
    pb = store.load("p", namespace="t")
    assert pb["lc-00001"].content == OSLO_B and sum("Lyon" in b.content for b in pb) == 1  # the ADD not taken twice
    assert not store.merge("b", into="p", namespace="t", strategy="theirs").changed
    store.close()


# -- duplicates, counters, ids ----------------------------------------------------------------------------------------
def test_duplicate_adds_are_merged_into_the_targets_bullet_and_each_other(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.branch("p", "c", namespace="t")
    store.commit("p", _delta(add("Refunds from Paris use ledger code LC-5555.")), namespace="t")
    store.commit("b", _delta(add("refunds from Paris use ledger code LC-5555"), add("Refunds from Lyon use LC-5001.")),
                 namespace="t")  # fmt: skip
    store.commit("b", _delta(tag("lc-00004"), tag("lc-00004")), namespace="t")  # the branch's Paris bullet, tagged
    store.commit("c", _delta(add("Refunds from Lyon use LC-5001!")), namespace="t")
    r = store.merge("b", into="p", namespace="t")
    assert [(d.into, d.content) for d in r.duplicates] == [("lc-00004", "refunds from Paris use ledger code LC-5555")]
    r2 = store.merge("c", into="p", namespace="t")
    pb = store.load("p", namespace="t")
    lyon = next(b for b in pb if "Lyon" in b.content)
    assert [d.into for d in r2.duplicates] == [lyon.id] and len(pb) == 5
    paris = pb["lc-00004"]
    assert paris.content == "Refunds from Paris use ledger code LC-5555." and paris.helpful == 2  # counters add
    assert paris.merged_from == ("lc-00005",) and [s.role for s in paris.sources] == ["merge"]  # provenance kept
    # a different number is a different fact, however alike the words
    store.commit("c", _delta(add("Refunds from Lyon use LC-5002.")), namespace="t")
    assert store.merge("c", into="p", namespace="t").duplicates == []
    store.close()


def test_duplicates_by_embedding_follow_the_dedup_rule(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("b", _delta(add("Oslo refunds are booked on ledger code LC-4471."),
                             add("Oslo refunds are booked on ledger code LC-4499.")), namespace="t")  # fmt: skip

    def cosine(a: list[str], b: list[str]) -> list[list[float]]:  # everything about Oslo is alike
        return [[0.95 if ("Oslo" in x and "Oslo" in y) else 0.1 for y in b] for x in a]

    r = store.merge("b", into="p", namespace="t", similar=cosine, threshold=0.9)
    assert [(d.into, d.content) for d in r.duplicates] == [("lc-00001", "Oslo refunds are booked on ledger code "
                                                                        "LC-4471.")]  # fmt: skip
    assert any("LC-4499" in b.content for b in store.load("p", namespace="t"))  # another number: kept
    store.close()


def test_counters_add_across_the_target_and_several_branches(db_url: str) -> None:
    store = _forked(db_url)
    store.branch("p", "c", namespace="t")
    store.commit("p", _delta(tag("lc-00001"), tag("lc-00002", "harmful")), namespace="t")
    store.commit("b", _delta(tag("lc-00001"), tag("lc-00001"), tag("lc-00002", "neutral")), namespace="t")
    store.commit("c", _delta(tag("lc-00001"), tag("lc-00002", "harmful")), namespace="t")
    store.merge("b", into="p", namespace="t")
    store.merge("c", into="p", namespace="t")
    pb = store.load("p", namespace="t")
    assert (pb["lc-00001"].helpful, pb["lc-00002"].harmful, pb["lc-00002"].neutral) == (4, 2, 1)
    store.commit("b", _delta(tag("lc-00001")), namespace="t")  # a second merge adds only what is new
    store.merge("b", into="p", namespace="t")
    assert store.load("p", namespace="t")["lc-00001"].helpful == 5
    store.close()


def test_id_clashes_are_remapped_and_later_operations_follow_the_bullet(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("p", _delta(add("Refunds from Paris use ledger code LC-5555.")), namespace="t")  # lc-00004
    store.commit("b", _delta(add("Refunds from Lyon use ledger code LC-5001.")), namespace="t")  # lc-00004 too
    r = store.merge("b", into="p", namespace="t")
    [took] = r.taken
    assert (took.branch_id, took.target_id) == ("lc-00004", "lc-00005")
    pb = store.load("p", namespace="t")
    assert pb["lc-00004"].content.startswith("Refunds from Paris")
    assert pb["lc-00005"].content.startswith("Refunds from Lyon")
    store.commit("b", _delta(update("lc-00004", "Refunds from Lyon use ledger code LC-5009 now."), tag("lc-00004")),
                 namespace="t")  # fmt: skip
    store.merge("b", into="p", namespace="t")
    pb = store.load("p", namespace="t")
    assert pb["lc-00004"].content.startswith("Refunds from Paris") and pb["lc-00004"].helpful == 0
    assert (pb["lc-00005"].content, pb["lc-00005"].helpful) == ("Refunds from Lyon use ledger code LC-5009 now.", 1)
    store.close()


# -- rollbacks --------------------------------------------------------------------------------------------------------
def test_merge_after_the_target_was_rolled_back(db_url: str) -> None:
    store = _forked(db_url)
    store.commit("p", _delta(update("lc-00001", OSLO_T), remove("lc-00003")), namespace="t")
    store.rollback("p", 1, namespace="t")  # v3: back to the fork's state
    store.commit("b", _delta(update("lc-00001", OSLO_B), tag("lc-00003")), namespace="t")
    r = store.merge("b", into="p", namespace="t")
    assert r.conflicts == [] and r.version == 4  # what was rolled back is no change of the target's
    pb = store.load("p", namespace="t")
    assert pb["lc-00001"].content == OSLO_B and pb["lc-00003"].helpful == 1
    assert store.verify("p", namespace="t") == 4
    store.close()


def test_a_rollback_on_the_branch_merges_as_the_change_it_made(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("b", _delta(add("Refunds from Lyon use ledger code LC-5001."), tag("lc-00001")), namespace="t")
    store.commit("b", _delta(remove("lc-00002"), tag("lc-00001")), namespace="t")  # v3
    store.rollback("b", 2, namespace="t")  # v4: lc-00002 back, one tag undone
    r = store.merge("b", into="p", namespace="t")
    pb = store.load("p", namespace="t")
    assert "lc-00002" in pb and any("Lyon" in b.content for b in pb)
    assert [(c.kind, c.resolution) for c in r.conflicts] == [("rollback", "dropped")] and r.pending == []
    assert "helpful went from 2 to 1" in str(r.conflicts[0].branch) and pb["lc-00001"].helpful == 2
    assert store.verify("p", namespace="t") == store.head_version("p", namespace="t")
    store.close()


# -- hostile input -------------------------------------------------------------------------------------------------
def _state(store: PlaybookStore) -> Any:
    with store.engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).all()]
        return {tb: conn.execute(text(f'SELECT COUNT(*) FROM "{tb}"')).scalar() for tb in sorted(tables)}


def test_hostile_inputs_give_clear_errors_and_change_nothing(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.create("q", START, namespace="t")
    store.branch("q", "qb", namespace="t")
    store.commit("b", _delta(tag("lc-00001")), namespace="t")
    store.commit("qb", _delta(tag("lc-00001")), namespace="t")
    before = _state(store)
    with pytest.raises(PlaybookNotFound, match="no playbook 'nope'"):
        store.merge("nope", into="p", namespace="t")
    with pytest.raises(PlaybookNotFound):
        store.merge("b", into="nope", namespace="t")
    with pytest.raises(BranchRefused, match="cannot be merged into itself"):
        store.merge("p", into="p", namespace="t")
    with pytest.raises(NotABranch, match="'q' in namespace 't' is not a branch"):
        store.merge("q", into="p", namespace="t")
    with pytest.raises(NotABranch, match="'qb' is a branch of 'q', not of 'p': merge it into 'q'"):
        store.merge("qb", into="p", namespace="t")
    with pytest.raises(NotABranch):
        store.merge("p", into="b", namespace="t")  # the parent is not a branch of its branch
    with pytest.raises(PlaybookNotFound):
        store.merge("b", into="p", namespace="other")  # another namespace never sees it
    with pytest.raises(ConfigError, match="report, ours, theirs"):
        store.merge("b", into="p", namespace="t", strategy="mine")
    for hostile in ("../p", "a/b", "..", "x\x00y", "", " p", "x" * 200):
        with pytest.raises(InvalidName):
            store.merge(hostile, into="p", namespace="t")
        with pytest.raises(InvalidName):
            store.branch("p", hostile, namespace="t")
        with pytest.raises(InvalidName):
            store.merge("b", into=hostile, namespace="t")
    with pytest.raises(PlaybookExists):
        store.branch("p", "q", namespace="t")  # a playbook has that name
    with pytest.raises(PlaybookExists):
        store.branch("p", "b", namespace="t")
    with pytest.raises(BranchRefused, match="a name of its own"):
        store.branch("p", "p", namespace="t")
    with pytest.raises(VersionNotFound):
        store.branch("p", "b2", from_version=9, namespace="t")
    with pytest.raises(PlaybookNotFound):
        store.branch("nope", "b2", namespace="t")
    assert _state(store) == before
    store.close()


def test_a_merge_made_by_another_process_is_seen(sqlite_url: str) -> None:
    store = _forked(sqlite_url)
    store.commit("b", _delta(add("Refunds from Lyon use ledger code LC-5001."), tag("lc-00001")), namespace="t")
    assert len(store.load("p", namespace="t")) == 3  # this store holds v1
    code = ("import sys; from ace.store import PlaybookStore; "
            "print(PlaybookStore(sys.argv[1]).merge('b', into='p', namespace='t').version)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, sqlite_url], check=True, cwd=ROOT, timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    assert done.stdout.strip() == "2"
    again = store.merge("b", into="p", namespace="t")  # this store sees the record: nothing new
    assert not again.changed and again.head == 2
    pb = store.load("p", namespace="t")
    assert len(pb) == 4 and pb["lc-00001"].helpful == 1
    other = PlaybookStore(sqlite_url)  # and a second store object on its own engine
    assert not other.merge("b", into="p", namespace="t").changed
    other.close()
    store.close()


# -- the CLI --------------------------------------------------------------------------------------------------------
def test_the_cli_branches_lists_and_merges(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    store.commit("p", _delta(update("lc-00001", OSLO_T)), namespace="t")  # v2
    store.close()
    runner = CliRunner()

    def ace(*args: str, code: int = 0) -> str:
        r = runner.invoke(cli, [*args, "--db", sqlite_url, "-n", "t"])
        assert r.exit_code == code, r.output
        return r.stdout

    made = json.loads(ace("playbook", "branch", "p", "dev", "--from", "1", "--json"))
    assert (made["parent"], made["fork_version"], made["branch"]) == ("p", 1, "dev")
    assert "branched from p@v2" in ace("playbook", "branch", "p", "dev2", "--from", "serving")
    Path(sqlite_url.removeprefix("sqlite:///")).with_name("d.json").write_text(json.dumps(
        {"operations": [update("lc-00001", OSLO_B), add("Refunds from Lyon use ledger code LC-5001.")]}))  # fmt: skip
    ace("playbook", "apply", "dev", str(Path(sqlite_url.removeprefix("sqlite:///")).with_name("d.json")))
    merged = json.loads(ace("playbook", "merge", "dev", "--into", "p", "--json"))
    assert merged["version"] == 3 and [c["kind"] for c in merged["conflicts"]] == ["update/update"]
    assert merged["pending"] == [[2, 0]] and merged["taken"][0]["op"] == "ADD"
    decided = json.loads(ace("playbook", "merge", "dev", "--into", "p", "--strategy", "ours", "--json"))
    assert decided["version"] is None and [c["resolution"] for c in decided["conflicts"]] == ["target kept"]
    assert "nothing new" in ace("playbook", "merge", "dev", "--into", "p")
    ace("playbook", "apply", "dev2", str(Path(sqlite_url.removeprefix("sqlite:///")).with_name("d.json")))
    shown = ace("playbook", "merge", "dev2", "--into", "p")  # branched after p's update: none; Lyon: a duplicate
    assert "p v4: merge of dev2@v2 into p (report): 2 operations, 1 duplicate merged\n" in shown
    assert "remapped: lc-00004 of dev2 is lc-00005 on p" in shown
    assert "duplicate: lc-00004 of dev2 merged into lc-00004: Refunds from Lyon" in shown
    listed = json.loads(ace("playbook", "branches", "p", "--json"))
    # dev's last merge (ours) made no version: merged_into is the one its first merge made
    assert [(b["branch"], b["fork_version"], b["merged"], b["merged_into"], b["pending"]) for b in listed] == [
        ("dev", 1, 2, 3, 0), ("dev2", 2, 2, 4, 0)]  # fmt: skip
    assert "dev2" in ace("playbook", "branches", "p")
    history = json.loads(ace("playbook", "history", "p", "--json"))
    assert history[-2]["message"].startswith("merge of dev@v2 into p (report)")
    ace("playbook", "verify", "p")
    ace("playbook", "merge", "dev", "--into", "p", "--strategy", "mine", code=2)  # usage errors: 2
    ace("playbook", "merge", "dev", code=2)  # --into is required
    ace("playbook", "merge", "p", "--into", "dev", code=1)  # refusals: 1
    ace("playbook", "merge", "dev", "--into", "dev", code=1)
    ace("playbook", "merge", "../dev", "--into", "p", code=1)
    ace("playbook", "branch", "p", "dev", code=1)
    ace("playbook", "branch", "p", "x", "--from", "nope", code=1)


# -- properties -----------------------------------------------------------------------------------------------------
BASE = parse_ace("## RULES\n" + "".join(f"[rul-{i:05d}] Refunds for office {i} use the blue ledger.\n"
                                       for i in range(1, 7)))  # fmt: skip


@st.composite
def branch_histories(draw: st.DrawFn) -> list[list[Delta]]:
    """2-4 branches, each a few deltas that conflict with no other branch: a branch edits (UPDATE, REMOVE, MERGE)
    only the base bullets it owns and those it added, tags any it can see that no other branch owns, adds lessons of
    its own."""
    k = draw(st.integers(2, 4))
    owner = {b.id: draw(st.integers(-1, k - 1)) for b in BASE}
    histories = []
    for j in range(k):
        state, deltas, n = BASE, [], 0
        for _ in range(draw(st.integers(0, 4))):
            ops: list[dict[str, Any]] = []
            for _ in range(draw(st.integers(1, 3))):
                mine = [b.id for b in state if owner.get(b.id, j) == j]
                seen = [b.id for b in state if owner.get(b.id, j) in (j, -1)]
                kind = draw(st.sampled_from(["ADD", "TAG", "UPDATE", "REMOVE", "MERGE"]))
                n += 1
                words = f"office {j} lesson {n}"
                if kind == "ADD" or not seen:
                    op: dict[str, Any] = add(f"Refunds for {words} use the green ledger.", "RULES")
                elif kind == "TAG" or not mine:
                    op = tag(draw(st.sampled_from(seen)), draw(st.sampled_from(["helpful", "harmful", "neutral"])))
                elif kind == "UPDATE":
                    op = update(draw(st.sampled_from(mine)), f"Refunds for {words} use the red ledger.")
                elif kind == "REMOVE":
                    op = remove(draw(st.sampled_from(mine)))
                elif len(mine) >= 2:
                    ids = draw(st.lists(st.sampled_from(mine), min_size=2, max_size=3, unique=True))
                    op = {"type": "MERGE", "ids": ids, "content": f"Refunds for {words} use one ledger."}
                else:
                    continue
                try:
                    applied = apply(state, Delta.parse({"operations": [*ops, op]}))
                except Exception:  # an op on a bullet an earlier op of this delta removed: skip it
                    continue
                ops.append(op)
            if ops:
                applied = apply(state, Delta.parse({"operations": ops}))
                state = applied.playbook
                deltas.append(applied.delta)
        histories.append(deltas)
    return histories


def _sequential(histories: list[list[Delta]]) -> Playbook:
    """The reference: every branch's deltas applied one after the other on the base, each ADD given a fresh id and
    the branch's later operations following it (no conflicts, no duplicates: there are none)."""
    state = BASE
    for deltas in histories:
        ids: dict[str, str] = {}
        for delta in deltas:
            for op in delta.operations:
                if op.type == "ADD":
                    done = apply(state, Delta(operations=[op.model_copy(update={"id": None})]))
                    ids[str(op.id)] = str(done.delta.operations[0].id)
                elif op.type == "MERGE":
                    done = apply(state, Delta(operations=[op.model_copy(update={
                        "ids": [ids.get(i, i) for i in op.ids], "id": ids.get(str(op.id), op.id)})]))  # fmt: skip
                else:
                    done = apply(state, Delta(operations=[op.model_copy(update={"id": ids.get(op.id, op.id)})]))
                state = done.playbook
    return state


def _merged(histories: list[list[Delta]], order: tuple[int, ...]) -> Playbook:
    target = BASE
    for j in order:
        ops = [BranchOp(v + 2, i, op) for v, d in enumerate(histories[j]) for i, op in enumerate(d.operations)]
        plan = plan_merge(target, BASE, ops)
        assert plan.conflicts == [] and plan.pending == [] and plan.duplicates == []
        target = apply(target, plan.delta).playbook
        assert target == plan.playbook
    return target


def _facts(pb: Playbook) -> list[tuple[str, str, int, int, int]]:
    return sorted((b.section, b.content, b.helpful, b.harmful, b.neutral) for b in pb)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branch_histories(), st.data())
def test_merging_non_conflicting_branches_in_any_order_equals_applying_them_in_sequence(
    histories: list[list[Delta]], data: st.DataObject
) -> None:
    expected = _facts(_sequential(histories))
    order = data.draw(st.sampled_from(list(permutations(range(len(histories))))))
    assert _facts(_merged(histories, order)) == expected
    assert _facts(_merged(histories, tuple(range(len(histories))))) == expected
