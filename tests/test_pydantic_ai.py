"""ACE for Pydantic AI (ace.integrations.pydantic_ai): an agent with the AcePlaybook capability reads the serving
playbook in its instructions (the text Service.prompt gives every front end) and each finished run is queued as
an episode, which a worker learns a new version from. The model is Pydantic AI's own test doubles, ``TestModel``
and ``FunctionModel`` (a boundary we do not own: they stand in for the model provider, not for our code); the
worker's model is ACE's scripted provider (``ace.llm.testing``). No model is loaded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ace.errors import UsageError
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.playbook import parse_ace
from ace.service.auth import Grant
from ace.service.core import Service
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore

pytest.importorskip("pydantic_ai", reason="Pydantic AI is the 'pydantic-ai' extra")

from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from ace.integrations.pydantic_ai import AcePlaybook, chat_messages, latest_prompt

START = parse_ace(
    "## BILLING RULES\n"
    "[br-00001] Refunds are possible for 30 days after delivery.\n"
    "[br-00002] Invoices are paged: fetch every page before summing.\n"
)


@pytest.fixture
def store(tmp_path: Path) -> PlaybookStore:
    s = PlaybookStore(f"sqlite:///{tmp_path / 'pai.db'}")
    s.create("support", START, namespace="team-a")
    return s


def lookup_order(order: int) -> str:
    """Look an order up."""
    return f"order {order}: delivered 40 days ago"


def refund_model(seen: list[str | None]) -> FunctionModel:
    """The provider's stand-in: calls the lookup tool, then answers from what it returned (and keeps the
    instructions it was sent)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info.instructions)
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("lookup_order", {"order": 7}, tool_call_id="call-1")])
        return ModelResponse(parts=[TextPart("No: order 7 was delivered 40 days ago, past the 30 days.")])

    return FunctionModel(respond)


def test_the_instructions_are_the_prompt_every_front_end_gives(store: PlaybookStore) -> None:
    seen: list[str | None] = []
    ace = AcePlaybook(store, "support", namespace="team-a", send=False, query=False)
    agent = Agent(refund_model(seen), instructions="You answer billing questions.", capabilities=[ace])
    agent.tool_plain(lookup_order)
    result = agent.run_sync("Can I get a refund for order 7?")
    want = Service(store).prompt(Grant.local("test", ["team-a"]), "team-a", "support").text
    assert seen[0] == "You answer billing questions.\n\n" + want.rstrip("\n")  # Pydantic AI trims the end
    assert seen[1] == seen[0]  # the second model request of the run: the same version, read once
    assert "[br-00001]" in want and result.output.startswith("No:")


