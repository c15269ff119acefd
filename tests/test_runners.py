"""Runners, batched curation, wrapped agents and ``ace run``.

The reflector and curator talk to ``FakeOpenAIServer`` (a loopback test double of a remote OpenAI-compatible API)
whose replies are chosen by the role that asks; the Generator is a wrapped agent, i.e. user code, which here is a
deterministic function whose answer is right exactly when the playbook holds the rule it needs. That makes every
accuracy below a consequence of what the loop committed, so the assertions can fail. The example agents run on
the real local model at the end.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from typer.testing import CliRunner

from ace.app.experiments import RunConfig, icl_playbook, load_agent, run_config
from ace.cli import app
from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig
from ace.loop.agents import citations, wrap_callable, wrap_graph
from ace.playbook import Delta, Playbook, Source, apply, merge_deltas, render
from ace.playbook.formats import parse_ace
from ace.runs.factory import RunSetup
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.runners import Learner, evaluate, offline, online
from ace.runs.trajectory import replay
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task
from examples.tool_agent.calculator import ToolError, calculate
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
START_PB = (ROOT / "playbooks" / "finance.txt").read_text()
RULE = "Current ratio = current assets / current liabilities."


def ratio_tasks(n: int, prefix: str = "t") -> list[Task]:
    return [
        Task(
            id=f"{prefix}{i}",
            input=f"Current assets {200 * (i + 1)}, current liabilities 100. Ratio?",
            target=f"{2 * (i + 1)}",
        )
        for i in range(n)
    ]


def knows_the_rule(question: str, playbook_text: str) -> dict[str, Any]:
    """A deterministic agent: right exactly when the playbook holds RULE; cites the rule's id when it uses it."""
    assets = float(question.split("Current assets ")[1].split(",")[0])
    for line in playbook_text.splitlines():
        if RULE in line:
            bullet_id = line.split("]")[0].lstrip("[")
            return {"final_answer": f"{assets / 100:g}", "reasoning": f"used [{bullet_id}]"}
    return {"final_answer": f"{assets + 100:g}", "reasoning": "added them"}


def roles(curator_ops: Iterator[list[dict[str, Any]]]) -> Callable[[dict[str, Any]], str]:
    """Replies by role: the reflector tags nothing; the curator proposes the next ops of ``curator_ops``."""

    def respond(body: dict[str, Any]) -> str:
        system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        if "You are an expert analyst" in system:
            return json.dumps(
                {
                    "reasoning": "r",
                    "error_identification": "e",
                    "root_cause_analysis": "c",
                    "correct_approach": "divide",
                    "key_insight": "ratio = a / b",
                    "bullet_tags": [],
                }
            )
        if "You maintain a playbook" in system:
            return json.dumps({"reasoning": "curated", "operations": next(curator_ops, [])})
        raise AssertionError(f"unexpected prompt: {system[:60]}")

    return respond


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def _llm(server: FakeOpenAIServer) -> LLM:
    return LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)


def _store(tmp: Path) -> PlaybookStore:
    store = PlaybookStore(f"sqlite:///{tmp / 'runs.db'}")
    store.create("fin", parse_ace(START_PB))
    return store


def _learner(tmp: Path, server: FakeOpenAIServer, **config: Any) -> Learner:
    setup = RunSetup(
        llm=_llm(server),
        store=_store(tmp),
        playbook="fin",
        evaluator=EVALUATORS["formula"],
        config=LoopConfig(**{"max_rounds": 1, "playbook_budget": None, **config}),
        generator=wrap_callable(knows_the_rule, budget=None),
    )
    return Learner(setup, workdir=tmp / "work", run_id="r1")


