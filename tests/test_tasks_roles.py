"""Tasks, evaluators and the paper's finance loaders; the three roles with the real local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace.llm import LLM, Sampling
from ace.llm.cassette import Cassette
from ace.llm.local import LocalProvider
from ace.loop.roles import (
    BulletTag,
    CuratorOutput,
    GeneratorOutput,
    Reflection,
    cited,
    curate,
    generate,
    reflect,
    tag_delta,
)
from ace.playbook import DeltaError, Source, TagOp, apply
from ace.playbook.formats import parse_ace
from ace.tasks import EVALUATORS, Feedback, Task, accuracy, exact, load_finance, numeric, parse_number, tags

PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "finance.txt"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.0", 2.0),
        ("The ratio is 2.00.", 2.0),
        ("$1,234.50", 1234.5),
        ("-0.2", -0.2),
        ("(3.5)", -3.5),
        ("12.5%", 12.5),
        (".75", 0.75),
        ("no number", None),
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_numeric_exact_and_tag_evaluators() -> None:
    t = Task(id="t", input="q", target="27432.79")
    assert numeric()(t, "27432.79").correct and numeric()(t, "$27,432.785").correct
    wrong = numeric()(t, "27432.5")
    assert wrong.correct is False and wrong.message == "answered 27432.5, expected 27432.8"
    assert numeric()(t, "I do not know").message.startswith("the answer 'I do not know' contains no number")
    assert numeric()(Task(id="u", input="q"), "3").correct is None  # no ground truth: execution feedback only
    assert exact(Task(id="e", input="q", target="Paris"), " paris ").correct
    f = tags(Task(id="f", input="q", target="A,B,C,D"), "A, X ,C")
    assert (f.correct, f.score) == (False, 0.5) and "#2: expected B, got X" in f.message and "#4" in f.message
    assert accuracy([Feedback(correct=True), Feedback(correct=False), Feedback(correct=None)]) == 0.5


def test_finance_loaders_read_the_papers_files(shared_data: Path) -> None:
    finance = shared_data / "finance"
    train = load_finance(finance / "formula_train_subset_500.jsonl")
    assert len(train) == 500 and train[0].target == "2.0" and train[0].metadata["kind"] == "formula"
    assert len(load_finance(finance / "formula_val_subset_300.jsonl")) == 300
    finer = load_finance(finance / "finer_val_batched_500_samples.jsonl", limit=30)
    target = finer[0].target
    assert len(finer) == 30 and finer[0].metadata["kind"] == "finer" and target is not None
    assert len(target.split(",")) == 4
    assert EVALUATORS["finer"](finer[0], target).correct
    # every target scores as correct
    assert all(t.target is not None and EVALUATORS["formula"](t, t.target).correct for t in train)


def test_a_malformed_task_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "formula.jsonl"
    bad.write_text('{"context": "q", "target": "1"}\n{"question": "no context"}\n')
    with pytest.raises(ValueError, match="line 2: expected"):
        load_finance(bad)


# -- roles: pure parts ----------------------------------------------------------------------------------------
def test_only_cited_bullets_get_tags() -> None:
    pb = parse_ace(PLAYBOOK.read_text())
    out = GeneratorOutput(
        reasoning="r", bullet_ids=["calc-00002", "ghost-1", "calc-00002", "mis-00005"], final_answer="1"
    )
    assert cited(pb, out) == ["calc-00002", "mis-00005"]
    refl = Reflection(
        reasoning="",
        error_identification="",
        root_cause_analysis="",
        correct_approach="",
        key_insight="",
        bullet_tags=[
            BulletTag(id="calc-00002", tag="helpful"),
            BulletTag(id="fmt-00007", tag="harmful"),  # not cited
            BulletTag(id="mis-00005", tag="neutral"),
        ],
    )
    delta = tag_delta(pb, out, refl, Source(task_id="t-1", step=4))
    assert all(isinstance(op, TagOp) for op in delta.operations)
    tag_ops = [op for op in delta.operations if isinstance(op, TagOp)]
    assert [(op.id, op.tag) for op in tag_ops] == [("calc-00002", "helpful"), ("mis-00005", "neutral")]
    after = apply(pb, delta).playbook
    changed = {b.id for b in after if b != pb[b.id]}
    assert changed == {"calc-00002", "mis-00005"} and after["calc-00002"].helpful == 1
    assert after["calc-00002"].updated_step == 4


def test_curator_output_becomes_a_delta_and_bad_ids_are_rejected_whole() -> None:
    pb = parse_ace(PLAYBOOK.read_text())
    good = CuratorOutput.model_validate(
        {
            "reasoning": "r",
            "operations": [
                {"type": "ADD", "section": "FORMULAS AND CALCULATIONS", "content": "ROI = (gain - cost) / cost."},
                {"type": "UPDATE", "id": "mis-00006", "content": "Round only the final answer."},
            ],
        }
    )
    out = apply(pb, good.to_delta(Source(task_id="t", step=1))).playbook
    assert out["calc-00009"].sources[0].task_id == "t" and out["mis-00006"].content == "Round only the final answer."
    bad = CuratorOutput.model_validate(
        {
            "reasoning": "r",
            "operations": [
                {"type": "ADD", "section": "Extra", "content": "A fine lesson here."},
                {"type": "REMOVE", "id": "nope-00001"},
            ],
        }
    )
    with pytest.raises(DeltaError, match=r"operation 1 \(REMOVE\): unknown bullet id .nope-00001."):
        apply(pb, bad.to_delta())


# -- roles with the real local model --------------------------------------------------------------------------
@pytest.mark.model
def test_one_step_through_the_three_roles_with_the_real_model(tmp_path: Path, shared_data: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")
    tape = tmp_path / "step.jsonl"
    llm = LLM(Cassette(tape, LocalProvider(), mode="record"), sampling=Sampling(max_tokens=160))
    pb = parse_ace(PLAYBOOK.read_text())
    task = load_finance(shared_data / "finance" / "formula_train_subset_500.jsonl", limit=1)[0]

    gen = generate(llm, task, pb, budget=300)
    assert isinstance(gen.parsed, GeneratorOutput)
    feedback = EVALUATORS["formula"](task, gen.parsed.final_answer)
    # the reflector is shown only what the generator cited: here calc-00002, forced for the check
    forced = gen.parsed.model_copy(update={"bullet_ids": ["calc-00002"]})
    refl = reflect(llm, task, pb, forced, feedback)
    assert isinstance(refl.parsed, Reflection)
    cur = curate(llm, pb, refl.parsed, budget=300)
    assert isinstance(cur.parsed, CuratorOutput)

    requests = [json.loads(line)["request"] for line in tape.read_text().splitlines()]
    reflector_prompt = requests[1]["messages"][-1]["content"]
    assert "[calc-00002]" in reflector_prompt and "[mis-00006]" not in reflector_prompt
    assert f"EXPECTED ANSWER: {task.target}" in reflector_prompt
    assert requests[0]["messages"][1]["cache"] is True  # the playbook is the cacheable prefix
    assert set(llm.ledger.by_role) == {"generator", "reflector", "curator"}
