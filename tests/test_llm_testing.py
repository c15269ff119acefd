"""The public scripted provider (``ace.llm.testing``, issue #23): a test double for logic that has nothing to do
with the model. Each behaviour a test relies on is checked here once: order, JSON replies, exceptions (an outage
the LLM layer retries), exhaustion as a clear error, function-driven replies, recorded calls, threads, async, and
a script loaded from a file for another process."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from ace.llm import LLM, LLMError, ProviderError, get_provider
from ace.llm.testing import TEXT_REPLY, ScriptedProvider, ScriptExhausted, valid_reply
from ace.llm.types import Message, Request


class Answer(BaseModel):
    final_answer: str
    bullet_ids: list[str] = []


def test_replies_in_order_and_every_call_recorded() -> None:
    p = ScriptedProvider(["one", {"final_answer": "42"}, Answer(final_answer="x", bullet_ids=["a-1"])])
    llm = LLM(p)
    assert llm.call("q1").text == "one"
    assert llm.call("q2", Answer).parsed == Answer(final_answer="42")
    assert llm.call("q3", Answer).parsed == Answer(final_answer="x", bullet_ids=["a-1"])
    assert [c.messages[-1].content for c in p.calls] == ["q1", "q2", "q3"]
    assert p.calls[1].schema is not None and p.remaining == 0
    assert llm.ledger.usage.output_tokens > 0  # usage reaches the ledger


def test_an_exhausted_script_is_a_clear_error_not_a_hang() -> None:
    llm = LLM(ScriptedProvider(["only"]), retries=0)
    llm.call("a")
    with pytest.raises(ScriptExhausted, match="1 replies are used up"):
        llm.call("b")
    assert issubclass(ScriptExhausted, LLMError)


def test_a_retryable_provider_error_is_retried_by_the_llm_layer() -> None:
    outage = ProviderError("connection refused", retryable=True)
    p = ScriptedProvider([outage, outage, "back"])
    llm = LLM(p, retries=4, sleep=lambda _s: None)
    assert llm.call("q").text == "back" and len(p.calls) == 3


def test_a_malformed_reply_is_repaired_from_the_next_one() -> None:
    p = ScriptedProvider(["not json {", '{"final_answer": "7"}'])
    assert LLM(p).call("q", Answer).parsed == Answer(final_answer="7")


def test_function_driven_replies_see_the_request() -> None:
    def reply(request: Request) -> object:
        if request.schema_name:
            return {"final_answer": request.messages[-1].content.upper()}
        return "plain"

    llm = LLM(ScriptedProvider(reply))
    assert llm.call("abc", Answer).parsed == Answer(final_answer="ABC")
    assert llm.call("abc").text == "plain"


def test_cycle_repeats_and_threads_share_one_provider() -> None:
    p = ScriptedProvider(["a", "b"], cycle=True)
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            t = p.complete(Request(messages=()))
            with lock:
                seen.append(t.text)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(p.calls) == 200 and sorted(set(seen)) == ["a", "b"] and seen.count("a") == 100


def test_async_twin() -> None:
    p = ScriptedProvider(["x"])
    assert asyncio.run(LLM(p).acall("q")).text == "x"


def test_a_bad_reply_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="scripted reply"):
        ScriptedProvider([3.5]).complete(Request(messages=()))


def test_a_script_from_a_file_for_another_process(tmp_path: Path) -> None:
    f = tmp_path / "script.json"
    f.write_text(json.dumps({"replies": ["r1", {"final_answer": "2"}], "cycle": True}))
    p = get_provider(f"scripted:{f}")
    assert isinstance(p, ScriptedProvider)
    assert [p.complete(Request(messages=())).text for _ in range(3)] == ["r1", '{"final_answer": "2"}', "r1"]
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(LLMError, match="not JSON"):
        get_provider(f"scripted:{tmp_path / 'bad.json'}")
    with pytest.raises(LLMError, match="cannot read"):
        get_provider(f"scripted:{tmp_path / 'missing.json'}")
    for bad, said in [
        ('{"x": 1}', "unknown key\\(s\\) 'x'"),
        ('{"replies": "valid", "cylce": true}', "unknown key\\(s\\) 'cylce'"),
        ('{"replies": 3}', '"replies" is a list of replies or "valid"'),
        ('{"replies": [], "cycle": "yes"}', '"cycle" is true or false'),
        ('{"replies": "valid", "delay_s": -1}', '"delay_s" is a number of seconds from 0 to 600, not -1'),
        ('{"replies": "valid", "delay_s": NaN}', '"delay_s" is a number of seconds'),
        ('{"replies": "valid", "delay_s": 1e308}', '"delay_s" is a number of seconds'),
        ("7", "a script is a JSON list"),
    ]:
        (tmp_path / "obj.json").write_text(bad)
        with pytest.raises(LLMError, match=said):
            get_provider(f"scripted:{tmp_path / 'obj.json'}")
    with pytest.raises(LLMError, match="delay_s is a number of seconds"):
        ScriptedProvider(["a"], delay_s=float("nan"))


def test_valid_reply_answers_every_role_of_the_loop_without_a_script() -> None:
    """The roles' real output models (ids and spans constrained to enums, discriminated unions, nested models,
    bounded lists) each get a reply that validates; a text request gets a sentence."""
    from ace.loop.roles.outputs import (
        FactReflection,
        curator_output,
        fact_curation,
        fact_reflection,
        generator_output,
        reflection,
    )

    models = [
        generator_output(("shr-00001", "shr-00002")),
        reflection(("shr-00001",)),
        curator_output(("shr-00001", "shr-00002")),
        fact_reflection(("shr-00001",), ("refunds from Oslo use",), ("LC-4471", "LC-9")),
        fact_curation(("ADD", "UPDATE shr-00001", "NONE")),
    ]
    llm = LLM(ScriptedProvider(valid_reply))
    for model in models:
        parsed = llm.call("answer", output=model).parsed
        assert isinstance(parsed, model)
    fact = llm.call("x", output=models[3]).parsed
    assert isinstance(fact, FactReflection)
    assert fact.value == "LC-4471" and fact.subject == "refunds from Oslo use"  # the first option of each enum
    assert llm.call("hello").text == TEXT_REPLY
    assert get_provider("scripted:valid").complete(Request((Message("user", "hi"),))).text == TEXT_REPLY
