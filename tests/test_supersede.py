"""A changed fact is an UPDATE of the bullet that stated it (issue #25 item 2, #29's facts that update): the pure
rule (:mod:`ace.playbook.supersede`), what it must never do (overwrite another fact), and the loop applying it to a
curator's delta (scripted curator: the rule is code, not the model)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ace.playbook import AddOp, Delta, RemoveOp, TagOp, UpdateOp, apply
from ace.playbook.formats import parse_ace
from ace.playbook.supersede import consolidate, statement, supersede, superseded_by

PB = parse_ace(
    "## RULES\n"
    "[rul-00001] Refunds from Oslo use ledger code LC-4471.\n"
    "[rul-00002] Returns from Oslo use ledger code LC-5000.\n"
    "[rul-00003] Invoices over 500 EUR need form F-12.\n"
    "[rul-00004] Use `get_user(id)` before `delete_user`.\n"
    "## FACTS\n"
    "[fct-00005] Which carrier ships from Bergen \u2192 Northmoor Haulage\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("From now on, refunds from Oslo use ledger code LC-9999.", ("rul-00001", "lc-4471", "lc-9999")),
        ("Correction: Returns from Oslo use ledger code LC-5001", ("rul-00002", "lc-5000", "lc-5001")),
        ("Invoices over 750 EUR need form F-12.", ("rul-00003", "500", "750")),
        ("Use `get_user(uid)` before `delete_user`.", ("rul-00004", "get_user(id)", "get_user(uid)")),
        ("Which carrier ships from Bergen? \u2192 Saltmere Transport", ("fct-00005", "northmoor haulage",
                                                                      "saltmere transport")),
    ],
)  # fmt: skip
def test_a_restated_bullet_with_one_value_changed_is_found(text: str, expected: tuple[str, str, str]) -> None:
    assert superseded_by(PB, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Refunds from Bergen use ledger code LC-4471.",  # another subject
        "Refunds from Oslo use ledger code LC-4471.",  # the same statement: not a change
        "Invoices over 750 EUR need form F-13.",  # two values changed: another rule
        "Invoices over 500 EUR need form F-12 and a receipt.",  # more said: another statement
        "Refunds from Oslo use ledger code.",  # no value
        "Which carrier ships from Tromso \u2192 Saltmere Transport",  # a fact about another subject
        "Refunds from Oslo use ledger code LC-4471 and LC-4472.",  # a value added
        "[rul-00001] \u2028 ledger code LC-1",  # hostile text: no crash, no match
    ],
)
def test_another_statement_is_left_an_add(text: str) -> None:
    assert superseded_by(PB, text) is None
    ops, done = supersede(PB, [AddOp(section="RULES", content=text)])
    assert done == [] and isinstance(ops[0], AddOp)


def test_an_ambiguous_restatement_stays_an_add() -> None:
    twice = parse_ace("## R\n[r-00001] Refunds use code LC-1.\n[r-00002] Refunds use code LC-2.\n")
    assert superseded_by(twice, "Refunds use code LC-3.") is None  # which of the two is meant is not clear


def test_supersede_rewrites_the_add_as_an_update_with_the_old_value_in_its_source() -> None:
    new = AddOp(section="RULES", content="Refunds from Oslo use ledger code LC-9999.")
    ops, done = supersede(PB, [TagOp(id="rul-00003", tag="helpful"), new])
    assert [d.bullet for d in done] == ["rul-00001"] and done[0].index == 1
    assert isinstance(ops[0], TagOp) and isinstance(ops[1], UpdateOp) and ops[1].id == "rul-00001"
    assert ops[1].source is not None and ops[1].source.note == "supersedes 'lc-4471' with 'lc-9999'"
    after = apply(PB, Delta(operations=ops)).playbook
    assert after["rul-00001"].content == "Refunds from Oslo use ledger code LC-9999." and len(after) == len(PB)
    # a bullet another operation already changes or removes is left to it
    ops2, done2 = supersede(PB, [RemoveOp(id="rul-00001"), new])
    assert done2 == [] and isinstance(ops2[1], AddOp)


_WORDS = ["refunds", "returns", "from", "oslo", "bergen", "use", "ledger", "code", "need", "form", "invoices", "over"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), min_size=2, max_size=7), st.lists(st.sampled_from(_WORDS), min_size=2,
       max_size=7), st.integers(1000, 9999), st.integers(1000, 9999))  # fmt: skip
def test_never_a_different_statement(a: list[str], b: list[str], x: int, y: int) -> None:
    """Property: two bullets whose words differ are never one superseding the other, whatever their values."""
    old, new = " ".join(a) + f" LC-{x}.", " ".join(b) + f" LC-{y}."
    pb = parse_ace(f"## R\n[r-00001] {old}\n")
    hit = superseded_by(pb, new)
    same_words = statement(old) is not None and statement(old)[0] == statement(new)[0]  # type: ignore[index]
    assert (hit is not None) == (same_words and x != y)


def test_the_loop_commits_a_changed_fact_as_an_update_and_blame_shows_both_values(tmp_path: Any) -> None:
    from ace.llm import LLM
    from ace.llm.testing import ScriptedProvider
    from ace.loop import LoopConfig
    from ace.runs.factory import RunSetup, start
    from ace.store import PlaybookStore
    from ace.tasks import Task
    from ace.tasks.conventions import conventions

    store = PlaybookStore(f"sqlite:///{tmp_path / 's.db'}")
    store.create("p", PB)
    lesson = "From now on, refunds from Oslo use ledger code LC-9999."
    replies: list[Any] = [
        {"reasoning": "", "bullet_ids": [], "final_answer": "LC-4471"},
        {"reasoning": "", "error_identification": "old code", "root_cause_analysis": "the rule changed",
         "correct_approach": "use LC-9999", "key_insight": "Oslo refunds now use LC-9999", "bullet_tags": []},
        {"reasoning": "", "operations": [{"type": "ADD", "section": "RULES", "content": lesson}]},
    ]  # fmt: skip
    task = Task(id="q1", input="Which code do refunds from Oslo use?", target="LC-9999")
    for flag, expected in ((False, len(PB) + 1), (True, len(PB))):
        store2 = PlaybookStore(f"sqlite:///{tmp_path / f'{flag}.db'}")
        store2.create("p", PB)
        llm = LLM(ScriptedProvider(list(replies)))
        setup = RunSetup(llm, store2, "p", conventions, config=LoopConfig(max_rounds=1, supersede=flag))
        start(setup, [task], run_id=f"r{flag}", workdir=tmp_path / f"w{flag}")
        head = store2.load("p")
        assert len(head) == expected
        if flag:
            assert head["rul-00001"].content == lesson
            blame = store2.blame("p", "rul-00001")
            assert [e.op for e in blame][-1] == "UPDATE"
            v = store2.history("p")[-1]
            assert v.delta is not None and "supersedes 'lc-4471' with 'lc-9999'" in str(v.delta.operations[-1].source)
            assert "LC-4471" in store2.load("p", 1)["rul-00001"].content  # the old value stays in history
        store2.close()
    store.close()


A = "\u2192"
FACTS = parse_ace(
    "## FACTS\n"
    f"[fct-00001] Which carrier ships refunds from the Oslo office {A} Northmoor Haulage\n"
    f"[fct-00002] Which carrier ships returns from the Bergen office {A} Northmoor Haulage\n"
    f"[fct-00003] Which ledger code do refunds from Oslo use {A} LC-4471\n"
    f"[fct-00004] Which ledger code do returns from Oslo use {A} LC-5000\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Refunds booked at the Oslo office are posted under which ledger code {A} LC-4471", "fct-00003"),
        ("Refunds from Oslo use ledger code LC-4471.", "fct-00003"),  # a rule stating the same code
        (f"Which carrier ships refunds from the Oslo office? {A} Northmoor Haulage", "fct-00001"),
        (f"Which ledger code do refunds from Tromso use {A} LC-4471", None),  # another name: not the same fact
        (f"Which carrier ships returns from the Oslo office {A} Northmoor Haulage", None),  # a name shared by facts
        (f"Which carrier ships refunds from the Tromso office {A} Northmoor Haulage", None),
        (f"Which ledger code do refunds from Oslo use {A} LC-9999", None),  # another value: supersede's case
    ],
)
def test_a_fact_said_again_in_other_words_is_found_and_another_fact_is_not(text: str, expected: str | None) -> None:
    from ace.playbook.supersede import duplicate_of

    assert duplicate_of(FACTS, text) == expected


def test_consolidate_tags_the_bullet_a_lesson_says_again_and_updates_the_one_it_changes() -> None:
    from ace.playbook.supersede import consolidate

    again = AddOp(section="FACTS", content=f"Refunds booked at the Oslo office use which ledger code {A} LC-4471")
    changed = AddOp(section="FACTS", content=f"Which ledger code do returns from Oslo use {A} LC-5001")
    new = AddOp(section="FACTS", content=f"Which ledger code do refunds from Tromso use {A} LC-7000")
    ops, swapped, dups = consolidate(FACTS, [again, again, changed, new])
    assert [d.bullet for d in dups] == ["fct-00003", "fct-00003"] and [s.bullet for s in swapped] == ["fct-00004"]
    assert [(op.type, getattr(op, "id", None)) for op in ops] == [("TAG", "fct-00003"), ("UPDATE", "fct-00004"),
                                                                   ("ADD", None)]  # fmt: skip
    after = apply(FACTS, Delta(operations=ops)).playbook
    assert len(after) == len(FACTS) + 1 and after["fct-00003"].helpful == 1


def test_bullets_per_fact_counts_the_bullets_that_state_each_distinct_answer() -> None:
    from ace.runs.runners import facts_held
    from ace.tasks import Task

    tasks = [
        Task(id=str(i), input="q", target=t)
        for i, t in enumerate(["LC-4471", "lc-4471 ", "LC-5000", "Northmoor Haulage", "LC-44"])
    ]
    held = facts_held(FACTS, tasks)  # LC-44 is no fact stated (LC-4471 is another word); the carrier twice
    assert (held.facts, held.bullets) == (3, 4) and held.per_fact == pytest.approx(4 / 3)
    assert "4 bullet(s) state 3 distinct fact(s)" in str(held)
    assert facts_held(FACTS, []).per_fact is None


def test_a_knowledge_update_the_environment_announces_updates_the_bullet_with_the_old_value(tmp_path: Any) -> None:
    """The environment says the fact changed and from what (a JSONL row's ``replaces``): the lesson, whatever
    words its subject is in, becomes an UPDATE of the bullet stating the old value."""
    import json

    from ace.playbook.supersede import consolidate
    from ace.tasks import exact, load_tasks

    path = tmp_path / "t.jsonl"
    row = {"input": "Oslo refunds: which ledger code now?", "target": "LC-9999", "replaces": "LC-4471",
           "feedback": "the ledger was renumbered in May"}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    (task,) = load_tasks(path)
    fb = exact(task, "LC-4471")
    assert fb.replaces == "LC-4471" and not fb.correct
    assert fb.message == "expected 'LC-9999' (it replaces 'LC-4471'); the ledger was renumbered in May"
    assert exact(task, "LC-9999").message == "correct"
    lesson = AddOp(section="FACTS", content=f"Oslo refunds: which ledger code now {A} LC-9999")
    assert consolidate(FACTS, [lesson])[0][0].type == "ADD"  # another subject's words: without the hint, an ADD
    ops, _, _ = consolidate(FACTS, [lesson], replaces=fb.replaces)
    (op,) = ops
    assert isinstance(op, UpdateOp) and op.id == "fct-00003" and op.source is not None
    assert op.source.note == "supersedes 'lc-4471' (the environment said so)"
    assert consolidate(FACTS, [lesson], replaces="LC-0000")[0][0].type == "ADD"  # no bullet states that value


def test_a_number_that_labels_a_lesson_is_not_a_value() -> None:
    """A "Lesson 2: ..." beside a "Lesson 1: ..." is another lesson, not lesson 1 with its number changed."""
    pb = parse_ace("## R\n[r-00001] Lesson 1: examine the cookbook first.\n[r-00002] Step 3: retry up to 5 times.\n")
    assert superseded_by(pb, "Lesson 2: examine the cookbook first.") is None
    assert superseded_by(pb, "Step 4: retry up to 5 times.") is None
    assert superseded_by(pb, "Step 3: retry up to 7 times.") == ("r-00002", "5", "7")


def test_a_question_starting_with_i_is_the_same_fact_in_other_words() -> None:
    """From a run on a user's JSONL: "I need to call oncology at the Harrow clinic. Which extension → x4747" beside
    "What is the phone extension of the oncology desk at Harrow → x4747" (the capital I is no name)."""
    from ace.playbook.supersede import duplicate_of

    pb = parse_ace(f"## F\n[f-00001] What is the phone extension of the oncology desk at Harrow {A} x4747\n")
    assert duplicate_of(pb, f"I need to call oncology at the Harrow clinic. Which extension {A} x4747") == "f-00001"
    assert duplicate_of(pb, f"I need to call oncology at the Linden clinic. Which extension {A} x4747") is None


# -- a fact's wordings, and the phrasing learned from them --------------------------------------------------------
MRI = "Which billing code does a knee MRI at the Harrow clinic use"
MRI_2 = "A patient gets a knee MRI at Harrow. What do we bill it under?"
MRI_3 = "What is the billing code for the knee MRI at Harrow?"
CODES = parse_ace(
    "## FACTS\n"
    f"[f-00001] {MRI} {A} BC-1234\n"
    f"[f-00002] A patient gets a dental cleaning at Linden. What do we bill it under {A} BC-5892\n"
    f"[f-00003] Who is on call for cardiology on weekdays {A} Dr. Ines Galloway\n"
    f"[f-00004] Which vendor supplies face masks to the north region {A} Alder Medical\n"
)


def test_a_fact_asked_in_new_words_keeps_them_as_another_wording_up_to_the_limit() -> None:
    from ace.playbook.focus import fact, with_wording, wordings

    ops, _, dups = consolidate(CODES, [AddOp(section="FACTS", content=fact(MRI_2, "BC-1234"))], asked=MRI_2, wordings=3)
    assert [d.bullet for d in dups] == ["f-00001"]
    assert [(op.type, getattr(op, "id", None)) for op in ops] == [("UPDATE", "f-00001"), ("TAG", "f-00001")]
    after = apply(CODES, Delta(operations=ops)).playbook
    assert after["f-00001"].content == f"{MRI} | {MRI_2.rstrip('?')} {A} BC-1234" and after["f-00001"].helpful == 1
    assert wordings(after["f-00001"].content) == [MRI, MRI_2.rstrip("?")]
    assert with_wording(after["f-00001"].content, "Which billing code does the knee MRI at Harrow use?") is None
    assert with_wording(after["f-00001"].content, MRI_3, limit=2) is None  # the limit
    assert with_wording("Check the units first.", MRI_3) is None  # not a fact bullet
    # wordings=1 (runs recorded before): a TAG only; no question given: a TAG only
    again = [AddOp(section="FACTS", content=fact(MRI_2, "BC-1234"))]
    assert [op.type for op in consolidate(CODES, again, asked=MRI_2, wordings=1)[0]] == ["TAG"]
    assert [op.type for op in consolidate(CODES, again)[0]] == ["TAG"]


def test_a_wording_separator_in_a_question_is_no_new_wording() -> None:
    from ace.playbook.focus import with_wording, wordings

    richer = with_wording(f"{MRI} {A} BC-1234", "knee MRI | Harrow | bill?")
    assert richer is not None and wordings(richer) == [MRI, "knee MRI Harrow bill"]


def test_a_changed_value_keeps_the_facts_wordings_and_takes_the_new_one() -> None:
    ops, _, _ = consolidate(CODES, [AddOp(section="FACTS", content=f"{MRI_3.rstrip('?')} {A} BC-9999")],
                            replaces="BC-1234", asked=MRI_3, wordings=3)  # fmt: skip
    (op,) = ops
    assert isinstance(op, UpdateOp) and op.id == "f-00001"
    assert op.content == f"{MRI} | {MRI_3.rstrip('?')} {A} BC-9999"
    # the copy-friendly curator chose the UPDATE itself: the same, when its target states the replaced value
    chosen = UpdateOp(id="f-00001", content=f"{MRI_3.rstrip('?')} {A} BC-9999")
    (op,) = consolidate(CODES, [chosen], replaces="BC-1234", asked=MRI_3, wordings=3)[0]
    assert isinstance(op, UpdateOp) and op.content == f"{MRI} | {MRI_3.rstrip('?')} {A} BC-9999"
    elsewhere = UpdateOp(id="f-00002", content=f"{MRI_3.rstrip('?')} {A} BC-9999")  # not the replaced value's
    assert consolidate(CODES, [elsewhere], replaces="BC-1234", asked=MRI_3, wordings=3)[0] == [elsewhere]


def test_a_plain_name_fact_in_other_words_is_the_one_the_question_finds_first() -> None:
    """A doctor's name may answer several facts, so sharing it is not enough; the question finding that bullet first
    is (the ranking the generator uses)."""
    from ace.playbook.focus import fact

    asked = "A cardiology emergency comes in on weekdays. Which doctor do we page?"
    ops, _, dups = consolidate(CODES, [AddOp(section="FACTS", content=fact(asked, "Dr. Ines Galloway"))],
                               asked=asked, wordings=3)  # fmt: skip
    assert [d.bullet for d in dups] == ["f-00003"] and ops[0].type == "UPDATE"
    other = "Who is on call for dermatology on weekends?"  # the same doctor, another fact: its own bullet
    ops, _, dups = consolidate(CODES, [AddOp(section="FACTS", content=fact(other, "Dr. Ines Galloway"))],
                               asked=other, wordings=3)  # fmt: skip
    assert not dups and [op.type for op in ops] == ["ADD"]


def test_the_phrasing_learned_from_wordings_does_not_count_when_ranking() -> None:
    """Before: "A patient gets a ... What do we bill it under" finds the other fact asked in those words first.
    Once one code fact holds two wordings, their differing words are phrasing and the question's subject decides."""
    from ace.playbook.query import focused, paraphrase_terms

    question = "A patient gets a ECG at Linden. What do we bill it under?"
    other = parse_ace(
        "## FACTS\n"
        f"[f-00001] Which billing code does a ECG at the Linden clinic use {A} BC-3634\n"
        f"[f-00002] A patient gets a dental cleaning at Linden. What do we bill it under {A} BC-5892\n"
        f"[f-00003] A patient gets a ECG at Quarry Hill. What do we bill it under {A} BC-8184\n"
        f"[f-00004] Which billing code does a ECG at the Ostrava clinic use {A} BC-1111\n"
    )
    assert focused(other, question, 1)[0][0].id != "f-00001"  # the phrasing wins
    learned = apply(other, Delta(operations=[UpdateOp(
        id="f-00004", content=f"Which billing code does a ECG at the Ostrava clinic use | "
        f"A patient gets a ECG at Ostrava. What do we bill it under {A} BC-1111")])).playbook  # fmt: skip
    assert {"patient", "clinic"} <= paraphrase_terms(learned) and "ostrava" not in paraphrase_terms(learned)
    assert focused(learned, question, 1)[0][0].id == "f-00001"
    # a plain name's wordings teach no phrasing: two facts may share one
    shared = parse_ace(f"## F\n[f-00001] Which vendor sends masks | Which vendor sends gloves {A} Alder Medical\n")
    assert paraphrase_terms(shared) == frozenset()
    assert focused(learned, "", 3) == [] and focused(learned, "knee", 0) == []


def test_a_contraction_starting_a_question_names_nothing() -> None:
    """From a run on a logistics family: "I'm picking pallet wrap in Ingleby - what's the bin location" took "I'm"
    for a name the other wording lacked, and kept a second bullet for the same code."""
    from ace.playbook.supersede import duplicate_of

    pb = parse_ace(f"## F\n[f-00001] Which bin holds pallet wrap at Ingleby {A} C37-8\n")
    assert duplicate_of(pb, f"I'm picking pallet wrap in Ingleby - what's the bin location {A} C37-8") == "f-00001"
    assert duplicate_of(pb, f"Let's see: which bin holds pallet wrap at Ingleby {A} C37-8") == "f-00001"
    assert duplicate_of(pb, f"I'm picking pallet wrap in Holloway - what's the bin location {A} C37-8") is None


def test_rules_version_2_takes_no_sentence_first_word_of_a_question_for_a_name() -> None:
    """From a held-out registrar family: "Students sitting the spring Cell Biology final — where do they go → B-403"
    beside "I need the room number for the Cell Biology examination in the spring term. → B-403" took "Students" for
    a name the other lacked, and kept a second bullet per room (1.6 bullets per fact). Version 1 (runs recorded
    before) still does; a name inside the sentence still tells facts apart; a rule bullet is read as before."""
    from ace.playbook.supersede import duplicate_of

    pb = parse_ace(f"## F\n[f-00001] I need the room number for the Cell Biology examination in the spring term. "
                   f"{A} B-403\n")  # fmt: skip
    again = f"Students sitting the spring Cell Biology final \u2014 where do they go {A} B-403"
    assert duplicate_of(pb, again, version=2) == "f-00001"
    assert duplicate_of(pb, again, version=1) is None
    assert duplicate_of(pb, f"Students sitting the spring Cell Chemistry final {A} B-403", version=2) is None
    # after a sentence's end, a wording separator or a dash, the next first word is no name either
    assert duplicate_of(pb, f"Spring term. Students taking Cell Biology go where {A} B-403", version=2) == "f-00001"
    # a name at a sentence's start that is also inside a sentence stays a name
    rules = parse_ace("## R\n[r-00001] Refunds from Oslo use ledger code LC-4471.\n")
    assert duplicate_of(rules, "Tromso refunds use ledger code LC-4471.", version=2) is None


def test_rules_version_2_finds_the_same_valued_bullet_among_the_questions_first_three() -> None:
    """A plain-name fact asked in other words whose bullet the question ranks second (another fact's wording ranks
    first) is that bullet's wording under version 2, a new bullet under version 1; a bullet stating the value
    that shares fewer than two terms beyond phrasing with the question is not."""
    from ace.playbook.focus import fact

    pb = parse_ace(
        "## F\n"
        f"[f-00001] Who is on call for cardiology on weekdays {A} Dr. Ines Galloway\n"
        f"[f-00002] Which doctor do we page for cardiology emergencies on weekends {A} Dr. Omar Reyes\n"
    )
    asked = "Which doctor do we page for a cardiology emergency on weekdays?"
    from ace.playbook.query import focused

    assert [b.id for b, _ in focused(pb, asked, 2)] == ["f-00002", "f-00001"]  # the other fact's wording first
    add = [AddOp(section="F", content=fact(asked, "Dr. Ines Galloway"))]
    ops, _, dups = consolidate(pb, add, asked=asked, wordings=3, version=2)
    assert [d.bullet for d in dups] == ["f-00001"] and [op.type for op in ops] == ["UPDATE", "TAG"]
    assert [op.type for op in consolidate(pb, add, asked=asked, wordings=3, version=1)[0]] == ["ADD"]
    lone = "Who covers dermatology on weekdays?"  # one shared term (weekdays) beyond the plain words: another fact
    ops, _, dups = consolidate(pb, [AddOp(section="F", content=fact(lone, "Dr. Ines Galloway"))], asked=lone,
                               wordings=3, version=2)  # fmt: skip
    assert not dups and [op.type for op in ops] == ["ADD"]
