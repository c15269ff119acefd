"""The real packaged models on llama.cpp (SmolLM2-135M-Instruct, the default, under its chat template; Gemma 3 270M,
a base model, as a transcript): through the ``local`` provider, and through the ``openai`` provider talking to a
real ``llama_cpp.server`` on 127.0.0.1. Short prompts; the models are small, so these tests check the machinery
(validated structure, usage, determinism), not the answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from ace.llm import LLM, LLMError, LLMResult, Message, ProviderError, Sampling, get_provider
from ace.llm.local import LocalProvider, default_model_path
from ace.llm.openai import OpenAIProvider
from ace.llm.structured import bound_schema
from tests.conftest import llama_server as start_llama_server

pytestmark = pytest.mark.model

pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")


class Cited(BaseModel):
    reasoning: str
    bullet_ids: list[str]
    final_answer: str


class Tagging(BaseModel):
    class BulletTag(BaseModel):
        id: str
        tag: str = Field(pattern="^(helpful|harmful|neutral)$")

    key_insight: str
    bullet_tags: list[BulletTag]


PROMPT = [
    Message("system", "Answer using the playbook. Cite the ids of the bullets you used.", cache=True),
    Message(
        "user",
        "Playbook:\n[calc-00002] Percentage change = (new - old) / old * 100.\n\n"
        "Question: revenue rose from 200 to 250. What is the percentage change?",
    ),
]


@pytest.fixture(scope="module", params=["local", "local:gemma3-270m"])
def llm(request: pytest.FixtureRequest) -> LLM:
    return LLM(request.param, sampling=Sampling(max_tokens=320))


def test_structured_output_from_the_real_model_validates(llm: LLM) -> None:
    result = llm.call(PROMPT, output=Cited, role="generator")
    assert isinstance(result.parsed, Cited)
    assert result.parsed.final_answer.strip() != "" or result.parsed.reasoning.strip() != ""
    assert result.usage.input_tokens > 20 and result.usage.output_tokens > 0
    assert result.provider == "local" and result.cost_usd == 0.0 and result.attempts == 1
    assert llm.ledger.by_role["generator"].output_tokens == result.usage.output_tokens


def test_nested_schema_with_a_pattern_validates(llm: LLM) -> None:
    result = llm.call(
        [Message("user", "Bullets cited: calc-00002. The answer was right. Tag each cited bullet.")],
        output=Tagging,
        role="reflector",
    )
    assert result.parsed is not None
    assert all(t.tag in ("helpful", "harmful", "neutral") for t in result.parsed.bullet_tags)


def test_greedy_decoding_is_deterministic_and_text_calls_work(llm: LLM) -> None:
    a: LLMResult[BaseModel] = llm.call("Name one prime number.", sampling=Sampling(max_tokens=12))
    b: LLMResult[BaseModel] = llm.call("Name one prime number.", sampling=Sampling(max_tokens=12))
    assert a.text == b.text and a.usage == b.usage
    assert a.parsed is None and 0 < a.usage.output_tokens <= 12


def test_async_call(llm: LLM) -> None:
    result = asyncio.run(llm.acall(PROMPT, output=Cited))
    assert isinstance(result.parsed, Cited)


def _largest(schema: dict[str, Any], node: dict[str, Any]) -> object:
    """The largest value a bounded schema allows: strings at maxLength, arrays at maxItems."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if "enum" in node:
        return max(node["enum"], key=lambda v: len(json.dumps(v)))
    if node.get("type") == "string":
        return "x" * node["maxLength"]
    if node.get("type") == "array":
        return [_largest(schema, node["items"]) for _ in range(node["maxItems"])]
    return {k: _largest(schema, v) for k, v in node.get("properties", {}).items()}


@pytest.mark.parametrize("model", [Cited, Tagging])
@pytest.mark.parametrize("max_tokens", [200, 256, 1000])
def test_bounded_schema_fits_the_token_budget(model: type[BaseModel], max_tokens: int) -> None:
    schema = bound_schema(model.model_json_schema(), max_tokens)
    biggest = json.dumps(_largest(schema, schema), separators=(", ", ": "))
    assert len(biggest) <= max_tokens  # one character per token: every generated token adds at least one
    assert "maxLength" not in json.dumps(model.model_json_schema())  # the input schema is not changed


