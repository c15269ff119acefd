"""Record with the real local model, replay with no model: identical parsed outputs and usage; misses are loud."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from ace.llm import LLM, CassetteMiss, LLMError, LLMResult, Message, Sampling
from ace.llm.cassette import Cassette, request_hash
from ace.llm.local import LocalProvider
from ace.llm.types import Request, Usage

pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")


class Answer(BaseModel):
    reasoning: str
    final_answer: str


CALLS: list[tuple[list[Message], type[BaseModel] | None]] = [
    ([Message("user", "What is 3 + 4? Think, then answer.")], Answer),
    ([Message("user", "Name a colour.")], None),
    ([Message("user", "Name a colour.")], None),  # the same request twice replays in order
    ([Message("system", "Be brief.", cache=True), Message("user", "What is the capital of Italy?")], Answer),
]


def run(llm: LLM) -> list[tuple[str, str | None, Usage]]:
    out: list[tuple[str, str | None, Usage]] = []
    for messages, output in CALLS:
        r = llm.call(messages, output=output, sampling=Sampling(max_tokens=64))
        out.append((r.text, r.parsed.model_dump_json() if r.parsed else None, r.usage))
    return out


@pytest.mark.model
def test_record_then_replay_without_a_model(tmp_path: Path) -> None:
    tape = tmp_path / "run.jsonl"
    recorded = run(LLM(Cassette(tape, LocalProvider(), mode="record")))
    lines = tape.read_text().splitlines()
    assert len(lines) == 4
    entry = json.loads(lines[0])
    assert set(entry) == {"hash", "provider", "request", "response", "check"} and entry["provider"] == "local"

    replay_llm = LLM(Cassette(tape, mode="replay"))  # no provider at all
    assert run(replay_llm) == recorded
    assert replay_llm.ledger.usage == sum((u for _, _, u in recorded), start=Usage())


@pytest.mark.model
def test_replay_miss_fails_loudly_naming_the_call(tmp_path: Path) -> None:
    tape = tmp_path / "run.jsonl"
    run(LLM(Cassette(tape, LocalProvider(), mode="record")))
    llm = LLM(Cassette(tape, mode="replay"))
    with pytest.raises(CassetteMiss, match=r"no recorded response for this call for Answer ending 'What is 5 \+ 5\?'"):
        llm.call([Message("user", "What is 5 + 5?")], output=Answer, sampling=Sampling(max_tokens=64))
    # a recorded request replayed more often than it was recorded is a miss too
    replay = LLM(Cassette(tape, mode="replay"))
    for _ in range(2):
        replay.call([Message("user", "Name a colour.")], sampling=Sampling(max_tokens=64))
    with pytest.raises(CassetteMiss):
        replay.call([Message("user", "Name a colour.")], sampling=Sampling(max_tokens=64))


@pytest.mark.model
def test_auto_mode_records_only_what_is_missing(tmp_path: Path) -> None:
    tape = tmp_path / "run.jsonl"
    first: LLMResult[BaseModel] = LLM(Cassette(tape, LocalProvider(), mode="record")).call(
        "Name a colour.", sampling=Sampling(max_tokens=8)
    )
    auto = LLM(Cassette(tape, LocalProvider(), mode="auto"))
    assert auto.call("Name a colour.", sampling=Sampling(max_tokens=8)).text == first.text
    auto.call("Name a fruit.", sampling=Sampling(max_tokens=8))
    assert len(tape.read_text().splitlines()) == 2
    assert asyncio.run(LLM(Cassette(tape, mode="replay")).acall("Name a fruit.", sampling=Sampling(max_tokens=8)))


def test_hash_covers_messages_sampling_and_schema() -> None:
    base = Request((Message("user", "x"),))
    assert request_hash(base) == request_hash(Request((Message("user", "x"),)))
    assert request_hash(base) != request_hash(Request((Message("user", "y"),)))
    assert request_hash(base) != request_hash(Request((Message("user", "x"),), Sampling(max_tokens=7)))
    assert request_hash(base) != request_hash(Request((Message("user", "x", cache=True),)))
    assert request_hash(base) != request_hash(Request((Message("user", "x"),), schema={"type": "object"}))


def test_a_corrupt_or_missing_cassette_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="no cassette at"):
        Cassette(tmp_path / "none.jsonl", mode="replay")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hash": "abc", "response": {}}\nnot json\n')
    with pytest.raises(LLMError, match="line 1: not a valid recorded call"):
        Cassette(bad, mode="replay")
    with pytest.raises(LLMError, match="needs a provider to record from"):
        Cassette(bad, mode="record")


def test_an_older_cassette_without_checks_replays_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ace.llm.testing import ScriptedProvider

    tape = tmp_path / "old.jsonl"
    LLM(Cassette(tape, ScriptedProvider(["red", "blue"]), mode="record")).call([Message("user", "Name a colour.")])
    entries = [json.loads(line) for line in tape.read_text().splitlines()]
    tape.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "check"}) + "\n" for e in entries))
    with caplog.at_level("WARNING", logger="ace.llm.cassette"):
        llm = LLM(Cassette(tape, mode="replay"))
    assert [r.message for r in caplog.records] == [f"cassette {tape}: 1 entries have no check (an older cassette): "
                                                   "not verified"]  # fmt: skip
    assert llm.call([Message("user", "Name a colour.")]).text == "red"
    entries[0]["response"]["text"] = "green"  # with its check kept: an edit is refused
    tape.write_text(json.dumps(entries[0]) + "\n")
    with pytest.raises(LLMError, match="the response was edited"):
        Cassette(tape, mode="replay")
