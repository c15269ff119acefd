"""Gated promotion by matched trials and the watch after a promotion (issue #24, items 4-5), on real SQLite files
(and PostgreSQL where the suite has one), with the scripted provider (:mod:`ace.llm.testing`, a public test double)
answering for the generator: it reads the playbook in the prompt like a model that uses what it is given, so a
candidate that holds the lessons is better than a serving version that does not, and nothing else about the
model matters here.

The bars of the issue this file holds: over 100 simulated campaigns of candidates no better than serving, the share
promoted is at most alpha + 2 standard errors; a clearly better candidate is promoted; a scripted regression after a
promotion demotes serving within the detector's window, with the alert in the channel's log; a killed trial resumes;
an exhausted budget stops with a clear record; hostile lanes are refused and change nothing."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from ace.cli import app as cli
from ace.governance import (
    Campaign,
    CampaignSpent,
    LaneError,
    NoLane,
    NothingToTrial,
    Pair,
    TrialInterrupted,
    decide,
    mcnemar,
    paired_bootstrap,
    run_trial,
    set_lane,
    set_watch,
)
from ace.governance import gate as g
from ace.governance.stats import binomial_tail
from ace.llm import LLM, ProviderError
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.llm.types import Request
from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.service.auth import Grant
from ace.service.core import BadRequest, Service
from ace.store import SERVING, PlaybookStore

ROOT = Path(__file__).resolve().parents[1]
CITIES = ["Bergen", "Ghent", "Lund", "Malmo", "Turku", "Aarhus", "Tartu", "Riga", "Kaunas", "Gdansk", "Porto",
          "Seville", "Lyon", "Graz", "Brno", "Cork", "Leeds", "Basel", "Utrecht", "Bremen"]  # fmt: skip
CODES = {c: f"LC-{1000 + 37 * i}" for i, c in enumerate(CITIES)}
START = parse_ace("## RULES\n[rul-00001] Refunds from Oslo use ledger code LC-4471.\n")
ADMIN = Grant.local("alice", ["t"], role="admin")
TAG = Delta.parse('{"operations": [{"type": "TAG", "id": "rul-00001", "tag": "helpful"}]}')


def lessons(cities: list[str]) -> Delta:
    ops = [{"type": "ADD", "section": "RULES", "content": f"Refunds from {c} use ledger code {CODES[c]}."}
           for c in cities]  # fmt: skip
    return Delta.parse(json.dumps({"operations": ops}))


def lane_file(tmp_path: Path, cities: list[str] = CITIES, name: str = "lane.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": f"q-{c}", "input": f"Which ledger code do refunds from {c} use?",
                                        "target": CODES[c]}) + "\n" for c in cities), encoding="utf-8")  # fmt: skip
    return path


def reader(request: Request) -> dict[str, Any]:
    """A generator that answers from the playbook it is shown, and says "unknown" when the playbook does not say."""
    question = request.messages[-1].content
    city = re.search(r"refunds from (\w+) use", question)
    shown = "\n".join(m.content for m in request.messages[:-1])
    found = re.search(rf"Refunds from {city.group(1)} use ledger code (LC-\d+)", shown) if city else None
    return {"reasoning": "read the playbook", "bullet_ids": [], "final_answer": found.group(1) if found else "unknown"}


def playbook(url: str, *, learned: list[str] = CITIES) -> PlaybookStore:
    """v1: the starting rule (what agents read); v2: the lessons learned for ``learned`` (the candidate)."""
    store = PlaybookStore(url)
    store.create("p", START, namespace="t")
    store.commit("p", lessons(learned) if learned else TAG, namespace="t")
    return store


def gated(store: PlaybookStore, tmp_path: Path, policy: str = "gated", **settings: Any) -> Service:
    svc = Service(store)
    svc.set_lane(ADMIN, "t", "p", tasks=lane_file(tmp_path), evaluator="exact", **settings)
    svc.store.move_channel("p", SERVING, 1, namespace="t", author="alice", reason="serve v1 first")
    svc.set_promotion(ADMIN, "t", "p", policy)
    return svc


# -- the statistics -------------------------------------------------------------------------------------------------
def test_the_exact_mcnemar_test_counts_only_the_discordant_tasks() -> None:
    assert binomial_tail(10, 10) == 2**-10 and binomial_tail(0, 0) == 1.0 and binomial_tail(3, 5) == 0.5
    pairs = [Pair(str(i), True, False) for i in range(8)] + [Pair(f"s{i}", False, True) for i in range(2)]
    pairs += [Pair(f"b{i}", True, True) for i in range(50)]  # concordant tasks change nothing but n
    r = mcnemar(pairs)
    assert r.p_value == pytest.approx(sum(math.comb(10, k) for k in range(8, 11)) / 1024)  # P(X >= 8), X ~ B(10, .5)
    assert r.counts == {"both": 50, "candidate_only": 8, "serving_only": 2, "neither": 0}
    assert r.effect == pytest.approx(6 / 60)
    assert mcnemar([Pair("x", None, True)]).n == 0  # no verdict: left out


def test_the_paired_bootstrap_is_seeded_and_agrees_with_mcnemar_on_binary_outcomes() -> None:
    rng = random.Random(4)
    pairs = [Pair(str(i), rng.random() < 0.7, rng.random() < 0.5) for i in range(80)]
    boot = paired_bootstrap(pairs, seed=3)
    assert boot == paired_bootstrap(pairs, seed=3)  # the same data, the same answer
    assert abs(boot.p_value - mcnemar(pairs).p_value) < 0.03
    assert boot.interval is not None and boot.interval[0] < boot.effect < boot.interval[1]
    scores = [Pair(str(i), None, None, 0.75, 0.5) for i in range(30)]  # partial credit: the bootstrap decides
    d = decide(scores, alpha=0.01)
    assert d.result.test == "bootstrap" and d.better and d.result.effect == pytest.approx(0.25)
    assert not decide([Pair(str(i), None, None, 0.5, 0.5) for i in range(30)], alpha=0.05).better


def test_the_decision_needs_significance_and_the_minimum_effect() -> None:
    pairs = [Pair(str(i), True, i % 5 == 0) for i in range(50)]  # 100 % against 20 %: +80 points
    assert decide(pairs, alpha=0.005).better
    assert not decide(pairs, alpha=0.005, min_effect=0.9).better  # significant, but not by enough
    assert "below the minimum" in decide(pairs, alpha=0.005, min_effect=0.9).reason
    few = [Pair("a", True, False), Pair("b", True, False)]
    assert "not significant" in decide(few, alpha=0.05).reason  # 2 of 2 is p = 0.25
    assert decide([], alpha=0.05).reason == "no task was answered by both"


def test_a_campaign_spends_its_alpha_over_its_looks_and_persists_as_json() -> None:
    c = Campaign(alpha=0.05, spending="bonferroni", looks=4, serving=3)
    assert [c.look() for _ in range(4)] == [(k, 0.0125) for k in range(1, 5)]
    with pytest.raises(CampaignSpent, match="all 4 looks"):
        c.look()
    assert Campaign.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.against(3) is c and c.against(5).number == 2 and c.against(5).spent == []  # serving moved: a new one
    s = Campaign(alpha=0.05, spending="series")
    alphas = [s.look()[1] for _ in range(200)]
    assert alphas[0] == 0.025 and alphas == sorted(alphas, reverse=True) and math.fsum(alphas) < 0.05
    bads: list[Any] = [{"alpha": 2}, {"spending": "pocock"}, {"looks": 0}, {"spent": ["x"]}, {"serving": -1}, []]
    for bad in bads:
        with pytest.raises(ValueError):
            Campaign.from_dict(bad)


def test_false_promotions_over_100_campaigns_stay_within_alpha_plus_two_standard_errors() -> None:
    """The bar: candidates no better than serving (as good, or worse), 100 campaigns of 10 looks each on a lane of
    40 tasks of mixed difficulty, each look at its share of alpha: the share of campaigns that promoted is at most
    alpha + 2 standard errors. The decision and the campaign are the code the trials run."""
    for spending in ("bonferroni", "series"):
        promoted = simulate(campaigns=100, looks=10, tasks=40, gain=0.0, spending=spending, seed=7)
        promoted += simulate(campaigns=100, looks=10, tasks=40, gain=-0.05, spending=spending, seed=8)
        alpha, n = 0.05, 200
        bound = alpha + 2 * math.sqrt(alpha * (1 - alpha) / n)
        assert promoted / n <= bound, (spending, promoted)
    # and the same campaigns with a clearly better candidate (+30 points) promote nearly always
    assert simulate(campaigns=100, looks=10, tasks=40, gain=0.3, spending="bonferroni", seed=9) >= 95


@pytest.mark.slow
def test_false_promotions_end_to_end_through_trials_stay_within_the_bar() -> None:
    """The benchmark's end-to-end part: 100 campaigns through run_trial on real SQLite files, the scripted
    generator no better with the candidate than with serving, a new candidate before each look."""
    script = ROOT / "benchmarks" / "governance" / "bench_false_promotions.py"
    argv = [sys.executable, str(script), "--campaigns", "200", "--e2e", "100", "--e2e-looks", "2", "--e2e-tasks", "10"]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    e2e = result["end_to_end"]
    assert e2e["within_bar"] and e2e["answers"] >= 100 * 2 * 10, e2e
    assert all(r["share"] <= r["bar"] for r in result["simulated"] if r["gain"] <= 0)


def simulate(*, campaigns: int, looks: int, tasks: int, gain: float, spending: str, seed: int) -> int:
    """Campaigns whose every look draws fresh paired outcomes (serving right with the task's chance, the candidate
    with that chance plus ``gain``); how many promoted at some look."""
    rng = random.Random(seed)
    promoted = 0
    for _ in range(campaigns):
        campaign = Campaign(alpha=0.05, spending=spending, looks=looks, serving=1)  # type: ignore[arg-type]
        for _ in range(looks):
            _, alpha = campaign.look()
            chances = [rng.uniform(0.2, 0.8) for _ in range(tasks)]
            pairs = [Pair(str(i), rng.random() < min(1.0, p + gain), rng.random() < p) for i, p in enumerate(chances)]
            if decide(pairs, alpha=alpha).better:
                promoted += 1
                break
    return promoted


# -- trials ---------------------------------------------------------------------------------------------------------
def test_a_clearly_better_candidate_is_promoted_with_its_evidence_in_the_move(db_url: str, tmp_path: Path) -> None:
    store = playbook(db_url)
    svc = gated(store, tmp_path)
    provider = ScriptedProvider(reader)
    report = run_trial(store, "p", LLM(provider), namespace="t", author="ci", provider="scripted")
    assert report.moved and report.trial.status == "promoted" and not report.resumed
    assert store.resolve("p", SERVING, namespace="t") == 2
    assert len(provider.calls) == 2 * len(CITIES)  # each task once per arm
    move = store.channel_log("p", namespace="t", channel=SERVING)[-1]
    assert (move.version, move.previous, move.author) == (2, 1, "ci")
    assert move.reason is not None and move.reason.startswith(f"gated: trial #{report.trial.id} better: p=")
    ev = move.evidence
    assert ev is not None and ev["decision"]["counts"]["candidate_only"] == len(CITIES)
    assert ev["decision"]["p_value"] == 2.0 ** -len(CITIES) and ev["decision"]["effect"] == 1.0
    assert ev["outcomes"][0] == ["q-Bergen", True, False, 1.0, 0.0] and len(ev["outcomes"]) == len(CITIES)
    assert ev["tokens"] > 0 and ev["wall_s"] >= 0 and ev["lane"]["n"] == len(CITIES)
    assert ev["campaign"] == {"number": 1, "look": 1, "alpha_look": 0.005, "alpha": 0.05, "spent": 0.005}
    gate = svc.gate(ADMIN, "t", "p")
    assert gate["campaign"]["promoted"] == 2 and gate["trials"][0]["status"] == "promoted"
    with pytest.raises(NothingToTrial):  # serving is the candidate now
        run_trial(store, "p", LLM(provider), namespace="t")
    store.commit("p", TAG, namespace="t")
    again = run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")  # v3 against v2: a new campaign
    assert (again.trial.campaign, again.trial.look, again.trial.status) == (2, 1, "not-better")
    assert store.resolve("p", SERVING, namespace="t") == 2
    store.close()


def test_a_candidate_no_better_is_not_promoted_and_the_campaign_runs_out(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url, learned=[])  # v2 learned nothing about the lane
    gated(store, tmp_path, looks=2)
    for look in (1, 2):
        r = run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
        assert (r.trial.look, r.trial.status, r.moved) == (look, "not-better", False)
        assert r.trial.note is not None and "not significant: p=1" in r.trial.note
    with pytest.raises(CampaignSpent, match="all 2 looks of the campaign against v1 are spent"):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    assert len(g.list_trials(store, "p", namespace="t")) == 2  # the refused look left no trial
    assert store.resolve("p", SERVING, namespace="t") == 1
    store.close()


def test_gated_review_passes_a_better_candidate_to_the_reviewer(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    svc = gated(store, tmp_path, policy="gated+review")
    reviewer = Grant.local("rita", ["t"], role="review")
    with pytest.raises(BadRequest, match="must pass a trial against v1 before it is approved"):
        svc.approve(reviewer, "t", "p", to=2)
    report = svc.trial(reviewer, "t", "p", LLM(ScriptedProvider(reader)))
    assert (report["status"], report["moved"]) == ("passed", False)
    assert store.resolve("p", SERVING, namespace="t") == 1  # passed, not served: the reviewer serves it
    pending = svc.pending(reviewer, "t", "p")
    assert pending["gate"]["status"] == "passed" and pending["gate"]["effect"] == 1.0
    assert svc.approve(reviewer, "t", "p", to=2, reason="trial passed")["serving"] == 2
    store.close()


def test_a_trial_stopped_by_its_token_budget_keeps_its_answers_and_goes_on(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    gated(store, tmp_path)
    first = ScriptedProvider(reader)
    stopped = run_trial(store, "p", LLM(first), namespace="t", budget_tokens=200)
    assert stopped.trial.status == "stopped" and stopped.decision is None and not stopped.moved
    assert stopped.trial.note is not None and stopped.trial.note.startswith("token budget of 200 spent")
    done = len(first.calls)
    assert 0 < done < 2 * len(CITIES) and stopped.trial.tokens >= 200
    assert store.resolve("p", SERVING, namespace="t") == 1  # nothing decided, nothing moved
    rest = ScriptedProvider(reader)
    finished = run_trial(store, "p", LLM(rest), namespace="t")
    assert finished.resumed and finished.trial.id == stopped.trial.id and finished.trial.status == "promoted"
    assert len(rest.calls) == 2 * len(CITIES) - done  # no task answered twice
    assert finished.trial.look == 1  # the resumed trial spent no second look
    store.close()


def test_a_provider_that_fails_mid_trial_stops_it_and_the_next_run_goes_on(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    gated(store, tmp_path)
    calls = 0

    def flaky(request: Request) -> Any:
        nonlocal calls
        calls += 1
        return ProviderError("the model server went away", retryable=False) if calls > 7 else reader(request)

    with pytest.raises(TrialInterrupted, match=r"stopped after 7 of 40 answers: ProviderError"):
        run_trial(store, "p", LLM(ScriptedProvider(flaky), retries=0), namespace="t")
    (t,) = g.list_trials(store, "p", namespace="t")
    assert t.status == "stopped" and "the model server went away" in (t.note or "")
    report = run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    assert report.resumed and report.answered_now == 33 and report.trial.status == "promoted"
    store.close()


def test_a_killed_trial_resumes_where_it_was(sqlite_url: str, tmp_path: Path) -> None:
    """``ace playbook trial`` in its own process, killed (SIGKILL) once some answers are kept: the next run answers
    only what was left."""
    store = playbook(sqlite_url)
    gated(store, tmp_path)
    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"replies": "valid", "delay_s": 0.2}), encoding="utf-8")
    env = {**os.environ, "ACE_DB": sqlite_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "ace.cli", "playbook", "trial", "p", "-n", "t", "--provider", f"scripted:{script}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = create_engine(sqlite_url)
    kept, deadline = 0, time.monotonic() + 60
    try:
        while kept < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                with engine.connect() as conn:
                    kept = conn.execute(select(func.count()).select_from(g.results)).scalar() or 0
            except Exception:  # the tables are made by the process under test
                kept = 0
        assert kept >= 4, proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "no answers"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    engine.dispose()
    (killed,) = g.list_trials(store, "p", namespace="t")
    assert killed.status == "running"  # it never got to say otherwise
    answered = g.trial(store, killed.id).answered
    provider = ScriptedProvider(valid_reply)
    report = run_trial(store, "p", LLM(provider), namespace="t")
    assert report.resumed and report.trial.id == killed.id
    assert len(provider.calls) == 2 * len(CITIES) - sum(answered.values())
    assert report.trial.answered == {"candidate": len(CITIES), "serving": len(CITIES)}
    assert report.trial.status == "not-better"  # the scripted replies answer both arms alike
    store.close()


def test_a_trial_replays_from_its_cassette_with_the_same_answers_and_decision(tmp_path: Path) -> None:
    """Recorded once (the scripted generator behind a cassette), a trial re-runs on a fresh store from the cassette
    alone, call for call, to the same answers, tokens and decision; a request the cassette does not hold stops the
    trial (resumable) instead of inventing an answer."""
    from ace.llm.cassette import Cassette

    tape, seen = tmp_path / "trial.cassette.jsonl", []
    for run, mode in (("record", "record"), ("replay", "replay")):
        store = playbook(f"sqlite:///{tmp_path / run}.db")
        gated(store, tmp_path)
        provider = Cassette(tape, ScriptedProvider(reader) if mode == "record" else None, mode=mode)  # type: ignore[arg-type]
        report = run_trial(store, "p", LLM(provider), namespace="t")
        with store.transaction() as conn:
            answers = sorted((k, r.correct, r.answer, r.tokens) for k, r in g.answers(conn, report.trial.id).items())
        assert report.decision is not None
        seen.append((report.trial.status, report.trial.tokens, report.decision.to_dict(), answers))
        store.close()
    assert seen[0] == seen[1] and seen[0][0] == "promoted"
    store = playbook(f"sqlite:///{tmp_path / 'other'}.db", learned=CITIES[:5])  # another candidate: not on the tape
    gated(store, tmp_path)
    with pytest.raises(TrialInterrupted, match="CassetteMiss"):
        run_trial(store, "p", LLM(Cassette(tape, mode="replay"), retries=0), namespace="t")
    store.close()


def test_two_runs_of_one_trial_at_once_promote_once(sqlite_url: str, tmp_path: Path) -> None:
    """Two workers run the playbook's trial at the same time: the second takes up the open trial instead of spending
    a second look, an answer both made is kept once, and serving moves once."""
    import threading

    store = playbook(sqlite_url)
    gated(store, tmp_path)
    reports: list[Any] = []

    def run() -> None:
        reports.append(run_trial(store, "p", LLM(ScriptedProvider(reader, delay_s=0.002)), namespace="t"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2 and {r.trial.id for r in reports} == {1}
    assert sum(r.moved for r in reports) == 1 and g.trial(store, 1).status == "promoted"
    assert g.trial(store, 1).answered == {"candidate": len(CITIES), "serving": len(CITIES)}
    gated_moves = [m for m in store.channel_log("p", namespace="t", channel=SERVING) if m.author == "ace:gate"]
    assert len(gated_moves) == 1 and store.resolve("p", SERVING, namespace="t") == 2
    store.close()


def test_a_trial_whose_serving_moved_is_superseded(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    gated(store, tmp_path)
    run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t", budget_tokens=50)
    store.move_channel("p", SERVING, 2, namespace="t", author="alice", reason="served by hand")
    with pytest.raises(NothingToTrial):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    (old,) = g.list_trials(store, "p", namespace="t")
    assert old.status == "superseded" and old.note == "serving moved to v2 before the trial ended"
    store.close()


# -- hostile lanes -------------------------------------------------------------------------------------------------
def test_hostile_lanes_are_refused_with_a_clear_error_and_change_nothing(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    svc = Service(store)
    good = lane_file(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    twice = tmp_path / "twice.jsonl"
    twice.write_text(good.read_text(encoding="utf-8") * 2, encoding="utf-8")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"input": "q", "target": \n', encoding="utf-8")
    cases = [
        (good, "nonesuch", "unknown evaluator 'nonesuch'"),
        (good, '{"name": "numeric", "tolerance": 3}', "evaluator spec"),
        (good, '{"name": ', "is not a name or a JSON object"),
        (good, "judge", "a lane's evaluator has ground truth"),
        (tmp_path / "missing.jsonl", "exact", "does not exist"),
        (tmp_path, "exact", "does not exist (or is not a file)"),
        (empty, "exact", "holds no task"),
        (twice, "exact", "is the id of line 1 too"),
        (bad_json, "exact", "line 1"),
    ]
    for tasks, evaluator, message in cases:
        with pytest.raises(LaneError, match=re.escape(message)):
            set_lane(store, "p", namespace="t", tasks=tasks, evaluator=evaluator)
    with pytest.raises(LaneError, match="give both"):
        set_lane(store, "p", namespace="t", tasks=good)
    for settings in ({"alpha": 0}, {"alpha": 1.5}, {"min_effect": -0.1}, {"test": "t-test"}, {"looks": 0},
                     {"spending": "pocock"}):  # fmt: skip
        with pytest.raises(ValueError):
            set_lane(store, "p", namespace="t", **settings)
    with store.transaction() as conn:
        assert not g.tables_present(conn)  # nothing was written, not even the tables
    with pytest.raises(BadRequest, match="no evaluation lane"):
        svc.set_promotion(ADMIN, "t", "p", "gated")
    assert store.promotion("p", namespace="t") == "immediate"
    with pytest.raises(NoLane):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    # a lane that was good, then its file went away: the trial is refused before it spends a look
    svc.set_lane(ADMIN, "t", "p", tasks=good, evaluator="exact")
    svc.store.move_channel("p", SERVING, 1, namespace="t")
    before = g.get(store, "p", namespace="t")
    good.unlink()
    with pytest.raises(LaneError, match="does not exist"):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    assert g.get(store, "p", namespace="t") == before and g.list_trials(store, "p", namespace="t") == []
    with pytest.raises(ValueError, match="at least 1"):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t", budget_tokens=0)
    store.close()


def test_hostile_strings_in_the_gate_commands_are_one_line_and_change_nothing(sqlite_url: str, tmp_path: Path) -> None:
    from tests.test_hostile import HOSTILE

    store = playbook(sqlite_url)
    gated(store, tmp_path)
    before = g.get(store, "p", namespace="t")
    lane = str(lane_file(tmp_path, name="other.jsonl"))
    for hostile in HOSTILE.values():
        for args in (
            ["playbook", "lane", hostile],
            ["playbook", "lane", "p", "--tasks", hostile, "--evaluator", "exact"],
            ["playbook", "lane", "p", "--tasks", lane, "--evaluator", hostile],
            ["playbook", "lane", "p", "--test", hostile],
            ["playbook", "trial", hostile, "--provider", "scripted:valid"],
            ["review", "policy", "p", hostile],
            ["review", "policy", hostile, "--watch"],
        ):
            r = CliRunner().invoke(cli, [*args, "-n", "t", "--db", sqlite_url])
            assert r.exit_code in (1, 2), (args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
            assert "internal error" not in r.output and "\x1b" not in r.output and "\u202e" not in r.output
    assert g.get(store, "p", namespace="t") == before and g.list_trials(store, "p", namespace="t") == []
    assert store.promotion("p", namespace="t") == "gated" and store.resolve("p", SERVING, namespace="t") == 1
    store.close()


# -- the watch ------------------------------------------------------------------------------------------------------
def episode(i: int, success: bool, version: int, batch: str = "") -> dict[str, Any]:
    return {"id": f"e{batch}-{version}-{i}", "messages": [{"role": "user", "content": f"Refund order {i}"},
            {"role": "assistant", "content": "Booked under LC-4471."}], "outcome": {"success": success},
            "playbook_version": version}  # fmt: skip


def test_a_regression_after_a_promotion_demotes_serving_within_the_window(db_url: str, tmp_path: Path) -> None:
    store = playbook(db_url)
    svc = gated(store, tmp_path)
    writer = Grant.local("agent", ["t"], role="write")
    svc.set_watch(ADMIN, "t", "p", on=True, window=10, alpha=0.05)
    for i in range(30):  # agents reading v1 succeed 9 times in 10
        svc.submit_episode(writer, "t", "p", episode(i, i % 10 != 0, 1))
    assert run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t").moved  # v2 is served
    demoted_at = None
    for i in range(10):  # then agents reading v2 fail 7 times in 10
        svc.submit_episode(writer, "t", "p", episode(i, i % 10 < 3, 2))
        if store.resolve("p", SERVING, namespace="t") == 1:
            demoted_at = i + 1
            break
    assert demoted_at == 10  # at the first look the detector's window allows
    move = store.channel_log("p", namespace="t", channel=SERVING)[-1]
    assert (move.version, move.previous, move.author) == (1, 2, "ace:watch")
    assert move.reason is not None and move.reason.startswith("watch: demoted v2 to v1: accuracy fell from 90% to 30%")
    assert move.evidence is not None and move.evidence["kind"] == "demotion"
    assert move.evidence["alert"]["detector"] == "regression" and move.evidence["recent"] == [3, 10]
    assert store.head_version("p", namespace="t") == 2  # candidate untouched: learning goes on there
    store.commit("p", TAG, namespace="t")
    assert store.head_version("p", namespace="t") == 3 and store.resolve("p", SERVING, namespace="t") == 1
    for i in range(30):  # a demotion is not watched in turn
        svc.submit_episode(writer, "t", "p", episode(i, False, 1, "late"))
    assert store.resolve("p", SERVING, namespace="t") == 1
    store.close()


def test_the_watch_keeps_nothing_when_off_and_needs_a_baseline(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    svc = gated(store, tmp_path)
    writer = Grant.local("agent", ["t"], role="write")
    svc.submit_episode(writer, "t", "p", episode(0, True, 1))  # watch off: nothing kept
    with store.transaction() as conn:
        assert g.outcomes_of(conn, g.playbook_id(conn, "t", "p"), 1) == []
    set_watch(store, "p", namespace="t", on=True, window=5)
    assert run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t").moved
    for i in range(10):  # v2 fails, but v1 has no outcomes to compare with: no demotion on a guess
        svc.submit_episode(writer, "t", "p", episode(i, False, 2))
    assert store.resolve("p", SERVING, namespace="t") == 2
    for n, bad in enumerate((10**6, 0, -1, "2", True, 2.5)):  # a version no agent could have read: not kept
        svc.submit_episode(writer, "t", "p", {**episode(99 + n, True, 1), "playbook_version": bad})
    with store.transaction() as conn:
        assert g.outcomes_of(conn, g.playbook_id(conn, "t", "p"), 2) == [False] * 10
    with pytest.raises(ValueError, match="window"):
        set_watch(store, "p", namespace="t", on=True, window=2)
    store.close()


# -- the command line -----------------------------------------------------------------------------------------------
def test_the_cli_sets_a_lane_runs_a_trial_and_shows_the_decisions(sqlite_url: str, tmp_path: Path) -> None:
    store = playbook(sqlite_url)
    store.close()
    runner = CliRunner()
    env = {"ACE_DB": sqlite_url, "COLUMNS": "200"}
    lane = lane_file(tmp_path)
    r = runner.invoke(cli, ["playbook", "lane", "p", "-n", "t", "--tasks", str(lane), "--evaluator", "nonesuch"],
                      env=env)  # fmt: skip
    assert r.exit_code == 1 and "unknown evaluator 'nonesuch'" in r.output
    r = runner.invoke(cli, ["review", "policy", "p", "gated", "-n", "t"], env=env)
    assert r.exit_code == 1 and "no evaluation lane" in r.output
    r = runner.invoke(cli, ["playbook", "lane", "p", "-n", "t", "--tasks", str(lane), "--evaluator", "exact",
                            "--looks", "5", "--json"], env=env)  # fmt: skip
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["lane"]["n"] == len(CITIES) and shown["looks"] == 5 and shown["campaign"]["number"] == 1
    r = runner.invoke(cli, ["playbook", "promote", "p", "1", "-n", "t"], env=env)
    r = runner.invoke(cli, ["review", "policy", "p", "gated", "-n", "t", "--watch", "--watch-window", "15"], env=env)
    assert r.exit_code == 0 and "watch on (window 15" in r.output and "policy gated" in r.output
    r = runner.invoke(cli, ["playbook", "trial", "p", "-n", "t", "--provider", "scripted:valid", "--budget-tokens",
                            "1"], env=env)  # fmt: skip
    assert r.exit_code == 0 and "stopped" in r.output and "token budget of 1 spent" in r.output
    r = runner.invoke(cli, ["playbook", "trial", "p", "-n", "t", "--provider", "scripted:valid", "--json"], env=env)
    assert r.exit_code == 0, r.output
    done = json.loads(r.output)
    assert done["resumed"] and done["status"] == "not-better" and done["decision"]["decision"]["p_value"] == 1.0
    r = runner.invoke(cli, ["playbook", "channels", "p", "-n", "t"], env=env)
    assert r.exit_code == 0 and f"#{done['trial']} v2 against v1: not-better" in r.output
    r = runner.invoke(cli, ["playbook", "lane", "p", "-n", "t"], env=env)
    assert r.exit_code == 0 and "campaign 1: against v1, 1 look(s)" in r.output and "watch: on" in r.output
    r = runner.invoke(cli, ["playbook", "trial", "p", "-n", "t", "--provider", "scripted:valid", "--budget-tokens",
                            "0"], env=env)  # fmt: skip
    assert r.exit_code == 2  # a usage error, before anything is opened


def test_idle_workers_run_due_trials_resumably_and_not_after_every_commit(db_url: str, tmp_path: Path) -> None:
    """Trials as workers' work: a worker with nothing queued runs the trial a gated playbook is due, in goes
    bounded by a token budget (each go keeps its answers), and does not start another until the head has moved
    ``every`` versions past the last trial's candidate."""
    from ace.governance.duty import TrialDuty
    from ace.service.queue import EpisodeQueue
    from ace.service.worker import Worker

    store = playbook(db_url, learned=CITIES[:12])
    gated(store, tmp_path)
    assert TrialDuty().due(store) == [("t", "p")]
    provider = ScriptedProvider(reader)
    duty = TrialDuty(every=3, budget_tokens=1, poll_s=0)  # one answer per go
    worker = Worker(store, EpisodeQueue(store), llm=lambda: LLM(provider), workdir=tmp_path / "w", trials=duty)
    assert worker.run_once() is None  # no episode: a trial's first go instead
    (first,) = g.list_trials(store, "p", namespace="t")
    assert first.status == "stopped" and sum(g.trial(store, first.id).answered.values()) == 1
    assert duty.due(store) == [("t", "p")]  # the stopped trial goes on at the next go
    duty.budget_tokens = None
    worker.run_once()
    (done,) = g.list_trials(store, "p", namespace="t")
    assert done.id == first.id and done.status == "promoted" and store.resolve("p", SERVING, namespace="t") == 2
    assert duty.due(store) == []  # serving is the candidate
    store.commit("p", lessons(CITIES[12:14]), namespace="t")  # v3: one version past the trial's candidate
    assert duty.due(store) == []
    store.commit("p", lessons(CITIES[14:16]), namespace="t")  # v4
    store.commit("p", lessons(CITIES[16:18]), namespace="t")  # v5: three past v2
    assert duty.due(store) == [("t", "p")]
    slow = TrialDuty(every=3, poll_s=3600)
    assert slow.run_once(store, LLM(provider), config=worker.config, author="w") is not None  # the first look
    assert slow.run_once(store, LLM(provider), config=worker.config, author="w") is None  # not again within poll_s
    assert len(provider.calls) == 2 * 20 + 2 * 20  # two trials of 20 lane tasks, each task asked once per arm
    store.close()


