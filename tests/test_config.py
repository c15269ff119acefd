"""Configuration as one object (issue #23): :class:`LoopConfig` is the one definition of every loop option, and
the TOML ``[loop]`` section, the CLI, the entry points and the run's record all derive from it, so adding an option
touches the config and its use, nothing else."""

from __future__ import annotations

import inspect
import json
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from typer.testing import CliRunner

from ace.app.experiments import Experiment, LoopSection, RunConfig
from ace.cli import app
from ace.config import UNSET, LoopConfig, legacy_config, option_names, option_types, options
from ace.errors import ConfigError
from ace.llm import LLM, LLMError
from ace.llm.testing import ScriptedProvider
from ace.loop import RunResult, RunSetup
from ace.playbook import Playbook
from ace.runs import runners
from ace.runs.trajectory import load
from ace.store import PlaybookStore
from ace.tasks import Task, exact


def _other(name: str, default: Any) -> Any:
    """A valid value of option ``name`` that is not its default, found from its type alone."""
    kind = option_types()[name]
    if kind is bool:
        return not default
    if get_origin(kind) is Literal:
        return next(v for v in get_args(kind) if v != default)
    return (default or 0) + 1  # an int, or int | None


def _non_defaults() -> dict[str, Any]:
    """Every option at a value other than its default (ground truth stays: ``run.labels`` picks it)."""
    return {f.name: _other(f.name, f.default) for f in options() if f.name != "ground_truth"}


def _toml(values: dict[str, Any]) -> str:
    return (
        f'name = "t"\nprovider = "{API}"\n[loop]\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        + PAPER_TOML
    )


# the paper's roles whatever the provider: with run.roles = "auto" (the default) the embedded model's measured
# settings fill in what [loop] leaves unset (tests/test_runners.py), and the paper's curator chooses its content on
# the embedded model; here the options' own defaults are the point, so the provider is an API's
PAPER = {"roles": "paper"}
API = "anthropic:claude-sonnet-4-5"
PAPER_TOML = '[run]\nroles = "paper"\n'


# -- (a) the TOML loader takes every option under its own name, with the same default --------------------------------
def test_every_option_is_a_toml_key_with_the_same_default(tmp_path: Path) -> None:
    assert RunConfig.model_validate({"name": "t", "provider": API, "run": PAPER}).loop.config() == LoopConfig()
    for f in options():
        default = RunConfig.model_validate({"name": "t", "provider": API, "loop": {}, "run": PAPER}).loop
        assert getattr(default, f.name) == f.default, f.name
        value = _other(f.name, f.default)
        given = {f.name: value, **({"focus": 1} if f.name == "answers" else {})}  # copying needs focused bullets
        labels = {"run": {**PAPER, "labels": [False]}} if f.name == "ground_truth" else {"run": PAPER}
        loaded = RunConfig.model_validate({"name": "t", "provider": API, "loop": given, **labels}).loop
        assert getattr(loaded, f.name) == value and getattr(loaded.config(), f.name) == value, f.name
    path = tmp_path / "all.toml"
    path.write_text(_toml(_non_defaults()))
    assert RunConfig.load(path).loop.config() == LoopConfig(**_non_defaults())


def test_the_loop_section_refuses_an_unknown_key_and_a_bad_value_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    for body, named in [
        ("max_roundz = 2", "loop.max_roundz"),
        ("max_rounds = 0", "max_rounds must be at least 1"),
        ('answers = "copy"', "set focus >= 1"),
        ('curation = "nonsense"', "loop.curation"),
    ]:
        path.write_text(f'name = "t"\n[loop]\n{body}\n{PAPER_TOML}')
        with pytest.raises(ConfigError, match=named):
            RunConfig.load(path)
    path.write_text(f'name = "t"\n[loop]\nground_truth = false\n{PAPER_TOML}')  # the labels would contradict it
    with pytest.raises(ConfigError, match=r"run\.labels"):
        RunConfig.load(path)


