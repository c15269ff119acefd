"""The versioned store on a real SQLite file and a real PostgreSQL database (``db_url`` runs each test on both)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

import ace.store.log
from ace.playbook import Delta, DeltaError, Playbook, render
from ace.playbook.formats import parse_ace
from ace.store import (
    PlaybookExists,
    PlaybookNotFound,
    PlaybookStore,
    StaleVersionError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.store import schema as t

START = "## RULES\n[r-00001] helpful=0 harmful=0 :: Read the docs.\n[r-00002] helpful=0 harmful=0 :: Check units.\n"


def tag(bullet_id: str, kind: str = "helpful", **source: object) -> Delta:
    return Delta.parse({"operations": [{"type": "TAG", "id": bullet_id, "tag": kind}], "source": source or None})


@pytest.fixture
def store(db_url: str) -> Iterator[PlaybookStore]:
    s = PlaybookStore(db_url, snapshot_every=3)
    s.create("pb", parse_ace(START))
    yield s
    s.close()


def test_versions_start_at_one_and_each_commit_adds_one(store: PlaybookStore) -> None:
    assert store.head("pb").version == 1
    info = store.commit("pb", tag("r-00001"), expected_version=1)
    assert (info.version, info.parent, info.kind, info.n_bullets) == (2, 1, "delta", 2)
    assert store.load("pb")["r-00001"].helpful == 1
    assert store.load("pb", 1)["r-00001"].helpful == 0
    assert [h.version for h in store.history("pb")] == [1, 2]


def test_stale_writer_gets_a_specific_error_and_writes_nothing(store: PlaybookStore) -> None:
    store.commit("pb", tag("r-00001"), expected_version=1)
    with pytest.raises(StaleVersionError) as exc:
        store.commit("pb", tag("r-00002"), expected_version=1)
    assert (exc.value.expected, exc.value.actual) == (1, 2)
    assert store.head("pb").version == 2 and store.load("pb")["r-00002"].helpful == 0
    # rebase: apply on whatever the head is
    assert store.commit("pb", tag("r-00002"), expected_version=None).version == 3


def test_a_rejected_delta_writes_nothing(store: PlaybookStore) -> None:
    bad = Delta.parse(
        {
            "operations": [
                {"type": "TAG", "id": "r-00001", "tag": "helpful"},
                {"type": "UPDATE", "id": "r-09999", "content": "x"},
            ]
        }
    )
    with pytest.raises(DeltaError, match=r"operation 1 \(UPDATE\): unknown bullet id"):
        store.commit("pb", bad)
    assert store.head("pb").version == 1
    assert store.load("pb")["r-00001"].helpful == 0
    assert len(store.history("pb")) == 1


def test_every_version_rebuilds_from_snapshots_and_deltas(store: PlaybookStore, db_url: str) -> None:
    expected = [store.load("pb").digest()]
    for i in range(10):
        d = Delta.parse({"operations": [{"type": "ADD", "section": "RULES", "content": f"Learned rule number {i}."}]})
        expected.append(store.commit("pb", d).digest)
    store.flush()  # periodic snapshots are written after their commit, by a background thread
    fresh = PlaybookStore(db_url, cache=False)
    assert [fresh.load("pb", v).digest() for v in range(1, 12)] == expected
    assert fresh.verify("pb") == 11
    with fresh.engine.connect() as conn:  # import + every third version are snapshots, the rest deltas
        snaps = conn.execute(select(t.snapshots.c.version).order_by(t.snapshots.c.version)).scalars().all()
    assert snaps == [1, 3, 6, 9]
    fresh.close()


def test_diff_history_blame_and_provenance(store: PlaybookStore) -> None:
    store.commit("pb", tag("r-00001", task_id="task-7", step=7, run_id="run-a", role="reflector"), author="ann")
    add = Delta.parse(
        {
            "operations": [
                {"type": "ADD", "section": "RULES", "content": "State the unit."},
                {"type": "UPDATE", "id": "r-00002", "content": "Check units twice."},
                {"type": "REMOVE", "id": "r-00001"},
            ],
            "source": {"task_id": "task-8", "step": 8},
        }
    )
    store.commit("pb", add, message="lesson from task-8")
    d = store.diff("pb", 1, 3)
    assert [b.id for b in d.added] == ["r-00003"]
    assert [b.id for b in d.removed] == ["r-00001"]
    assert [(c.after.id, c.fields) for c in d.changed] == [("r-00002", ("content",))]
    assert store.diff("pb", 3, 3).empty

    blame = store.blame("pb", "r-00001")
    assert [(e.version, e.op) for e in blame] == [(1, "IMPORT"), (2, "TAG"), (3, "REMOVE")]
    source = blame[1].source
    assert blame[1].author == "ann" and source is not None
    assert source.task_id == "task-7" and source.role == "reflector"
    assert [(e.version, e.op, e.message) for e in store.blame("pb", "r-00003")] == [(3, "ADD", "lesson from task-8")]
    b = store.load("pb")["r-00003"]
    assert (b.created_step, b.sources[0].task_id) == (8, "task-8")


def test_rollback_is_a_new_version_and_keeps_history(store: PlaybookStore) -> None:
    v1 = store.head("pb").digest
    store.commit("pb", tag("r-00001"))
    store.commit("pb", Delta.parse({"operations": [{"type": "REMOVE", "id": "r-00002"}]}))
    info = store.rollback("pb", 1)
    assert (info.version, info.kind, info.digest) == (4, "rollback", v1)
    assert [h.kind for h in store.history("pb")] == ["import", "delta", "delta", "rollback"]
    assert store.load("pb", 3).get("r-00002") is None  # the rolled-back versions stay readable
    assert [e.op for e in store.blame("pb", "r-00002")] == ["IMPORT", "REMOVE", "ROLLBACK"]
    assert store.commit("pb", tag("r-00002")).version == 5  # and history continues from the restored state
    with pytest.raises(StaleVersionError):
        store.rollback("pb", 2, expected_version=4)


def test_errors_for_missing_things(store: PlaybookStore) -> None:
    with pytest.raises(PlaybookNotFound, match="no playbook 'nope' in namespace 'default'"):
        store.load("nope")
    with pytest.raises(VersionNotFound, match=r"has no version 9 \(versions run from 1 to 1\)"):
        store.load("pb", 9)
    with pytest.raises(VersionNotFound):
        store.diff("pb", 0, 1)
    with pytest.raises(PlaybookExists):
        store.create("pb")
    assert store.blame("pb", "unknown-1") == []


def test_namespaces_are_isolated(store: PlaybookStore) -> None:
    store.create("pb", Playbook.empty(["OTHER"]), namespace="tenant-b")
    store.commit("pb", tag("r-00001"), namespace="default")
    assert len(store.load("pb", namespace="tenant-b")) == 0
    with pytest.raises(DeltaError, match="unknown bullet id 'r-00001'"):
        store.commit("pb", tag("r-00001"), namespace="tenant-b")
    assert store.head("pb", namespace="tenant-b").version == 1
    assert {(p.namespace, p.head) for p in store.list()} == {("default", 2), ("tenant-b", 1)}
    assert [p.name for p in store.list("tenant-b")] == ["pb"]


def test_two_store_objects_see_each_others_commits(db_url: str) -> None:
    """Each store object caches the head; a second writer's commits are caught up, not missed."""
    a, b = PlaybookStore(db_url), PlaybookStore(db_url)
    a.create("pb", parse_ace(START))
    a.load("pb")
    b.commit("pb", tag("r-00001"))
    b.commit("pb", tag("r-00001"))
    a.commit("pb", tag("r-00001"))
    assert a.load("pb")["r-00001"].helpful == 3 == b.load("pb")["r-00001"].helpful
    assert a.verify("pb") == 4
    a.close()
    b.close()