ADD_RULE = [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": RULE}]


# -- offline / online / eval ---------------------------------------------------------------------------------------
def test_offline_validates_every_step_and_tags_the_best_version_not_the_last(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    # step 1 adds the rule (validation 0 -> 1), step 2 removes it again (-> 0): the best version is v2, not v3
    server.responder = roles(iter([ADD_RULE, [{"type": "REMOVE", "id": "calc-00009"}]]))
    learner = _learner(tmp_path, server)
    result = offline(learner, ratio_tasks(2), ratio_tasks(3, "v"), epochs=1, eval_every=1)
    assert [(c.version, c.accuracy) for c in result.checkpoints] == [(1, 0.0), (2, 1.0), (3, 0.0)]
    assert result.best_version == 2 and learner.setup.store.tags("fin") == {"best": 2}
    assert learner.setup.store.resolve("fin", "best") == 2 and RULE in render(learner.setup.store.load("fin", 2))
    assert result.train_accuracy == 0.5  # task 1 answered before the rule existed, task 2 with it


def test_offline_resumes_without_redoing_committed_steps_or_validations(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.responder = roles(iter([ADD_RULE]))
    learner = _learner(tmp_path, server)
    first = offline(learner, ratio_tasks(2), ratio_tasks(2, "v"), eval_every=1)
    calls = len(server.requests)
    again = offline(learner, ratio_tasks(2), ratio_tasks(2, "v"), eval_every=1)
    assert len(server.requests) == calls  # every loop piece and validation file was already complete
    assert learner.setup.store.head("fin").version == first.best_version == again.best_version


def test_online_window_predictions_are_made_before_adapting(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.responder = roles(iter([ADD_RULE]))
    res = online(_learner(tmp_path, server), ratio_tasks(4), window=2)
    # the rule lands while adapting on window 0, so both of window 0's predictions predate it
    assert [w.accuracy for w in res.windows] == [0.0, 1.0] and res.accuracy == 0.5
    assert res.windows[0].version_before == 1 and res.windows[1].version_before == 2


def test_online_with_window_one_uses_the_loops_first_answers(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.responder = roles(iter([ADD_RULE]))
    res = online(_learner(tmp_path, server), ratio_tasks(4), window=1)
    assert [p.correct for p in res.predictions] == [False, True, True, True]
    assert len(res.windows) == 4 and res.windows[1].version_before == 2


def test_evaluate_bounds_concurrency_and_resumes_from_its_results_file(tmp_path: Path) -> None:
    in_flight, peak, calls = 0, 0, 0
    lock = threading.Lock()

    def slow_agent(question: str, playbook_text: str) -> str:
        nonlocal in_flight, peak, calls
        with lock:
            in_flight += 1
            calls += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return "4"

    results = tmp_path / "eval.jsonl"
    kw: dict[str, Any] = dict(
        llm=LLM(OpenAIProvider("unused", base_url="http://127.0.0.1:9/v1")),
        playbook=Playbook.empty(),
        evaluator=EVALUATORS["formula"],
        generator=wrap_callable(slow_agent),
        concurrency=3,
        results=results,
    )
    ev = evaluate(ratio_tasks(9), **kw)
    assert 1 < peak <= 3 and calls == 9
    assert [r.correct for r in ev.records] == [i == 1 for i in range(9)]  # "4" is right for task t1 only
    with results.open("a") as f:
        f.write('{"task_id": "t9", "answ')  # a line cut by a crash is ignored: that task is answered again
    again = evaluate(ratio_tasks(10), **kw)
    assert calls == 10 and len(again.records) == 10 and again.accuracy == 0.1


def test_a_failing_agent_fails_the_step_with_the_reason_and_the_playbook_is_untouched(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    def broken(question: str, playbook_text: str) -> str:
        raise RuntimeError("tool crashed")

    learner = _learner(tmp_path, server)
    learner.setup.generator = wrap_callable(broken)
    (record,) = learner.loop(ratio_tasks(1), "p").results
    assert record.error == "generator (agent): RuntimeError: tool crashed" and record.correct is False
    assert learner.setup.store.head("fin").version == 1 and not server.requests


# -- batched curation ----------------------------------------------------------------------------------------------
def test_a_batch_of_deltas_is_merged_into_one_version_keeping_each_steps_provenance(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    ops = iter(
        [
            [{"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": f"Learned rule number {i}."}]
            for i in range(3)
        ]
    )
    server.responder = roles(ops)
    learner = _learner(tmp_path, server, batch_size=2)
    res = learner.loop(ratio_tasks(3), "b")
    assert [(r.committed, r.pending) for r in res.results] == [(False, True), (True, False), (True, False)]
    history = learner.setup.store.history("fin")
    assert [h.version for h in history] == [1, 2, 3]  # tasks 0+1 in one version, task 2 (the last) in another
    pb = learner.setup.store.load("fin")
    by_content = {b.content: b for b in pb}
    assert [by_content[f"Learned rule number {i}."].sources[0].task_id for i in range(3)] == ["t0", "t1", "t2"]
    source = learner.setup.store.blame("fin", by_content["Learned rule number 1."].id)[0].source
    assert source is not None and source.task_id == "t1"


def test_a_batch_delta_that_conflicts_is_dropped_whole_and_recorded(tmp_path: Path, server: FakeOpenAIServer) -> None:
    ops = iter(
        [
            [{"type": "REMOVE", "id": "calc-00002"}],
            [{"type": "UPDATE", "id": "calc-00002", "content": "A rewritten rule to follow."}],
        ]
    )
    server.responder = roles(ops)
    learner = _learner(tmp_path, server, batch_size=2)
    _, second = learner.loop(ratio_tasks(2), "b").results
    assert second.error is not None
    assert second.error.startswith("batch: delta 2 of 2 dropped") and "calc-00002" in second.error
    pb = learner.setup.store.load("fin")
    assert "calc-00002" not in pb and learner.setup.store.head("fin").version == 2


def test_merge_deltas_is_whole_or_nothing_per_delta() -> None:
    pb = parse_ace(START_PB)
    d1 = Delta.parse(
        {"operations": [{"type": "TAG", "id": "calc-00002", "tag": "helpful"}], "source": {"task_id": "a"}}
    )
    d2 = Delta.parse(
        {
            "operations": [
                {"type": "ADD", "section": "Extra", "content": "A good lesson here."},
                {"type": "UPDATE", "id": "nope-1", "content": "x"},
            ],
            "source": {"task_id": "b"},
        }
    )
    merged = merge_deltas(pb, [d1, d2, d1])
    assert [i for i, _ in merged.rejected] == [1] and "nope-1" in merged.rejected[0][1]
    after = apply(pb, merged.delta).playbook
    assert after["calc-00002"].helpful == 2 and len(after) == len(pb)  # d2's ADD went with its bad UPDATE
    assert all(op.source == Source(task_id="a") for op in merged.delta.operations)


# -- wrapped agents -----------------------------------------------------------------------------------------------
def test_citations_are_the_playbook_ids_the_agent_mentions() -> None:
    pb = parse_ace(START_PB)
    assert citations(pb, "per [calc-00002] and sai-00001.", "calc-00002 again, and [zzz-00001]") == [
        "calc-00002",
        "sai-00001",
    ]


def test_a_compiled_langgraph_agent_runs_as_the_generator_and_only_its_citations_are_tagged(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    def agent_node(state: Any) -> dict[str, Any]:  # a plain dict (langgraph's stubs admit no dict[str, Any] input)
        system = state["messages"][0][1]
        assert "[calc-00002]" in system  # the playbook arrived as the system message
        return {"messages": [("assistant", "By [calc-00002]: (120 - 100) / 100 * 100"), ("assistant", "20")]}

    # a graph over a plain dict state, as an agent written without ACE might be: langgraph runs it, but its stubs
    # only admit a TypedDict, dataclass or pydantic state
    g = StateGraph(dict)  # type: ignore[type-var]
    g.add_node("agent", agent_node)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)

    def tag_both(body: dict[str, Any]) -> str:
        reply = json.loads(roles(iter([]))(body))
        if "bullet_tags" in reply:
            reply["bullet_tags"] = [{"id": "calc-00002", "tag": "helpful"}]
        return json.dumps(reply)

    server.responder = tag_both
    learner = _learner(tmp_path, server)
    learner.setup.generator = wrap_graph(g.compile())
    task = Task(id="pc", input="From 100 to 120: percentage change?", target="20")
    (record,) = learner.loop([task], "g").results
    assert record.correct is True and record.committed
    pb = learner.setup.store.load("fin")
    assert pb["calc-00002"].helpful == 1 and sum(b.helpful for b in pb) == 1


def test_calculator_is_arithmetic_only() -> None:
    assert calculate("(1,200 - 1000) / 1000 * 100") == pytest.approx(20.0)
    assert calculate("round(sqrt(16) + 2 ** 3, 2)") == 12.0
    for hostile in ["__import__('os').system('id')", "x + 1", "(1).__class__", "9 ** 9 ** 9", "1 / 0", "", "[1]"]:
        with pytest.raises(ToolError):
            calculate(hostile)


def test_icl_playbook_holds_the_solved_examples() -> None:
    pb = icl_playbook(ratio_tasks(5), 2)
    assert len(pb) == 2 and "A: 2" in render(pb) and "A: 4" in render(pb)


# -- ace run ----------------------------------------------------------------------------------------------------------
def _write_config(tmp: Path, server: FakeOpenAIServer, **extra: str) -> Path:
    tasks = tmp / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"input": t.input, "target": t.target}) + "\n" for t in ratio_tasks(3)))
    agent = tmp / "agent.py"
    agent.write_text(
        "from ace.loop.agents import wrap_callable\n"
        "from tests.test_runners import knows_the_rule\n"
        "def build(llm, budget):\n    return wrap_callable(knows_the_rule, budget=budget)\n"
    )
    cfg = tmp / "ace.toml"
    lines = [
        'name = "t"',
        f'provider = "openai:fake@{server.base_url}"',
        f'db = "sqlite:///{tmp / "cfg.db"}"',
        f'playbook = "{ROOT / "playbooks" / "finance.txt"}"',
        'agent = "agent.py:build"',
        'evaluator = "formula"',
        "[data]",
        'train = "tasks.jsonl"',
        'test = "tasks.jsonl"',
        'kind = "jsonl"',
        "[loop]",
        "max_rounds = 1",
        "[run]",
        'protocols = ["base", "icl", "offline", "online"]',
        "labels = [true, false]",
        *[f"{k} = {v}" for k, v in extra.items()],
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_ace_run_prints_the_protocol_table_and_writes_a_summary(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.syspath_prepend(str(ROOT))
    server.responder = roles(itertools.repeat(ADD_RULE))
    result = CliRunner().invoke(app, ["run", str(_write_config(tmp_path, server)), "--run-id", "rt"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "data" / "ace" / "runs" / "rt" / "summary.json").read_text())
    rows = {(r["method"], r["labels"]): r for r in summary["rows"]}
    assert set(rows) == {
        ("Base", None),
        ("ICL", True),
        *((m, lab) for m in ("ACE offline", "ACE online") for lab in (True, False)),
    }
    assert rows[("Base", None)]["accuracy"] == 0.0
    assert rows[("ACE offline", True)]["accuracy"] == 1.0  # trained on the stream, tested with the best version
    assert rows[("ACE online", True)]["accuracy"] == pytest.approx(2 / 3)
    assert "ACE offline" in result.output and "Adapt" in result.output

    # every learning run left a trajectory that verifies, and re-executes from its recorded responses
    work = tmp_path / "data" / "ace" / "runs" / "rt"
    trajectories = {p.name.removesuffix(".trajectory.jsonl"): p for p in work.glob("*.trajectory.jsonl")}
    assert {"rt.online.gt.stream", "rt.online.nogt.stream", "rt.offline.gt.e1-s0"} <= set(trajectories)
    assert all(replay(p).ok for p in trajectories.values())
    online_gt = trajectories["rt.online.gt.stream"]
    llm = LLM(RecordedProvider(online_gt))
    agent = load_agent(RunConfig.load(_write_config(tmp_path, server)), llm)  # the config's own agent, rebuilt
    again = rerun(online_gt, llm, PlaybookStore(f"sqlite:///{tmp_path / 'again.db'}"), workdir=tmp_path / "again",
                  generator=agent)  # fmt: skip
    assert len(again.steps) == 3 and again.reproduced == 3


def test_ace_run_rejects_a_bad_config_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nprotocols = ["base"]\n')  # a [run] key at the top level
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 1 and "protocols" in result.output
    bad.write_text("name = \n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 1 and "not valid TOML" in result.output


# -- the example agents on the real local model -----------------------------------------------------------------------
@pytest.mark.parametrize("example", ["tool_agent", "langgraph_agent"])
@pytest.mark.model
def test_example_agents_run_under_ace_run_with_the_local_model(
    tmp_path: Path, example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    cfg = RunConfig.load(ROOT / "examples" / example / "ace.toml")
    cfg.db = f"sqlite:///{tmp_path / 'ex.db'}"
    cfg.data.limit_test = 1
    cfg.run.protocols = ["online"]
    from rich.console import Console

    with (tmp_path / "out.txt").open("w") as out:
        summary = run_config(cfg, Console(file=out), run_id="ex")
    (row,) = summary["rows"]
    assert row["method"] == "ACE online" and row["n"] == 1 and row["adapt_tokens"] > 0
    store = PlaybookStore(cfg.db)
    assert store.verify(row["playbook"], namespace="runs") == store.head(row["playbook"], namespace="runs").version


def test_the_fair_baselines_see_what_fits_the_budget_and_nearest_needs_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#29's baselines on a stream where questions come back in other words: the nearest earlier episode's answer
    (no model), episodic retrieval and ICL with as many examples as fit the playbook's budget, and Base answering
    freely. The scripted provider (public test double) answers for the generator: the logic of the protocols is
    tested, not the model."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    rows = [("Which ledger code do refunds from Oslo use?", "LC-1001"),
            ("Which carrier ships returns from Bergen?", "Northmoor Haulage"),
            ("Oslo refunds are booked under which ledger code?", "LC-1001"),
            ("Which form approves invoices from Tromso?", "F-77"),
            ("Returns from Bergen ship with which carrier?", "Northmoor Haulage"),
            ("Invoices from Tromso are approved on which form?", "F-77")]  # fmt: skip
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps({"input": q, "target": a}) + "\n" for q, a in rows))
    cfg = tmp_path / "ace.toml"
    cfg.write_text("\n".join([
        'name = "b"', 'provider = "scripted:valid"', f'db = "sqlite:///{tmp_path / "b.db"}"', 'evaluator = "exact"',
        "[data]", 'test = "tasks.jsonl"', 'kind = "jsonl"',
        "[loop]", "max_rounds = 1", "playbook_budget = 40", "focus = 1", 'answers = "copy"', 'curation = "facts"',
        "[run]", 'protocols = ["base", "icl", "retrieval", "nearest"]', 'icl_shots = "fit"', 'icl_source = "previous"',
    ]) + "\n")  # fmt: skip
    result = CliRunner().invoke(app, ["run", str(cfg), "--run-id", "fair"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "data" / "ace" / "runs" / "fair" / "summary.json").read_text())
    got = {r["method"]: r for r in summary["rows"]}
    assert set(got) == {"Base", "ICL", "Retrieval", "Nearest episode"}
    nearest = got["Nearest episode"]
    assert nearest["outcomes"] == [False, False, True, False, True, True] and nearest["eval_tokens"] == 0
    assert 0 < got["Retrieval"]["examples"] <= 5 and 0 < got["ICL"]["examples"] <= 5
    assert got["ICL"]["examples"] < 2.5  # a 40-token budget holds about two examples, not all of them
    assert got["Base"]["eval_tokens"] > 0  # the model is asked even with nothing to copy


def test_the_roles_follow_the_provider_unless_the_config_says_which(tmp_path: Path) -> None:
    """#28 item 3: on the embedded model the built-in generator gets the settings measured to learn with it
    (focus 3, copied answers, copy-friendly curation) for each one the [loop] table leaves unset; other providers
    and your own agent keep the paper's roles; run.roles says which, whatever the provider."""
    from ace.app.experiments import RunConfig

    def load(top: str, loop: str = "", run: str = "") -> RunConfig:
        path = tmp_path / "c.toml"
        path.write_text(f'name = "x"\n{top}\n[data]\ntest = "t.jsonl"\nkind = "jsonl"\n[loop]\n{loop}\n[run]\n{run}\n')
        return RunConfig.load(path)

    def roles(c: RunConfig) -> tuple[int, str, str]:
        return c.loop.focus, c.loop.answers, c.loop.curation

    paper, embedded = (0, "free", "free"), (3, "copy", "facts")
    assert roles(load('provider = "local"')) == embedded
    assert roles(load('provider = "local:gemma3-270m"', "focus = 1")) == (1, "copy", "facts")
    assert roles(load('provider = "anthropic:claude-sonnet-4-5"')) == paper
    assert roles(load('provider = "local"\nagent = "agent.py:build"')) == paper
    assert roles(load('provider = "local"', run='roles = "paper"')) == paper
    assert roles(load('provider = "openai:m@http://h/v1"', run='roles = "embedded"')) == embedded
    assert roles(load('provider = "anthropic:claude-sonnet-4-5"', 'curation = "facts"').overridden(
        provider="local")) == embedded  # fmt: skip
    assert roles(load('provider = "local"', 'curation = "facts"').overridden(provider="anthropic:x")) == (
        0, "free", "facts")  # what the file set is kept  # fmt: skip

    # the paper's curator on the embedded model chooses its content (it cannot write a bullet the gate takes);
    # elsewhere it writes it; what the file sets is kept, and it follows a switch of provider
    def content(c: RunConfig) -> str:
        return c.loop.curator_content

    assert content(load('provider = "local"', run='roles = "paper"')) == "grounded"
    assert content(load('provider = "local"\nagent = "agent.py:build"')) == "grounded"
    assert content(load('provider = "anthropic:claude-sonnet-4-5"')) == "free"
    assert content(load('provider = "local"', 'curator_content = "free"', 'roles = "paper"')) == "free"
    assert content(load('provider = "local"', run='roles = "paper"').overridden(provider="anthropic:x")) == "free"
    assert content(load('provider = "anthropic:x"').overridden(provider="local:gemma3-270m")) == "free"  # auto: facts
    assert content(load('provider = "anthropic:x"', run='roles = "paper"').overridden(provider="local")) == "grounded"
    # ace run --provider passes the loop options (the command line's over the file's): the roles still follow the
    # provider for those neither set (an outside trial found the embedded settings kept on an API provider)
    local = load('provider = "local"')
    assert roles(local.overridden(provider="anthropic:x", loop=local.loop)) == paper
    assert roles(local.overridden(provider="anthropic:x", loop=replace(local.loop, focus=2))) == (2, "free", "free")
    # a command line's option is kept even when it equals what the file's roles gave (an outside trial: the flag
    # --curator-content grounded was dropped on a switch to an API provider)
    paper_local = load('provider = "local"', run='roles = "paper"')
    switched = paper_local.overridden(provider="anthropic:x", loop=paper_local.loop, given={"curator_content"})
    assert content(switched) == "grounded"