def test_provider_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_provider("local"), LocalProvider)
    p = get_provider("openai:qwen@http://127.0.0.1:9/v1")
    assert isinstance(p, OpenAIProvider) and p.model == "qwen" and p.structured == "json_object"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="anthropic:claude-sonnet-4-5 needs an API key: set ANTHROPIC_API_KEY"):
        get_provider("anthropic:claude-sonnet-4-5")
    with pytest.raises(ProviderError, match="openai:gpt-4o-mini needs an API key"):
        get_provider("openai:gpt-4o-mini")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-key-for-this-test")  # constructing a client makes no request
    assert get_provider("anthropic:claude-sonnet-4-5").model == "claude-sonnet-4-5"
    with pytest.raises(Exception, match="unknown provider spec 'gemini:x'"):
        get_provider("gemini:x")


# -- the openai provider against a real llama_cpp.server ----------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_llama_server(default_model_path(), "gemma", tmp_path_factory.mktemp("llama-server")) as base:
        yield base


def test_openai_provider_against_a_real_llama_cpp_server(llama_server: str) -> None:
    llm = LLM(f"openai:gemma@{llama_server}", sampling=Sampling(max_tokens=200))
    result = llm.call(PROMPT, output=Cited, role="generator")
    assert isinstance(result.parsed, Cited)
    assert result.provider == "openai" and result.usage.input_tokens > 20 and result.usage.output_tokens > 0
    text: LLMResult[BaseModel] = llm.call("Say hello.", sampling=Sampling(max_tokens=8))
    assert isinstance(text.text, str) and text.usage.input_tokens > 0
    assert asyncio.run(llm.acall(PROMPT, output=Cited)).parsed is not None


# -- the default packaged model, SmolLM2-135M-Instruct, through its chat template --------------------------------
def test_named_local_models_resolve_and_an_unknown_name_is_a_clear_error() -> None:
    assert get_provider("local").model == "local:smollm2-135m"  # the default
    assert get_provider("local:gemma3-270m").model == "local"  # the name runs recorded with Gemma carry
    assert get_provider("local:smollm2-135m").model == "local:smollm2-135m"
    with pytest.raises(LLMError, match=r"unknown local model 'gpt5'.*gemma3-270m, smollm2-135m"):
        get_provider("local:gpt5")
    path_spec = LocalProvider(model_path="/models/x.gguf")
    assert path_spec.model_path is not None and path_spec.model_path.name == "x.gguf" and not path_spec.chat


def test_smollm2_answers_under_its_chat_template_with_a_valid_structure() -> None:
    smol = LLM("local:smollm2-135m", sampling=Sampling(max_tokens=96, temperature=0.0))
    messages = [
        Message("system", "Answer with the code the playbook gives. Cite the bullet ids you used."),
        Message("system", "PLAYBOOK:\n[conv-00001] A refund from the Oslo office uses ledger code R-551."),
        Message("user", "QUESTION:\nWhich ledger code does a refund from the Oslo office use?"),
    ]
    result = smol.call(messages, output=Cited, role="generator")
    assert isinstance(result.parsed, Cited) and result.model == "local:smollm2-135m"
    assert result.usage.input_tokens > 20 and result.usage.output_tokens > 0
    again = smol.call(messages, output=Cited, role="generator")
    assert again.parsed == result.parsed  # temperature 0, fixed seed: the same answer
    plain: LLMResult[BaseModel] = smol.call([*messages, Message("user", "Reply with the code only.")])
    assert "User:" not in plain.text and "<|im_end|>" not in plain.text  # the template's end of turn ends it


