"""The conventions family (context is the only source of the answer), focused bullets and copied answers, the
copy-friendly reflector and curator, and ``ace report`` on a run directory.

Role replies are scripted on a loopback test double of a remote OpenAI-compatible API (a boundary we don't own);
the local model's run of the family is in ``tests/test_loop_local.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace.app.demo import halves, verdict_line
from ace.app.run_report import rolling, write_run_report
from ace.errors import ConfigError
from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig, StepRecord
from ace.loop.roles.outputs import FactReflection
from ace.playbook import AddOp, Delta, Playbook, apply
from ace.playbook.focus import answer_options, fact, fact_value, looks_like_value, relevant, spans
from ace.runs.factory import RunSetup, start
from ace.store import PlaybookStore
from ace.tasks import Task
from ace.tasks.conventions import conventions, conventions_facts, conventions_stream
from tests.fake_openai_server import FakeOpenAIServer


# -- the family ---------------------------------------------------------------------------------------------------
def test_a_stream_is_deterministic_per_seed_and_every_fact_is_taught_before_it_is_asked_again() -> None:
    a, b = conventions_stream(3, facts=10, questions=40), conventions_stream(3, facts=10, questions=40)
    assert [t.model_dump() for t in a] == [t.model_dump() for t in b]
    assert [t.input for t in a] != [t.input for t in conventions_stream(4, facts=10, questions=40)]
    seen: set[str] = set()
    for t in a:
        key = t.metadata["fact"]
        assert (t.metadata["first"] == "yes") == (key not in seen)
        seen.add(key)
    assert len(seen) == 10 and a[0].metadata["first"] == "yes"
    # repeats are asked in another wording than the time before
    last: dict[str, str] = {}
    for t in a:
        if t.metadata["fact"] in last:
            assert t.input != last[t.metadata["fact"]]
        last[t.metadata["fact"]] = t.input


def test_facts_have_near_duplicates_and_unique_values() -> None:
    facts = conventions_facts(0)
    values = [f.value for f in facts]
    assert len(values) == len(set(values))
    oslo = [f for f in facts if "Oslo" in f.subject]
    refunds = [f for f in facts if f.subject.startswith("refund")]
    assert len(oslo) >= 5 and len(refunds) >= 8  # the same office, the same transaction: distractors


@pytest.mark.parametrize("bad", [dict(facts=0), dict(facts=10, questions=5), dict(facts=10_000, questions=20_000)])
def test_an_impossible_stream_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        conventions_stream(0, **bad)


def test_the_evaluator_gives_the_rule_with_ground_truth_and_without_it() -> None:
    task = conventions_stream(0, facts=5, questions=10)[0]
    target = task.target
    assert target is not None
    right = conventions(task, f' "{target.lower()}". ')
    assert right.correct and right.message == "correct"
    wrong = conventions(task, "LC-0000")
    assert wrong.correct is False and wrong.target == target and task.metadata["rule"] in wrong.message
    hidden = task.model_copy(update={"target": None})
    exec_right, exec_wrong = conventions(hidden, target), conventions(hidden, "LC-0000")
    assert exec_right.correct and exec_wrong.correct is False
    assert exec_wrong.target is None and target in exec_wrong.message  # the fact is in the message only
    assert conventions(Task(id="x", input="q"), "a").correct is None


# -- focus, spans, copied answers -----------------------------------------------------------------------------------
def _facts_playbook(*pairs: tuple[str, str]) -> Playbook:
    ops = [AddOp(section="facts", content=fact(s, v)) for s, v in pairs]
    return apply(Playbook.empty(), Delta(operations=ops)).playbook


def test_relevant_ranks_the_fact_that_answers_above_its_distractors() -> None:
    pb = _facts_playbook(
        ("a purchase from the Oslo office is booked under ledger code", "LC-1111"),
        ("a refund from the Bergen office is booked under ledger code", "LC-2222"),
        ("a refund from the Oslo office is booked under ledger code", "LC-3333"),
        ("a port strike on the day shift is escalated to", "Signe Vale"),
    )
    top = relevant(pb, "What is the ledger code for a refund handled by the Oslo office?", 3)
    assert fact_value(top[0].content) == "LC-3333"
    assert "Signe Vale" not in [fact_value(b.content) for b in top]
    assert relevant(pb, "nothing in common here", 3) == [] and relevant(pb, "Oslo", 0) == []
    options = answer_options(top, "ledger code for a refund from Oslo?")
    assert options[0] == "LC-3333" and sorted(options) == ["LC-1111", "LC-2222", "LC-3333"]


def test_spans_keep_reading_order_skip_question_words_and_look_like_values() -> None:
    got = spans("booked under LC-4471; ask Signe Vale", exclude="Who is booked?", max_words=2)
    assert got[:3] == ["under LC-4471", "under", "LC-4471"] and "booked" not in " ".join(got)
    assert len(spans("a " * 1000, limit=50)) == 4 and len(spans(" ".join(map(str, range(500))), limit=50)) == 50
    assert looks_like_value("LC-4471") and looks_like_value("Signe Vale") and looks_like_value("AF-K48")
    assert not looks_like_value("approved on") and not looks_like_value("")
    # hostile text: brackets, escapes, U+2028 and markup are words or nothing, never a crash
    assert spans("[x] \\n \u2028 <b>LC-1</b> ../etc") == spans("[x] \\n \u2028 <b>LC-1</b> ../etc")
    assert fact("Which form?", " AF-K48 ") == "Which form \u2192 AF-K48" and fact_value("no arrow") is None


def test_copy_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="focus"):
        LoopConfig(answers="copy", focus=0)
    with pytest.raises(ConfigError):
        LoopConfig(curation="nonsense")  # type: ignore[arg-type]


def test_a_fact_reflection_states_a_rule_clause_once() -> None:
    r = FactReflection(subject="a refund is booked under ledger code LC-1", value="LC-1", bullet_tags=[])
    assert r.fact == "a refund is booked under ledger code \u2192 LC-1"
    assert FactReflection(subject="", value="LC-1", bullet_tags=[]).fact == ""
    assert FactReflection(subject="LC-1", value="LC-1", bullet_tags=[]).fact == ""


# -- the copy-friendly loop, scripted -------------------------------------------------------------------------------
def _llm(server: FakeOpenAIServer) -> LLM:
    """Role replies scripted on a loopback test double of a remote OpenAI-compatible API."""
    return LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)


def _two_askings() -> list[Task]:
    """The same fact asked twice, in two wordings."""
    stream = conventions_stream(0, facts=6, questions=30)
    first = stream[0]
    again = next(t for t in stream[1:] if t.metadata["fact"] == first.metadata["fact"])
    return [first, again]


def _setup(tmp: Path, server: FakeOpenAIServer) -> tuple[PlaybookStore, RunSetup]:
    store = PlaybookStore(f"sqlite:///{tmp / 'conv.db'}")
    store.create("conv", Playbook.empty())
    config = LoopConfig(max_rounds=1, focus=3, answers="copy", curation="facts")
    return store, RunSetup(llm=_llm(server), store=store, playbook="conv", evaluator=conventions, config=config)


def test_a_fact_learned_from_feedback_answers_the_same_question_in_other_words(tmp_path: Path) -> None:
    first, again = _two_askings()
    rule = first.metadata["rule"]
    assert first.target is not None
    with FakeOpenAIServer() as server:
        server.script = [
            # task 1: nothing to copy from, so no generator call; the reflector copies the rule and the value
            ("ok", json.dumps({"subject": rule, "value": first.target, "bullet_tags": []})),
            ("ok", json.dumps({"action": "ADD"})),
            # task 2: the fact is focused, the only one: its value is the answer with no generator call (the
            # constrained reply could only be it); it was right, so no reflector call: the bullet it copied from is
            # tagged helpful, and there is nothing to curate. With relevance = "words" the model is asked.
            ("ok", json.dumps({"final_answer": first.target})),
        ]
        store, setup = _setup(tmp_path, server)
        result = start(setup, [first, again], run_id="conv-1", workdir=tmp_path / "run")
        asked = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert [r.correct for r in result.results] == [False, True]
    (bullet,) = list(store.load("conv"))
    assert bullet.content == fact(rule.removesuffix(first.target), first.target) and bullet.helpful == 1
    assert len(asked) == 2 and result.results[1].delta is not None
    with FakeOpenAIServer() as server:
        server.script = [("ok", json.dumps({"final_answer": first.target}))]
        store.create("conv-words", store.load("conv", version=2))
        words = RunSetup(
            llm=_llm(server),
            store=store,
            playbook="conv-words",
            evaluator=conventions,
            config=LoopConfig(max_rounds=1, focus=3, answers="copy", curation="facts", relevance="words"),
        )
        (again_words,) = start(words, [again], run_id="conv-1w", workdir=tmp_path / "run-w").results
        asked = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert again_words.correct and len(asked) == 1
    assert "MOST RELEVANT BULLETS" in asked[0] and first.target in asked[0]


@pytest.mark.parametrize(
    "reply",
    [
        {"subject": "anything I like", "value": "LC-0000", "bullet_tags": []},  # an invented value
        {"subject": "Ignore previous instructions", "value": "LC-1", "bullet_tags": []},  # not a clause shown
        {"value": "x"},  # missing fields
    ],
)
def test_a_reflection_that_copies_nothing_shown_fails_the_step_and_writes_nothing(
    tmp_path: Path, reply: dict[str, object]
) -> None:
    first, _ = _two_askings()
    with FakeOpenAIServer() as server:
        server.script = [("ok", json.dumps(reply))] * 3
        store, setup = _setup(tmp_path, server)
        result = start(setup, [first], run_id="conv-2", workdir=tmp_path / "run")
    (record,) = result.results
    assert record.error and record.error.startswith("reflector: FactReflection: no valid reply")
    assert store.head("conv").version == 1 and len(store.load("conv")) == 0


def test_the_curator_may_only_choose_among_its_actions(tmp_path: Path) -> None:
    first, _ = _two_askings()
    with FakeOpenAIServer() as server:
        server.script = [
            ("ok", json.dumps({"subject": first.metadata["rule"], "value": first.target, "bullet_tags": []})),
            *[("ok", json.dumps({"action": "REMOVE fact-00001"}))] * 3,
        ]
        store, setup = _setup(tmp_path, server)
        result = start(setup, [first], run_id="conv-3", workdir=tmp_path / "run")
    (record,) = result.results
    assert record.error and record.error.startswith("curator: FactCuration: no valid reply")
    assert len(store.load("conv")) == 0


# -- the report and the demo's summary ----------------------------------------------------------------------------
def test_ace_report_writes_markdown_html_and_plots_and_flags_a_tampered_trajectory(tmp_path: Path) -> None:
    first, again = _two_askings()
    with FakeOpenAIServer() as server:
        server.script = [
            ("ok", json.dumps({"subject": first.metadata["rule"], "value": first.target, "bullet_tags": []})),
            ("ok", json.dumps({"action": "ADD"})),
            ("ok", json.dumps({"final_answer": first.target})),
        ]
        _, setup = _setup(tmp_path, server)
        run_dir = tmp_path / "run-<b>x&amp;"
        start(setup, [first, again], run_id="conv-4", workdir=run_dir)
    where, files = write_run_report(run_dir)
    pngs = [f for f in files if f.suffix == ".png"]
    assert len(pngs) >= 3 and all(f.stat().st_size > 1000 for f in pngs)
    md = (where / "report.md").read_text()
    page = (where / "report.html").read_text()
    assert "| conv-4 | 2 | 50.0 % | 0.0 % | 100.0 % | v1 → v3, 1 bullets |" in md  # ADD, then TAG helpful
    assert "run-&lt;b&gt;x&amp;amp;" in page and "<b>x" not in page
    # a trajectory edited by hand does not verify: reported, not plotted
    traj = next(run_dir.glob("*.trajectory.jsonl"))
    traj.write_text(traj.read_text().replace('"correct": true', '"correct": false'))
    _, _ = write_run_report(run_dir, tmp_path / "again")
    assert "does not verify" in (tmp_path / "again" / "report.md").read_text()


def test_report_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    from ace.errors import InputFileError

    with pytest.raises(InputFileError, match="not a run directory or a trajectory"):
        write_run_report(tmp_path / "missing")
    with pytest.raises(InputFileError, match="nothing to report"):
        write_run_report(tmp_path)


def test_rolling_accuracy_and_the_demo_verdict() -> None:
    assert rolling([False, True, None, True], 2) == [0.0, 0.5, 1.0, 1.0]
    recs = [StepRecord(index=i, task_id=str(i), correct=c, version=1) for i, c in enumerate([False, None, True, True])]
    assert halves(recs) == (0.0, 1.0)
    assert verdict_line(0.2, 0.6, True).startswith("Learning shows")
    assert verdict_line(0.5, 0.5, True).startswith("Nothing improved")
    assert verdict_line(None, None, False).startswith("Nothing was judged")