def test_a_run_is_queued_as_an_episode_and_a_worker_learns_a_version(store: PlaybookStore, tmp_path: Path) -> None:
    seen: list[str | None] = []
    ace = AcePlaybook(
        store,
        "support",
        namespace="team-a",
        task="Refund questions",
        outcome=lambda out: {"success": "30 days" in out, "message": "the refund window is 30 days"},
    )
    agent = Agent(refund_model(seen), instructions="You answer billing questions.", capabilities=[ace])
    agent.tool_plain(lookup_order)
    agent.run_sync("Can I get a refund for order 7?")
    sent = ace.last_episode
    assert sent is not None and sent.status == "queued"
    log = sent.log
    assert log["playbook_version"] == 1 and log["task"] == "Refund questions"
    assert log["outcome"] == {"success": True, "message": "the refund window is 30 days"}
    assert log["messages"] == [
        {"role": "user", "content": "Can I get a refund for order 7?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call-1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"order":7}'}}]},
        {"role": "tool", "tool_call_id": "call-1", "content": "order 7: delivered 40 days ago"},
        {"role": "assistant", "content": "No: order 7 was delivered 40 days ago, past the 30 days."},
    ]  # fmt: skip
    assert "# playbook team-a/support v1" not in json.dumps(log)  # the instructions are not part of the episode
    llm = LLM(ScriptedProvider(valid_reply))
    done = Worker(store, EpisodeQueue(store), llm=lambda: llm, workdir=tmp_path / "runs").run_once()
    assert done is not None and done.status == "done" and done.committed, done
    assert store.head_version("support", namespace="team-a") == 2
    # the next run reads the new version
    agent.run_sync("And order 8?")
    assert ace.last_episode is not None and ace.last_episode.log["playbook_version"] == 2


def test_without_an_outcome_the_run_is_sent_without_one_and_send_false_waits_for_report(store: PlaybookStore) -> None:
    ace = AcePlaybook(store, "support", namespace="team-a")
    Agent(TestModel(custom_output_text="Refunds: 30 days."), capabilities=[ace]).run_sync("Refund window?")
    assert ace.last_episode is not None and "outcome" not in ace.last_episode.log
    held = AcePlaybook(store, "support", namespace="team-a", send=False)
    with pytest.raises(UsageError, match="no finished run"):
        held.report(True)
    Agent(TestModel(custom_output_text="Refunds: 60 days."), capabilities=[held]).run_sync("Refund window?")
    assert held.last_episode is None and held.last_run is not None  # kept, not sent
    sent = held.report({"success": False, "message": "the customer was told 60 days; it is 30"}, episode_id="r-1")
    assert sent.episode_id == "r-1" and sent.log["outcome"]["success"] is False
    queued = Service(store).queue.list(namespace="team-a")
    assert "r-1" in {e.episode_id for e in queued} and len(queued) == 2


def test_the_read_uses_the_runs_prompt_as_its_query_once_per_run(store: PlaybookStore) -> None:
    service = Service(store)
    asked: list[Any] = []
    prompt = service.prompt

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("query"))
        return prompt(*args, **kwargs)

    service.prompt = spy  # type: ignore[method-assign]
    ace = AcePlaybook(service, "support", namespace="team-a", send=False)
    agent = Agent(refund_model([]), capabilities=[ace])
    agent.tool_plain(lookup_order)
    first = agent.run_sync("How do I sum a paged invoice?")
    assert asked == ["How do I sum a paged invoice?"]  # two model requests, one read
    # a run continued from a history without a new prompt: the history's latest user message
    agent.run_sync(None, message_history=first.all_messages()[:1])
    assert asked[-1] == "How do I sum a paged invoice?"
    plain = AcePlaybook(service, "support", namespace="team-a", send=False, query=False)
    Agent(TestModel(), capabilities=[plain]).run_sync("How do I sum a paged invoice?")
    assert asked[-1] is None and len(asked) == 3
    assert latest_prompt(None, []) is None


def test_concurrent_runs_keep_their_own_messages_and_versions(store: PlaybookStore) -> None:
    ace = AcePlaybook(store, "support", namespace="team-a", outcome=lambda out: True)

    def echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(f"answer to: {messages[0].parts[0].content}")])  # type: ignore[union-attr]

    agent = Agent(FunctionModel(echo), capabilities=[ace])

    async def both() -> list[str]:
        results = await asyncio.gather(agent.run("first question"), agent.run("second question"))
        return [r.output for r in results]

    assert asyncio.run(both()) == ["answer to: first question", "answer to: second question"]
    logs = [e.log for e in Service(store).queue.list(namespace="team-a")]
    pairs = sorted((m["messages"][0]["content"], m["messages"][-1]["content"]) for m in logs)
    assert pairs == [("first question", "answer to: first question"), ("second question", "answer to: second question")]
    assert not ace._reads  # nothing kept of a finished run


class Verdict(BaseModel):
    refund: bool
    reason: str


def test_structured_output_and_retries_become_chat_messages(store: PlaybookStore) -> None:
    ace = AcePlaybook(store, "support", namespace="team-a", outcome=lambda v: {"success": v.refund is False})
    calls = 0

    def flaky(order: int) -> str:
        """Look an order up (fails once)."""
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ModelRetry("the order service timed out, try again")
        return "delivered 40 days ago"

    agent = Agent(TestModel(), output_type=Verdict, capabilities=[ace])
    agent.tool_plain(flaky)
    result = agent.run_sync("Refund order 7?")
    assert isinstance(result.output, Verdict)
    messages = ace.last_run["messages"] if ace.last_run else []
    roles = [m["role"] for m in messages]
    assert roles[0] == "user" and roles.count("tool") >= 2
    retry = next(m for m in messages if m["role"] == "tool" and "timed out" in m["content"])
    assert retry["tool_call_id"]
    final = messages[-1] if messages[-1]["role"] == "assistant" else messages[-2]
    assert final["tool_calls"][0]["function"]["name"] == "final_result"  # the output tool: the structured answer
    assert ace.last_episode is not None and ace.last_episode.log["outcome"]["success"] is (not result.output.refund)