# -- (b) adding a field is enough: nothing lists the options by hand --------------------------------------------------
def test_nothing_lists_the_options_by_hand() -> None:
    names = set(option_names())
    assert names == {f.name for f in fields(LoopConfig)} and all(f.metadata["doc"] for f in options())
    # the TOML section is LoopConfig plus the experiment's own settings: it declares none of the options itself
    assert issubclass(LoopSection, LoopConfig) and not names & set(LoopSection.__annotations__)
    assert names < {f.name for f in fields(LoopSection)}
    # what a run records is every option
    assert set(LoopConfig().to_dict()) == names
    # the CLI makes one option per field (ace run takes them all, over the config's)
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert all(f"--{n.replace('_', '-')}" in help_text for n in names), help_text
    # the CLI helper names no option: its source mentions none of them
    from ace.cli import options as cli_options

    source = inspect.getsource(cli_options)
    assert not [n for n in names if n in source]
    # the entry points take config whole; an option's own name is there only as a deprecated keyword (not given)
    from ace.envs.textworld import play_series
    from ace.runs.from_logs import learn
    from ace.service.worker import Worker

    for entry in (runners.evaluate, learn, play_series, Worker):
        params = inspect.signature(entry).parameters
        assert "config" in params, entry
        for name, p in params.items():
            if name in names or name in ("budget", "copy"):
                assert p.default is UNSET, (entry, name)


# -- (c) the old keyword names still work, with a DeprecationWarning, for one release --------------------------------
def test_old_keywords_map_onto_the_config_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"evaluate\(budget=, copy=\) is deprecated"):
        cfg = legacy_config(LoopConfig(focus=2), "evaluate", budget=300, copy=True, focus=UNSET)
    assert cfg == LoopConfig(focus=2, playbook_budget=300, answers="copy")
    with pytest.warns(DeprecationWarning):
        assert legacy_config(None, "evaluate", budget=None, copy=False).playbook_budget is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing given the old way: no warning
        assert legacy_config(None, "learn", LoopConfig(max_rounds=1), batch_size=UNSET) == LoopConfig(max_rounds=1)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="max_tokens"):
        legacy_config(None, "evaluate", max_tokens=3)


def test_evaluate_takes_config_and_its_old_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def generate(llm: LLM, task: Task, pb: Playbook, **kw: Any) -> Any:
        seen.append(kw)
        raise LLMError("scripted away")

    monkeypatch.setattr(runners, "generate", generate)
    kw: dict[str, Any] = {"llm": LLM(ScriptedProvider([])), "playbook": Playbook.empty(), "evaluator": exact}
    tasks = [Task(id="a", input="q", target="t")]
    runners.evaluate(tasks, config=LoopConfig(playbook_budget=50, focus=2, answers="copy", layout="sections"), **kw)
    with pytest.warns(DeprecationWarning, match="evaluate"):
        runners.evaluate(tasks, budget=50, focus=2, copy=True, layout="sections", **kw)
    expected = {"budget": 50, "focus": 2, "copy": True, "layout": "sections", "relevance": "bm25"}
    assert seen == [expected, expected]