def test_a_nul_in_the_prompt_or_an_option_and_a_prompt_past_the_context_are_clear_errors_not_a_crash() -> None:
    """From an outside trial: a NUL in a question (copied into a copied answer's options, hence the grammar) aborted
    the process inside llama.cpp (SIGABRT), and a 100 KB question raised a ValueError that ended the whole run.
    Now the NUL reaches neither the prompt nor the grammar (U+FFFD instead), and a prompt past the context is an
    LLMError: the step fails with its reason, the run goes on."""
    from typing import Literal

    class Pick(BaseModel):
        answer: Literal["db-east-07", "port\x00 8443"]

    llm = LLM(LocalProvider(), sampling=Sampling(max_tokens=32))
    try:
        got = llm.call([Message("user", "Which\x00 host? Options: db-east-07 or port 8443.")], output=Pick).parsed
        assert got is not None and got.answer == "db-east-07"
    except LLMError as e:  # the model chose the option whose NUL became U+FFFD: refused by validation, no crash
        assert "answer" in str(e)
    with pytest.raises(LLMError, match="context of 4096 tokens"):
        llm.call([Message("user", "word " * 20_000)])


def test_options_that_quote_or_escape_decode_under_a_grammar_that_parses() -> None:
    """A grounded curator's statement that quoted the question ('Question: "A bakery ..." Answer: → 1.5') ended its
    literal early in llama-cpp-python's grammar (it escapes a quote but not a backslash); llama.cpp could not parse
    the grammar and the process crashed while sampling (SIGSEGV in an example agent's run). Every such option now
    decodes, and JSON-parses to itself."""
    from typing import Literal

    options = ('Question: "A bakery?" Answer: → 1.5', "C:\\temp and a tab\tinside", 'emoji 😀 and "quotes"')

    class Pick(BaseModel):
        content: Literal[options]  # type: ignore[valid-type]

    llm = LLM(LocalProvider(), sampling=Sampling(max_tokens=64))
    for option in options:
        got = llm.call([Message("user", f"Repeat exactly: {option}")], output=Pick).parsed
        assert isinstance(got, Pick) and got.content in options


def test_the_grammar_is_the_converters_own_wherever_it_parsed_before_and_a_bad_grammar_is_an_error() -> None:
    """The fixed converter changes only what did not parse (a quote or a backslash in a literal): for everything
    else its grammar is llama-cpp-python's (non-ASCII as the character itself, as the converter's \\uXXXX read), so
    recorded runs decode the same. A grammar llama.cpp cannot parse is an LLMError, not a crash."""
    from typing import Literal

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from ace.llm.local import checked_grammar, schema_grammar

    class Plain(BaseModel):
        action: Literal["ADD", "UPDATE facts-00001", "NONE"]
        section: str = Field(pattern=r"^[A-Za-z]{3,24}( [A-Za-z&-]{1,24}){0,4}$")
        ids: list[str]

    schema = Plain.model_json_schema()
    assert schema_grammar(schema) == json_schema_to_gbnf(json.dumps(schema))

    class Arrow(BaseModel):
        fact: Literal["Where is the Oslo office? → Karl Johans gate 1"]

    arrow = schema_grammar(Arrow.model_json_schema())
    assert "→" in arrow and "\\u2192" not in arrow
    assert "\\u2192" in json_schema_to_gbnf(json.dumps(Arrow.model_json_schema()))  # the same character, escaped
    # an operations list that must stay empty (a grounded curator with nothing to choose): `list[Any]`'s `items: {}`
    # made the converter raise KeyError('prefixItems'), which ended a whole run as an internal error
    ops = {"type": "array", "items": {}, "maxItems": 0}
    empty = {"type": "object", "properties": {"ops": ops}, "required": ["ops"]}
    assert 'ops ::= "[" space  "]" space' in schema_grammar(empty)
    with pytest.raises(LLMError, match="could not be made a grammar"):
        schema_grammar({"type": "no such type"})
    llama = LocalProvider().llama()
    assert checked_grammar(llama, arrow) == arrow
    with pytest.raises(LLMError, match="could not parse the output grammar"):
        checked_grammar(llama, 'root ::= "unclosed')