def test_chat_messages_skip_what_is_not_the_conversation() -> None:
    from pydantic_ai.messages import ModelRequest, SystemPromptPart, ThinkingPart, ToolReturnPart, UserPromptPart

    messages: list[ModelMessage] = [
        ModelRequest(parts=[SystemPromptPart("be brief"), UserPromptPart(["look at this", "and this"])]),
        ModelResponse(parts=[ThinkingPart("hmm"), ToolCallPart("f", '{"x": 1}', tool_call_id="c")]),
        ModelRequest(parts=[ToolReturnPart("f", {"y": 2}, tool_call_id="c")]),
        ModelResponse(parts=[TextPart("done")]),
    ]
    assert chat_messages(messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "look at this\nand this"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "c", "content": '{"y":2}'},
        {"role": "assistant", "content": "done"},
    ]  # fmt: skip


def test_an_outcome_callback_that_raises_keeps_the_result_and_sends_nothing(store: PlaybookStore) -> None:
    def broken(out: Any) -> bool:
        raise ZeroDivisionError("division by zero")

    ace = AcePlaybook(store, "support", namespace="team-a", outcome=broken)
    with pytest.warns(UserWarning, match="ZeroDivisionError.*not sent to ACE"):
        result = Agent(TestModel(custom_output_text="Refunds: 30 days."), capabilities=[ace]).run_sync("Refund?")
    assert result.output == "Refunds: 30 days."  # the agent's result is not lost
    assert ace.last_episode is None and ace.last_run is not None  # kept for report()
    assert Service(store).queue.list(namespace="team-a") == []
    assert ace.report(True).log["outcome"] is True


def test_an_episode_is_redacted_before_it_is_sent(store: PlaybookStore) -> None:
    ace = AcePlaybook(store, "support", namespace="team-a")
    key = "sk-proj-" + "Zt9Qw8xY" * 4
    Agent(TestModel(custom_output_text=f"Set OPENAI_API_KEY={key} then retry."), capabilities=[ace]).run_sync(
        f"My key is {key}; PGPASSWORD=hunter2pg psql fails"
    )
    assert ace.last_episode is not None
    sent = json.dumps(ace.last_episode.log)
    assert key not in sent and "hunter2pg" not in sent and "[REDACTED]" in sent


def test_a_failed_run_sends_nothing_and_keeps_nothing(store: PlaybookStore) -> None:
    ace = AcePlaybook(store, "support", namespace="team-a", outcome=lambda out: True)

    def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ConnectionError("the model provider is away")

    with pytest.raises(ConnectionError):
        Agent(FunctionModel(down), capabilities=[ace]).run_sync("Refund window?")
    assert ace.last_episode is None and ace.last_run is None and not ace._reads
    assert Service(store).queue.list(namespace="team-a") == []


@pytest.mark.model
def test_an_agent_on_the_local_model_through_its_openai_compatible_server_leaves_a_version(
    store: PlaybookStore, tmp_path: Path
) -> None:
    """The packaged local model served by a real ``llama_cpp.server`` on 127.0.0.1 (what a team runs as an
    OpenAI-compatible endpoint), a Pydantic AI agent on it with the AcePlaybook capability: the run reads the playbook
    in its instructions, is queued as an episode, and a worker learns a version from it (the worker's model is the
    scripted provider: what it learns is not the point here)."""
    pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from ace.llm.local import default_model_path
    from tests.conftest import llama_server

    with llama_server(default_model_path(), "smollm2", tmp_path) as base:
        model = OpenAIChatModel("smollm2", provider=OpenAIProvider(base_url=base, api_key="not-needed"))
        ace = AcePlaybook(
            store, "support", namespace="team-a", task="Refund questions",
            outcome=lambda out: {"success": "30" in out, "message": "the refund window is 30 days"},
        )  # fmt: skip
        agent = Agent(model, instructions="Answer in one short sentence.", capabilities=[ace],
                      model_settings={"max_tokens": 40, "temperature": 0.0})  # fmt: skip
        result = agent.run_sync("How many days after delivery can a customer get a refund?")
    assert isinstance(result.output, str) and result.output.strip()
    sent = ace.last_episode
    assert sent is not None and sent.status == "queued"
    assert sent.log["messages"][0] == {
        "role": "user",
        "content": "How many days after delivery can a customer get a refund?",
    }
    assert sent.log["messages"][-1]["role"] == "assistant" and sent.log["messages"][-1]["content"] == result.output
    llm = LLM(ScriptedProvider(valid_reply))
    done = Worker(store, EpisodeQueue(store), llm=lambda: llm, workdir=tmp_path / "runs").run_once()
    assert done is not None and done.status == "done" and done.committed, done
    assert store.head_version("support", namespace="team-a") == 2