def test_the_watch_compares_with_the_state_replaced_whatever_version_made_it(sqlite_url: str, tmp_path: Path) -> None:
    """An outside trial's find: after a rejection (a new version of the state agents read), the next promotion
    was never watched, since the version it replaced had no outcomes of its own. Outcomes belong to a state."""
    store = playbook(sqlite_url, learned=CITIES[:2])
    svc = Service(store)
    reviewer, writer = Grant.local("rev", ["t"], role="review"), Grant.local("agent", ["t"], role="write")
    svc.set_lane(ADMIN, "t", "p", tasks=lane_file(tmp_path), evaluator="exact")
    svc.set_promotion(ADMIN, "t", "p", "review")  # serving pinned at v2
    set_watch(store, "p", namespace="t", on=True, window=5)
    for i in range(8):
        svc.submit_episode(writer, "t", "p", episode(i, True, 2))
    store.commit("p", lessons(CITIES[2:4]), namespace="t")  # v3
    svc.reject(reviewer, "t", "p", candidate=3, reason="bad lesson")  # v4: the state of v2, served
    store.commit("p", lessons(CITIES[4:6]), namespace="t")  # v5
    svc.approve(reviewer, "t", "p", to=5)
    for i in range(5):
        svc.submit_episode(writer, "t", "p", episode(10 + i, False, 5))
    assert store.resolve("p", SERVING, namespace="t") == 4  # demoted to what it replaced
    assert store.channel_log("p", namespace="t", channel=SERVING)[-1].author == "ace:watch"
    store.close()


def test_bad_duty_settings_and_a_lane_changed_behind_its_back_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    from ace.governance.duty import TrialDuty

    for bad in ({"every": 0}, {"every": -1}, {"budget_tokens": 0}, {"budget_tokens": -5}, {"every": True}):
        with pytest.raises(LaneError):
            TrialDuty(**bad)
    store = playbook(sqlite_url)
    gated(store, tmp_path)
    lane = tmp_path / "lane.jsonl"
    lane.write_text(lane.read_text() + json.dumps({"id": "q-new", "input": "?", "target": "x"}) + "\n")
    with pytest.raises(LaneError, match="changed since the lane was set"):
        run_trial(store, "p", LLM(ScriptedProvider(reader)), namespace="t")
    assert g.list_trials(store, "p", namespace="t") == []  # no look spent on other tasks
    store.close()