def test_verify_detects_a_tampered_log(store: PlaybookStore) -> None:
    store.commit("pb", tag("r-00001"))
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE ace_versions SET delta = :d WHERE version = 2"),
            {"d": tag("r-00002").to_json()},
        )
    fresh = PlaybookStore(store.url, cache=False)
    with pytest.raises(StoreIntegrityError, match="version 2 rebuilds to digest"):
        fresh.verify("pb")
    fresh.close()


def test_default_location_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ace.store import default_url

    monkeypatch.delenv("ACE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path / 'ace' / 'ace.db'}"
    monkeypatch.setenv("ACE_DB", "sqlite:///elsewhere.db")
    assert default_url() == "sqlite:///elsewhere.db"
    monkeypatch.delenv("ACE_DB")
    s = PlaybookStore()
    s.create("x")
    assert (tmp_path / "ace" / "ace.db").is_file()
    s.close()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    s = PlaybookStore(sqlite_url)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy_timeout is not None and busy_timeout >= 1000
    s.close()


def test_large_playbook_render_is_stable_through_the_store(db_url: str) -> None:
    s = PlaybookStore(db_url)
    ops = [
        {"type": "ADD", "section": f"Section {i % 5}", "content": f"Learned rule number {i} " + "x" * (i % 40)}
        for i in range(500)
    ]
    pb = Playbook.empty()
    s.create("big", pb)
    s.commit("big", Delta.parse({"operations": ops}))
    assert render(PlaybookStore(db_url, cache=False).load("big")) == render(s.load("big"))
    s.close()


def test_a_commit_repeated_with_its_key_is_applied_once(store: PlaybookStore) -> None:
    first = store.commit("pb", tag("r-00001"), key="run-1:step-1")
    again = store.commit("pb", tag("r-00001"), key="run-1:step-1", expected_version=1)  # a retry after a crash
    assert (again.version, again.digest) == (first.version, first.digest) == (2, store.head("pb").digest)
    assert store.load("pb")["r-00001"].helpful == 1
    assert store.commit("pb", tag("r-00001"), key="run-1:step-2").version == 3
    other = PlaybookStore(store.url)
    other.create("pb2", parse_ace(START))
    assert other.commit("pb2", tag("r-00001"), key="run-1:step-1").version == 2  # keys are per playbook
    other.close()


def test_ensure_creates_once_and_then_returns_the_head(store: PlaybookStore) -> None:
    seed = parse_ace("## s\n[s-00001] helpful=0 harmful=0 :: Keep it.\n")
    first = store.ensure("e", seed, author="a")
    assert first.version == 1 and len(store.load("e")) == 1
    store.commit("e", tag("s-00001"))
    again = store.ensure("e", Playbook.empty())  # exists: nothing replaced, the head is returned
    assert again.version == 2 and len(store.load("e")) == 1
    with pytest.raises(PlaybookExists):
        store.create("e")


def test_a_store_behind_another_writer_catches_up_from_its_cache_past_a_snapshot(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer moved the head past a snapshot: a few deltas on the cached state beat reading the snapshot
    (8 writers on PostgreSQL at 10k bullets: 28 -> 144 commits/s, benchmarks/perf/bench_writers.py)."""
    pb = parse_ace("## RULES\n" + "".join(f"[r-{i:05d}] Rule number {i} of the house.\n" for i in range(20)))
    a, b = PlaybookStore(db_url, snapshot_every=5), PlaybookStore(db_url, snapshot_every=5)
    a.create("p", pb)
    a.load("p")  # a caches v1
    tag = Delta.parse({"operations": [{"type": "TAG", "id": "r-00003", "tag": "helpful"}]})
    for _ in range(11):
        b.commit("p", tag)  # v2..v12, snapshots at v5 and v10

    def no_snapshot(*_: object) -> None:
        raise AssertionError("read a snapshot instead of catching up from the cache")

    with monkeypatch.context() as m:
        m.setattr(ace.store.log, "read_snapshot", no_snapshot)
        info = a.commit("p", tag)
    assert info.version == 13 and a.load("p")["r-00003"].helpful == 12
    assert b.load("p", 13).digest() == a.load("p").digest() and b.verify("p") == 13


def test_no_commit_writes_a_periodic_snapshot_itself(db_url: str) -> None:
    """Every snapshot_every-th commit schedules its snapshot after the commit: the commit's own statements hold only
    the version (no commit pays for serializing the playbook); flush() waits for the snapshot. With
    background_snapshots=False the commit writes it in its transaction, as before. A store that does not hold the
    head commits from the materialized head's rows and snapshots nothing (a snapshot is O(n))."""
    store = PlaybookStore(db_url, snapshot_every=2)
    store.create("p", parse_ace(START))
    statements: list[str] = []
    from sqlalchemy import event

    @event.listens_for(store.engine, "before_cursor_execute")
    def _seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if threading.current_thread() is threading.main_thread():
            statements.append(statement)

    store.commit("p", tag("r-00001"))  # v2: a snapshot is due
    assert not any("ace_snapshots" in s and s.lstrip().upper().startswith("INSERT") for s in statements)
    store.flush()
    with store.engine.connect() as conn:
        assert conn.execute(select(t.snapshots.c.version)).scalars().all() == [1, 2]
    inline = PlaybookStore(db_url, snapshot_every=2, background_snapshots=False)
    inline.load("p")  # holds the head
    inline.commit("p", tag("r-00001"))
    inline.commit("p", tag("r-00001"))  # v4, snapshotted in its own transaction
    with inline.engine.connect() as conn:
        assert conn.execute(select(t.snapshots.c.version)).scalars().all() == [1, 2, 4]
    cold = PlaybookStore(db_url, snapshot_every=2, background_snapshots=False)
    cold.commit("p", tag("r-00001"))
    cold.commit("p", tag("r-00001"))  # v6 from the rows: no snapshot
    with inline.engine.connect() as conn:
        assert conn.execute(select(t.snapshots.c.version)).scalars().all() == [1, 2, 4]
    assert PlaybookStore(db_url, cache=False).verify("p") == 6
    cold.close()
    store.close()
    inline.close()


def test_in_memory_sqlite_and_forked_children_snapshot_safely(tmp_path: Path) -> None:
    import multiprocessing as mp

    memory = PlaybookStore("sqlite://", snapshot_every=2)
    assert not memory.background_snapshots  # one shared connection: snapshots stay in the commit's transaction
    memory.create("p", parse_ace(START))
    memory.commit("p", tag("r-00001"))
    with memory.engine.connect() as conn:
        assert conn.execute(select(t.snapshots.c.version)).scalars().all() == [1, 2]

    url = f"sqlite:///{tmp_path / 'fork.db'}"
    parent = PlaybookStore(url, snapshot_every=2)
    parent.create("p", parse_ace(START))
    parent.commit("p", tag("r-00001"))  # a snapshot scheduled in the parent's thread
    ctx = mp.get_context("fork")
    child = ctx.Process(target=_commit_and_close, args=(parent,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0  # the child neither hung on the parent's futures nor lost its own snapshot
    parent.close()
    fresh = PlaybookStore(url, cache=False)
    assert fresh.verify("p") == 4
    with fresh.engine.connect() as conn:
        assert conn.execute(select(t.snapshots.c.version)).scalars().all() == [1, 2, 4]


def _commit_and_close(store: PlaybookStore) -> None:
    store.engine.dispose(close=False)  # a forked child opens its own connections
    store.commit("p", tag("r-00001"))
    store.commit("p", tag("r-00001"))  # v4: a snapshot, written by the child's own thread
    store.close()


# -- the materialized head ------------------------------------------------------------------------------------------
def _random_op(rng: random.Random, pb: Playbook, k: int) -> dict[str, object]:
    ids = [b.id for b in pb]
    kind = rng.choice(["ADD"] * 4 + ["REMOVE", "REMOVE", "TAG", "UPDATE", "MERGE"] if len(ids) > 3 else ["ADD"])
    if kind == "ADD":
        section = rng.choice(["RULES", "RULES", "CHECKS", f"Topic number {k % 7}"])
        return {"type": "ADD", "section": section, "content": f"Rule number {k} says to check the units twice."}
    if kind == "MERGE":
        return {"type": "MERGE", "ids": rng.sample(ids, 2), "content": f"Merged rule {k} keeps both of their points."}
    if kind == "UPDATE":
        return {"type": "UPDATE", "id": rng.choice(ids), "content": f"Rule {k} rewritten to be clearer than before."}
    if kind == "TAG":
        return {"type": "TAG", "id": rng.choice(ids), "tag": "harmful"}
    return {"type": "REMOVE", "id": rng.choice(ids)}


def test_commits_from_the_materialized_head_match_the_whole_playbook(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that holds nothing commits from the head's rows (only those its delta names, plus the chunks of the
    order it changes): with chunks of 3 ids, 300 random commits (sections filling and emptying chunks, merges across
    sections, new sections, deltas that fail) give every version the digest of the same deltas applied in memory,
    and the rows read back as the head."""
    from ace.playbook import apply

    monkeypatch.setattr(t, "HEAD_CHUNK", 3)
    rng = random.Random(7)
    writer = PlaybookStore(db_url)
    expected = parse_ace(START)
    writer.create("pb", expected)
    for k in range(300):
        ops = [_random_op(rng, expected, k) for _ in range(rng.choice([1, 1, 2, 3]))]
        delta = Delta.parse({"operations": ops, "source": {"step": k}})
        cold = PlaybookStore(db_url, engine=writer.engine, cache=False)
        try:
            applied = apply(expected, delta)
        except DeltaError as e:
            with pytest.raises(DeltaError) as refused:
                cold.commit("pb", delta)
            assert str(refused.value) == str(e)
            continue
        info = cold.commit("pb", delta)
        expected = applied.playbook
        assert info.digest == expected.digest() and info.n_bullets == len(expected)
        assert info.delta is not None and info.delta.to_json() == applied.delta.to_json()
        if k % 50 == 0:
            assert PlaybookStore(db_url, engine=writer.engine).load("pb") == expected
    head = PlaybookStore(db_url, engine=writer.engine).load("pb")
    assert render(head) == render(expected) and head.digest() == expected.digest()
    with writer.engine.connect() as conn:
        chunks = conn.execute(select(t.head_order.c.ids)).scalars().all()
    assert all(c.count("\x1f") < 3 for c in chunks) and sum(1 for c in chunks if not c) <= len(expected.sections)
    assert PlaybookStore(db_url, cache=False).verify("pb") == writer.head_version("pb")
    writer.close()


def test_a_head_held_in_memory_and_the_rows_agree_after_cold_commits_and_rollbacks(db_url: str) -> None:
    """Warm and cold commits interleave on one playbook: the warm store applies to the head it holds when that is
    the head, else from the rows; a rollback rewrites the rows; a database from before revision 0005 (no rows)
    and an emptied head row are rebuilt from the log by the next commit."""
    warm = PlaybookStore(db_url)
    warm.create("pb", parse_ace(START))
    cold = PlaybookStore(db_url, engine=warm.engine, cache=False)
    warm.commit("pb", tag("r-00001"))
    cold.commit("pb", tag("r-00002"))
    warm.commit("pb", tag("r-00001"))  # behind the head: from the rows
    warm.load("pb")
    warm.commit("pb", tag("r-00001"))  # holds the head
    assert warm.rollback("pb", 2).version == 6
    assert cold.load("pb") == warm.load("pb", 2)
    cold.commit("pb", tag("r-00002"))
    with warm.engine.begin() as conn:  # as a database upgraded from revision 0004 holds it: no rows yet
        for table in (t.head_bullets, t.head_order, t.head_sections, t.heads):
            conn.execute(table.delete())
    assert cold.load("pb")["r-00002"].helpful == 1  # read from the log
    assert cold.commit("pb", tag("r-00002")).version == 8  # rebuilt the rows, then committed on them
    with warm.engine.connect() as conn:
        assert conn.execute(select(t.heads.c.version)).scalar_one() == 8
    fresh = PlaybookStore(db_url, cache=False)
    assert fresh.load("pb")["r-00002"].helpful == 2 and fresh.verify("pb") == 8
    warm.close()


def test_verify_since_a_version_starts_at_its_snapshot_and_repairs_the_materialized_head(db_url: str) -> None:
    """verify(since=V) checks only the versions from the nearest snapshot at or below V (an edited delta before it
    goes unnoticed there, and is found by a whole verify); a head whose rows were edited is rewritten from the
    verified log."""
    store = PlaybookStore(db_url, snapshot_every=5, background_snapshots=False)
    store.create("pb", parse_ace(START))
    store.load("pb")
    for _ in range(11):
        store.commit("pb", tag("r-00001"))  # v2..v12, snapshots at 5 and 10
    assert store.verify("pb") == 12 and store.verify("pb", since=11) == 3  # 10, 11, 12
    with store.engine.begin() as conn:
        conn.execute(t.versions.update().where(t.versions.c.version == 3).values(delta=tag("r-00002").to_json()))
        conn.execute(t.head_bullets.update().values(data=t.head_bullets.c.data + " "))  # still the same JSON
        conn.execute(t.head_bullets.update().where(t.head_bullets.c.bullet_id == "r-00002").values(digest="0" * 64))
    fresh = PlaybookStore(db_url, cache=False)
    assert fresh.verify("pb", since=7) == 8
    with pytest.raises(StoreIntegrityError, match="version 3"):
        fresh.verify("pb")
    with store.engine.connect() as conn:  # the rows were rewritten: the digest of each matches again
        digests = dict(conn.execute(select(t.head_bullets.c.bullet_id, t.head_bullets.c.digest)).all())
    head = PlaybookStore(db_url, cache=False).load("pb")
    assert digests == {b.id: b.digest().hex() for b in head} and head["r-00001"].helpful == 11
    store.close()


def test_diff_between_near_versions_replays_the_deltas_between_and_agrees_with_a_full_comparison(
    db_url: str,
) -> None:
    """diff(v1, v2) for versions up to DIFF_REPLAY apart builds the earlier one and replays the deltas between,
    comparing only the bullets they touched; across a rollback (no delta to replay) it builds both. Either way, in
    either direction, it says what comparing the two whole versions says."""
    from ace.playbook.diff import diff as full_diff

    rng = random.Random(3)
    store = PlaybookStore(db_url, snapshot_every=7)
    expected = parse_ace(START)
    store.create("pb", expected)
    for k in range(40):
        delta = Delta.parse({"operations": [_random_op(rng, expected, k)], "source": {"step": k}})
        try:
            store.commit("pb", delta)
            expected = store.load("pb")
        except DeltaError:
            continue
        if k == 25:
            store.rollback("pb", 5)
            expected = store.load("pb")
    head = store.head_version("pb")
    reader = PlaybookStore(db_url, cache=False)
    for v1, v2 in [(1, head), (3, 9), (head, 2), (10, 11), (20, head), (head - 1, head), (6, 6)]:
        got = reader.diff("pb", v1, v2)
        want = full_diff(reader.load("pb", v1), reader.load("pb", v2))
        assert [b.id for b in got.added] == [b.id for b in want.added], (v1, v2)
        assert [b.id for b in got.removed] == [b.id for b in want.removed], (v1, v2)
        assert [(c.after.id, c.fields) for c in got.changed] == [(c.after.id, c.fields) for c in want.changed]
    store.close()


def test_a_commit_landing_while_the_head_is_read_is_not_taken_for_damage(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading the head takes several statements; on PostgreSQL (READ COMMITTED) a commit may land between them.
    The reader then gets the version it asked for from the log, with no warning, and its next commit does not
    rebuild the head (only rows that really disagree with their recorded digest are damage)."""
    from sqlalchemy import event

    writer = PlaybookStore(db_url)
    writer.create("pb", parse_ace(START))
    reader = PlaybookStore(db_url, cache=False)
    fired: list[str] = []

    @event.listens_for(reader.engine, "before_cursor_execute")
    def _commit_meanwhile(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if "FROM ace_head_bullets" in statement and not fired:
            fired.append(statement)
            writer.commit("pb", tag("r-00001"))  # another process's commit, between the reader's statements

    with caplog.at_level("WARNING", logger="ace.store"):
        version, pb = reader.load_versioned("pb")
    assert fired and version == 1 and pb["r-00001"].helpful == 0  # the version it asked for
    assert not [r for r in caplog.records if "materialized head" in r.getMessage()]
    assert not reader._damaged
    assert PlaybookStore(db_url, cache=False).load("pb")["r-00001"].helpful == 1
    writer.close()


@pytest.mark.parametrize("bug", [AttributeError, TypeError, KeyError, ValueError])
def test_a_bug_while_replaying_the_log_is_not_reported_as_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: type[Exception]
) -> None:
    """Only a stored row that does not decode or apply is corruption: an exception of the code that replays the log
    (here ``apply`` itself failing) propagates as itself from load, diff and verify, while a row edited by hand is
    still reported as :class:`StoreIntegrityError` (a delta that is not JSON, one that no longer applies, a snapshot
    that does not decode)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with PlaybookStore(url, cache=False) as store:
        store.create("p", parse_ace(START))
        for _ in range(3):
            store.commit("p", tag("r-00001"))  # v2..v4

    def broken(*_: object, **__: object) -> None:
        raise bug("a bug in apply")

    with monkeypatch.context() as m, PlaybookStore(url, cache=False) as fresh:
        m.setattr(ace.store.log, "apply", broken)
        with pytest.raises(bug, match="a bug in apply"):
            fresh.load("p", 3)  # the snapshot of v1 and two deltas
        with pytest.raises(bug, match="a bug in apply"):
            fresh.diff("p", 1, 3)
        with pytest.raises(bug, match="a bug in apply"):
            fresh.verify("p")
        assert fresh.load("p")["r-00001"].helpful == 3  # the head is read from its rows: nothing to replay

    def edit(table: str, version: int, column: str, value: str) -> None:
        with PlaybookStore(url).engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = :value WHERE version = {version}"), {"value": value})

    edit("ace_versions", 3, "delta", "{not json")
    with pytest.raises(StoreIntegrityError, match=r"version 3 is corrupt: its stored log no longer rebuilds \(Val"):
        PlaybookStore(url, cache=False).load("p", 3)
    with pytest.raises(StoreIntegrityError, match="version 3 no longer rebuilds"):
        PlaybookStore(url, cache=False).verify("p")
    unknown = Delta.parse({"operations": [{"type": "TAG", "id": "r-09999", "tag": "helpful"}]}).to_json()
    edit("ace_versions", 3, "delta", unknown)
    with pytest.raises(StoreIntegrityError, match=r"no longer rebuilds \(DeltaError: .*r-09999"):
        PlaybookStore(url, cache=False).load("p", 3)
    edit("ace_snapshots", 1, "state", '{"format":"ace.playbook/v1","next_id":3}')
    with pytest.raises(StoreIntegrityError, match=r"version 2 is corrupt: its stored log no longer rebuilds \(KeyErr"):
        PlaybookStore(url, cache=False).load("p", 2)


def test_old_versions_are_rebuilt_from_the_waypoints_a_rebuild_left_and_never_from_a_wrong_one(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading version after old version (a console browsing history) rebuilds each from the nearest state an
    earlier rebuild kept (every ``WAYPOINT`` versions), not from the snapshot and every delta after it; a held state
    that is not the one recorded for its version (here planted) is never the base of a rebuild."""
    writer = PlaybookStore(db_url, snapshot_every=1000)  # one snapshot: the import
    writer.create("p", parse_ace(START))
    expected = {1: writer.load("p").digest()}
    for v in range(2, 101):
        op = {"type": "ADD", "section": "RULES", "content": f"Learned rule number {v} of the house."}
        expected[v] = writer.commit("p", Delta.parse({"operations": [op]})).digest
    writer.close()
    reader = PlaybookStore(db_url)
    assert reader.load("p", 99).digest() == expected[99]  # from the snapshot: keeps v32, v64, v96 on the way

    def no_snapshot(*_: object) -> None:
        raise AssertionError("read the snapshot instead of starting from a waypoint")

    with monkeypatch.context() as m:
        m.setattr(ace.store.log, "read_snapshot", no_snapshot)
        for v in (40, 33, 70, 65, 97):
            assert reader.load("p", v).digest() == expected[v]
    with reader.engine.connect() as conn:
        pid = conn.execute(select(t.playbooks.c.id).where(t.playbooks.c.name == "p")).scalar_one()
    wrong = reader.load("p", 3)  # a real state, planted as if it were version 36
    reader._cache.waypoint(pid, 36, wrong)
    assert reader.load("p", 38).digest() == expected[38]  # the planted state fails its digest: the snapshot is read
    reader.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://ace:s3cret-pw@127.0.0.1:5432/ace", "postgresql+psycopg://ace:***@127.0.0.1:5432/ace"),
        ("http://user:s3cret-pw@127.0.0.1:8000", "http://user:***@127.0.0.1:8000"),
        ("sqlite:////tmp/ace.db", "sqlite:////tmp/ace.db"),
        ("/var/lib/ace/chroma", "/var/lib/ace/chroma"),
        ("postgresql://s3cret-pw@[::1", "postgresql:..."),  # not a URL SQLAlchemy reads: its scheme only
        # a password as a query parameter (libpq reads password=, pwd= and sslpassword=)
        ("postgresql://ace@127.0.0.1:1/x?password=s3cret-pw", "postgresql://ace@127.0.0.1:1/x?password=***"),
        (
            "postgresql:///x?host=/run/pg&PWD=s3cret-pw&sslmode=require",
            "postgresql:///x?host=/run/pg&PWD=***&sslmode=require",
        ),
        ("postgresql://ace@h/x?sslpassword=s3cret-pw&password=", "postgresql://ace@h/x?sslpassword=***&password=***"),
        # a raw @ in the password: no part of it shown (SQLAlchemy splits at the first @: "s3cret-pw@127.0.0.1" host)
        ("postgresql://ace:Raw@s3cret-pw@127.0.0.1:1/x", "postgresql://ace:***@127.0.0.1:1/x"),
    ],
)
def test_a_store_or_memory_url_is_printed_without_its_password(url: str, shown: str) -> None:
    """What `ace serve`, `ace worker`, `ace mcp` and `ace ui` print at start-up (found by the pgvector work)."""
    from ace.store.engine import shown_url

    assert shown_url(url) == shown and ("s3cret" not in shown_url(url))


def test_a_drivers_message_never_shows_a_password(tmp_path: Path) -> None:
    """`ace db status|upgrade` print the URL masked, and an error that repeats part of the password (a driver's
    "failed to resolve host 'Secret@127.0.0.1'") shows *** in its place."""
    from typer.testing import CliRunner

    from ace.cli import app
    from ace.store.engine import hide_secrets

    url = "postgresql://ace:Raw@s3cret-pw@127.0.0.1:1/x"
    assert hide_secrets("failed to resolve host 's3cret-pw@127.0.0.1'", url) == "failed to resolve host '***@127.0.0.1'"
    r = CliRunner().invoke(app, ["playbook", "list", "--db", url])
    assert r.exit_code == 1 and "s3cret" not in r.output and "Raw" not in r.output, r.output
    r = CliRunner().invoke(app, ["db", "status", "--db", "postgresql://ace@127.0.0.1:1/x?password=s3cret-pw"])
    assert r.exit_code == 1 and "s3cret" not in r.output, r.output
    db = f"sqlite:///{tmp_path / 'ace.db'}"
    for cmd in ("status", "upgrade"):
        r = CliRunner().invoke(app, ["db", cmd, "--db", db + "?password=s3cret-pw"])
        assert r.exit_code == 0 and "s3cret" not in r.output and "password=***" in r.output, r.output