def test_learn_worker_and_play_series_take_config_and_their_old_keywords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ace.envs import textworld
    from ace.runs import from_logs
    from ace.service.worker import Worker

    setups: list[RunSetup] = []

    def start(setup: RunSetup, tasks: Any, **kw: Any) -> Any:
        setups.append(setup)
        return RunResult(kw["run_id"], [], resumed=False)

    monkeypatch.setattr(from_logs, "start", start)
    monkeypatch.setattr(textworld, "start", start)
    monkeypatch.setattr(textworld, "as_tasks", lambda games: [])
    store = PlaybookStore(f"sqlite:///{tmp_path / 'c.db'}")
    llm = LLM(ScriptedProvider([]))
    common: dict[str, Any] = {"run_id": "r", "workdir": tmp_path}

    from_logs.learn([], llm, store, "p", config=LoopConfig(batch_size=4, curation="facts"), **common)
    with pytest.warns(DeprecationWarning, match=r"learn\(batch_size=, curation=\)"):
        from_logs.learn([], llm, store, "p", batch_size=4, curation="facts", **common)
    # a logged answer is not retried: one round, whatever the config says
    assert setups[0].config == setups[1].config == LoopConfig(max_rounds=1, batch_size=4, curation="facts")

    textworld.play_series([], llm, store, "p", config=LoopConfig(learn=False, max_rounds=2), **common)
    with pytest.warns(DeprecationWarning, match="play_series"):
        textworld.play_series([], llm, store, "p", learn=False, max_rounds=2, **common)
    textworld.play_series([], llm, store, "p", **common)  # its default: one round per game
    assert setups[2].config == setups[3].config == LoopConfig(learn=False, max_rounds=2)
    assert setups[4].config == LoopConfig(max_rounds=1)

    queue: Any = None
    w = Worker(store, queue, llm=lambda: llm, workdir=tmp_path, config=LoopConfig(curation="facts"))
    with pytest.warns(DeprecationWarning, match="Worker"):
        old = Worker(store, queue, llm=lambda: llm, workdir=tmp_path, curation="facts", playbook_budget=10)
    assert w.config == LoopConfig(curation="facts") and old.config == replace(w.config, playbook_budget=10)


def test_the_cli_builds_one_config_and_checks_it_before_loading_anything(tmp_path: Path) -> None:
    logs = tmp_path / "none.jsonl"
    logs.write_text("")
    r = CliRunner().invoke(app, ["learn", str(logs), "--curation", "nonsense"])
    assert r.exit_code == 2 and "--curation" in r.output
    r = CliRunner().invoke(app, ["learn", str(logs), "--batch-size", "0"])
    assert r.exit_code == 2 and "--batch-size" in r.output
    config = tmp_path / "ace.toml"
    config.write_text(f'name = "t"\n{PAPER_TOML}')
    r = CliRunner().invoke(app, ["run", str(config), "--answers", "copy"])  # over the config's focus = 0
    assert r.exit_code == 2 and "focus" in r.output
    r = CliRunner().invoke(app, ["run", str(config), "--no-ground-truth"])  # the config's labels are [true]
    assert r.exit_code == 1 and "run.labels" in r.output


# -- (d) TOML -> LoopConfig -> the config a run records -> the same LoopConfig ----------------------------------------
def test_a_toml_loop_section_round_trips_through_the_recorded_run(tmp_path: Path) -> None:
    values = _non_defaults()
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": ["unused"], "cycle": True}))
    path = tmp_path / "ace.toml"
    path.write_text(
        f'name = "t"\nprovider = "scripted:{script}"\ndb = "sqlite:///{tmp_path / "r.db"}"\n'
        "[data.conventions]\nfacts = 2\nquestions = 4\n" + _toml(values).split("\n", 2)[2]
    )
    cfg = RunConfig.load(path)
    config = cfg.loop.config()
    assert config == LoopConfig(**values)
    from rich.console import Console

    with (tmp_path / "out.txt").open("w") as out:
        experiment = Experiment(cfg, Console(file=out), run_id="rt", data_dir=tmp_path)
        learner = experiment._learner("online", True)  # the learning run `ace run` makes
        learner.loop([], "empty")  # a run over no tasks: its trajectory records how it was configured
    (trajectory,) = (tmp_path / "runs" / "rt").glob("*.trajectory.jsonl")
    recorded = load(trajectory).header["run"]["config"]
    assert recorded == config.to_dict() and LoopConfig.from_dict(recorded) == config
    # the summary records the [loop] section as loaded, which loads again to the same config
    dumped = cfg.model_dump(mode="json")["loop"]
    assert (
        RunConfig.model_validate({"name": "t", "provider": API, "loop": dumped, "run": PAPER}).loop.config() == config
    )
