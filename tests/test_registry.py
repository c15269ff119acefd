"""Evaluators and generators rebuilt by name (ace.loop.registry), the run factory's file names, and the demo
trajectory recorded before the redesign re-executed by today's code with every version hash reproduced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ace.errors import ConfigError
from ace.llm import LLM
from ace.loop import LoopContext, RunSetup
from ace.loop.registry import evaluator_from_spec, generator_from_spec, register_evaluator, registered
from ace.runs.factory import RunFiles
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.trajectory import replay
from ace.runs.workspace import file_stem
from ace.store import PlaybookStore
from ace.tasks import Feedback, Task, exact, numeric, tags

ROOT = Path(__file__).resolve().parent.parent
BEFORE = ROOT / "tests" / "fixtures" / "demo-before-redesign.trajectory.jsonl"


@pytest.mark.parametrize("evaluator", [numeric(abs_tol=0.5, rel_tol=0.01), exact, tags])
def test_a_built_in_evaluator_is_rebuilt_from_its_spec(evaluator: Any) -> None:
    again = evaluator_from_spec(evaluator.spec)
    assert again.spec == evaluator.spec  # type: ignore[attr-defined]
    task = Task(id="t", input="q", target="10")
    for answer in ("10", "10.3", "10.2, x", "eleven"):
        assert again(task, answer) == evaluator(task, answer)


def test_environments_are_found_through_their_entry_points_without_being_imported_first() -> None:
    found = registered()
    assert {"logged"} <= set(found["evaluators"]) & set(found["generators"])
    logged = evaluator_from_spec({"name": "logged"})
    fb = Feedback(correct=True, score=1.0, message="won")
    task = Task(id="t", input="q", metadata={"outcome": fb.model_dump_json()})
    assert logged(task, "whatever") == fb
    assert generator_from_spec({"name": "logged"}, _no_model()).spec == {"name": "logged"}  # type: ignore[attr-defined]


def test_textworld_is_rebuilt_by_name_when_its_extra_is_installed() -> None:
    pytest.importorskip("textworld", reason="the textworld extra is not installed")
    evaluator = evaluator_from_spec({"name": "textworld", "max_moves": 7})
    assert evaluator.spec == {"name": "textworld", "max_moves": 7}  # type: ignore[attr-defined]
    player = generator_from_spec({"name": "textworld", "max_moves": 9, "history": 2}, _no_model())
    assert player.spec["max_moves"] == 9 and player.spec["history"] == 2  # type: ignore[attr-defined]


def test_an_unknown_name_says_what_is_registered_and_a_new_one_can_be_registered() -> None:
    with pytest.raises(ConfigError, match=r"unknown evaluator 'length-judge'; registered: .*exact.*numeric"):
        evaluator_from_spec({"name": "length-judge"})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        evaluator_from_spec({"threshold": 3})

    class Judge:
        def __init__(self, threshold: int) -> None:
            self.threshold = threshold
            self.spec = {"name": "length-judge", "threshold": threshold}

        def __call__(self, task: Task, answer: str) -> Feedback:
            return Feedback(correct=len(answer) >= self.threshold)

    register_evaluator("length-judge", Judge)
    assert evaluator_from_spec({"name": "length-judge", "threshold": 3})(Task(id="t", input="q"), "abcd").correct


def test_a_run_description_names_rebuildable_parts_and_leaves_your_own_out(tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'd.db'}")

    def mine(task: Task, answer: str) -> Feedback:
        return Feedback(correct=None)

    ctx = LoopContext(RunSetup(_no_model(), store, "p", numeric()), [], "r")
    described = ctx.describe()
    assert described.evaluator == {"name": "numeric", "abs_tol": 0.01, "rel_tol": 0.0}
    assert described.generator == {"name": "llm"}
    ctx.evaluator, ctx.generator = mine, lambda task, pb, hint: None  # type: ignore[assignment, return-value]
    assert ctx.describe().evaluator is None and ctx.describe().generator is None


@pytest.mark.parametrize(
    ("run_id", "stem"),
    [
        ("demo-1", "demo-1"),
        ("exp:offline:gt:e1-s0", "exp.offline.gt.e1-s0"),
        ("../../etc/passwd", "_.._.._etc_passwd"),
        ("/abs/path", "_abs_path"),
        (".hidden", "_.hidden"),
        ("", "_"),
        ("a b\u2028c", "a_b_c"),
    ],
)
def test_run_files_are_named_after_the_run_id_and_stay_in_the_work_directory(
    tmp_path: Path, run_id: str, stem: str
) -> None:
    assert file_stem(run_id) == stem
    files = RunFiles(tmp_path, run_id)
    for path in (files.trajectory, files.checkpoints, files.calls):
        assert path.parent == tmp_path and path.name.startswith(stem)


def test_the_demo_trajectory_recorded_before_the_redesign_re_executes_with_every_version_reproduced(
    tmp_path: Path,
) -> None:
    assert replay(BEFORE).ok
    store = PlaybookStore(f"sqlite:///{tmp_path / 'again.db'}")
    report = rerun(BEFORE, LLM(RecordedProvider(BEFORE)), store, workdir=tmp_path / "again")
    assert len(report.steps) == 3 and report.reproduced == 3, [s.live_error for s in report.steps]
    assert [s.live_version for s in report.steps] == [s.recorded_version for s in report.steps] == [2, 3, 4]
    assert replay(report.trajectory).ok  # and today's trajectory of it verifies in turn


class _NoModel:
    """A provider that fails if called: these tests build parts, they never generate."""

    name = model = "none"

    def complete(self, request: Any) -> Any:
        raise AssertionError("no model call expected")

    async def acomplete(self, request: Any) -> Any:
        raise AssertionError("no model call expected")


def _no_model() -> LLM:
    return LLM(_NoModel())
