"""Collapse detectors, the guard that uses them, and `ace playbook check`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.collapse import CollapseGuard, Detectors, regression
from ace.playbook import ApplyPolicy, Delta, Playbook, apply
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def agent_pb() -> Playbook:
    return parse_ace((ROOT / "playbooks" / "agent.txt").read_text())


def _apply(pb: Playbook, ops: Sequence[Mapping[str, object]]) -> Playbook:
    # the quality gate is off: these tests build the junk a collapsing context produces, for the detectors to catch
    return apply(pb, Delta.parse({"operations": ops}), policy=ApplyPolicy(quality=None)).playbook


def _big(n: int = 30) -> Playbook:
    ops = [
        {
            "type": "ADD",
            "section": "rules",
            "content": f"Rule {i}: when the ledger shows item {i}, use formula {i}a * 2.",
        }
        for i in range(n)
    ]
    return _apply(Playbook.empty(), ops)


def test_a_healthy_delta_raises_nothing() -> None:
    pb = _big()
    after = _apply(
        pb,
        [
            {"type": "ADD", "section": "rules", "content": "Check units before dividing two amounts."},
            {"type": "TAG", "id": next(iter(pb)).id, "tag": "helpful"},
            {"type": "REMOVE", "id": list(pb)[3].id},
        ],
    )
    assert Detectors().check(pb, after) == []


def test_a_monolithic_rewrite_is_caught_by_size_retention_and_churn() -> None:
    pb = _big()
    rewrite = _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": "Be careful."}])
    alerts = Detectors().check(pb, rewrite, versions=(7, 8))
    by = {a.detector: a for a in alerts}
    assert {"size", "retention", "churn"} <= set(by)
    assert all(by[d].severity == "critical" for d in ("size", "retention", "churn"))
    assert by["size"].versions == (7, 8) and by["size"].evidence["bullets"] == [30, 1]
    assert by["retention"].evidence["n_lost"] == 30


def test_brevity_bias_is_caught_when_bullets_are_rewritten_shorter() -> None:
    pb = _big(10)
    shorter = _apply(pb, [{"type": "UPDATE", "id": b.id, "content": f"Rule {n}."} for n, b in enumerate(pb)])
    kinds = {(a.detector, a.severity) for a in Detectors(min_tokens=10**9).check(pb, shorter)}
    assert ("brevity", "critical") in kinds


def test_probe_facts_that_disappear_are_critical_even_in_a_small_delta(agent_pb: Playbook) -> None:
    victim = next(iter(agent_pb))
    probe = victim.content[10:50]
    after = _apply(agent_pb, [{"type": "REMOVE", "id": victim.id}])
    alerts = Detectors(probes=[probe, "a fact never known"]).check(agent_pb, after)
    (alert,) = [a for a in alerts if a.severity == "critical"]
    assert alert.detector == "retention" and alert.evidence["probes_lost"] == [probe]


def test_retention_matches_rewritten_bullets_by_content_not_only_by_id() -> None:
    pb = _big(10)
    reworded = _apply(
        pb,
        [{"type": "UPDATE", "id": b.id, "content": b.content.replace("use", "apply")} for b in list(pb)[:4]],
    )
    share, lost = Detectors().retained(pb, reworded)
    assert share == 1.0 and lost == []


def test_redundancy_needs_and_uses_an_embedder() -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.loop.refine import EmbeddingIndex

    pb = _big(6)
    dup_ops = [{"type": "ADD", "section": "rules", "content": b.content + " Always."} for b in pb]
    bloated = _apply(pb, dup_ops)
    # without an embedder: each addition that repeats a bullet is named (info), by its facts and subject
    lexical = [a for a in Detectors().check(pb, bloated) if a.detector == "redundancy"]
    assert len(lexical) == len(pb) and {a.severity for a in lexical} == {"info"}
    assert {a.ids[1] for a in lexical} == {b.id for b in pb}
    detectors = Detectors(similar=EmbeddingIndex(MiniLMEmbedder()).similarity)
    (alert,) = [a for a in detectors.check(pb, bloated) if a.detector == "redundancy" and a.severity == "warning"]
    share0, share1 = alert.evidence["share"]
    assert share1 > 0.9 and share1 - share0 > 0.05  # judged against the version before
    # a playbook that always had near-duplicates does not warn on a step that adds none
    more = _apply(bloated, [{"type": "ADD", "section": "rules", "content": "Convert currencies at the posted rate."}])
    assert not [a for a in detectors.check(bloated, more) if a.detector == "redundancy" and a.severity != "info"]


def test_regression_uses_a_significance_test() -> None:
    assert regression([True] * 40 + [False] * 20, window=20) is not None
    rng = random.Random(0)
    noisy = [rng.random() < 0.6 for _ in range(200)]
    false_alarms = sum(regression(noisy[: i + 1], window=20) is not None for i in range(40, 200))
    assert false_alarms <= 16  # at most ~10% of windows on a stationary stream (alpha 0.05, overlapping windows)
    assert regression([True] * 10, window=20) is None  # too few outcomes


def test_the_guard_blocks_a_critical_candidate_and_keeps_the_alerts() -> None:
    pb = _big()
    guard = CollapseGuard()
    assert guard(pb, _apply(pb, [{"type": "ADD", "section": "rules", "content": "One more rule."}])) is None
    reason = guard(pb, _apply(Playbook.empty(), [{"type": "ADD", "section": "rules", "content": "Be careful."}]))
    assert reason is not None and "size (critical)" in reason
    assert {a.detector for a in guard.alerts} >= {"size", "retention", "churn"}


def test_ace_playbook_check_lists_alerts_over_a_history(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    store = PlaybookStore(db)
    pb = _big()
    store.create("p", pb)
    store.commit(
        "p", Delta.parse({"operations": [{"type": "ADD", "section": "rules", "content": "A fine rule to follow."}]})
    )
    wipe = [{"type": "REMOVE", "id": b.id} for b in list(pb)[:25]]
    store.commit("p", Delta.parse({"operations": wipe}))
    runner = CliRunner()
    ok = runner.invoke(app, ["playbook", "check", "p", "--db", db, "--from", "2"], env={"COLUMNS": "200"})
    assert ok.exit_code == 0 and "v2 → v3" in ok.output and "critical" in ok.output
    strict = runner.invoke(app, ["playbook", "check", "p", "--db", db, "--strict"], env={"COLUMNS": "200"})
    assert strict.exit_code == 2
    clean = runner.invoke(app, ["playbook", "check", "p", "--db", db, "--from", "1"], env={"COLUMNS": "200"})
    assert "v1 → v2" not in clean.output  # the healthy step raised nothing
    probes = tmp_path / "probes.txt"
    probes.write_text(next(iter(pb)).content + "\n")
    probe_run = runner.invoke(
        app, ["playbook", "check", "p", "--db", db, "--probes", str(probes)], env={"COLUMNS": "200"}
    )
    assert "probe fact(s) forgotten" in probe_run.output


TEMPLATE = (
    "Supplier S0{n} (refunds) ships under code {code}; quote that code on every invoices line and reconcile "
    "within 4 days."
)


def test_dedup_never_merges_bullets_that_state_different_numbers() -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.loop.refine import EmbeddingIndex, similar_pairs

    pb = _apply(
        Playbook.empty(),
        [
            {"type": "ADD", "section": "s", "content": TEMPLATE.format(n=12, code="K12-4F2A")},
            {"type": "ADD", "section": "s", "content": TEMPLATE.format(n=13, code="K13-9C1E")},
            {"type": "ADD", "section": "s", "content": "Again: " + TEMPLATE.format(n=12, code="K12-4F2A")},
        ],
    )
    index = EmbeddingIndex(MiniLMEmbedder())
    loose = {(p.a, p.b) for p in similar_pairs(pb, index, 0.9, same_specifics=False)}
    strict = {(p.a, p.b) for p in similar_pairs(pb, index, 0.9)}
    ids = [b.id for b in pb]
    assert (ids[0], ids[1]) in loose  # the embeddings alone call them duplicates
    assert strict == {(ids[0], ids[2])}  # only the real restatement is merged


def test_the_collapse_benchmark_scores_the_detectors_and_ace_report_writes_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "c.json"
    bench = ROOT / "benchmarks" / "collapse" / "bench_collapse.py"
    args = ["--steps", "150", "--policies", "ace", "summarize", "random", "--no-refine", "--out", str(out)]
    done = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json_load(out)
    traces = {t["policy"]: t for t in data["traces"]}
    assert min(traces["ace"]["retention"]) == 1.0
    # healthy: nothing at warning or above (its restatements of older facts are named, as info)
    assert [a for a in traces["ace"]["alerts"] if a["severity"] != "info"] == []
    assert {a["detector"] for a in traces["ace"]["alerts"]} <= {"redundancy"}
    assert traces["summarize"]["events"] and traces["random"]["events"]
    combined = data["scores"]["warning"]["any"]
    assert combined["recall"] >= 0.9 and combined["precision"] >= 0.9 and combined["mean_delay"] <= 1
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| ace | 100.0 % |" in md and (tmp_path / "rep" / "retention.png").stat().st_size > 1000


def json_load(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text())
    return data
