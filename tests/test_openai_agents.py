"""ACE hooks for the OpenAI Agents SDK (ace.integrations.openai_agents): an Agents SDK agent served by a real
llama_cpp.server (SmolLM2, OpenAI-compatible, on 127.0.0.1; no network, tracing off) runs with the playbook in its
instructions, its run is sent as an episode, and a worker learns a new playbook version from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ace.config import LoopConfig
from ace.llm import LLM, Sampling
from ace.playbook import parse_ace
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore
from tests.conftest import llama_server

agents = pytest.importorskip("agents", reason="the OpenAI Agents SDK is the 'agents' extra")
pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")

from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, set_tracing_disabled  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from ace.integrations.openai_agents import AceHooks, chat_messages  # noqa: E402
from ace.llm.local import smollm2_model_path  # noqa: E402

START = parse_ace("## BILLING RULES\n[br-00001] Answer in one sentence and name the rule you applied.\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI: no network here
    with llama_server(smollm2_model_path(), "smollm2", tmp_path_factory.mktemp("agents"), n_ctx=4096) as base:
        yield base


def test_responses_items_become_an_ace_learn_episode() -> None:
    items: list[Any] = [
        {"role": "user", "content": "Refund order 7?"},
        {"type": "reasoning", "id": "r1", "summary": []},  # left out
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"order": 7}'},
        {"type": "function_call_output", "call_id": "c1", "output": {"days": 40}},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "No: 40 days."}]},
    ]
    assert chat_messages(items) == [
        {"role": "user", "content": "Refund order 7?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"order": 7}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"days": 40})},
        {"role": "assistant", "content": "No: 40 days."},
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.model
def test_an_agents_sdk_run_carries_the_playbook_and_leaves_a_new_version(server: str, tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'agents.db'}")
    store.create("support", START, namespace="team-a")
    hooks = AceHooks(
        store,
        "support",
        namespace="team-a",
        task="Which form does a member fill in for a refund at the co-op?",
        # a form code nothing could guess: the run fails, so there is something to learn (no skip when lucky)
        outcome=lambda out: {
            "success": "RF-7731" in str(out),
            "message": "wrong: refunds are asked for on form RF-7731",
        },
    )
    model = OpenAIChatCompletionsModel(model="smollm2", openai_client=AsyncOpenAI(base_url=server, api_key="local"))
    seen: list[str] = []
    instructions = hooks.instructions("You answer billing questions of the co-op.")

    async def spy(context: Any, agent: Any) -> str:
        seen.append(await instructions(context, agent))
        return seen[-1]

    agent = Agent(name="support", instructions=spy, model=model, model_settings=ModelSettings(max_tokens=48))
    result = asyncio.run(Runner.run(agent, "Which form do I fill in to get a refund?", hooks=hooks))
    assert isinstance(result.final_output, str) and result.final_output
    assert "# playbook team-a/support v1" in seen[0] and "[br-00001]" in seen[0]  # the playbook was in the instructions
    sent = hooks.last_episode
    assert sent is not None and sent.status == "queued" and sent.log["playbook_version"] == 1
    roles = [m["role"] for m in sent.log["messages"]]
    assert roles[0] == "user" and roles[-1] == "assistant" and sent.log["messages"][-1]["content"]
    assert sent.log["outcome"]["success"] is False
    llm = LLM("local", sampling=Sampling(max_tokens=512))
    facts = LoopConfig(curation="facts")
    done = Worker(store, EpisodeQueue(store), llm=lambda: llm, workdir=tmp_path / "runs", config=facts).run_once()
    assert done is not None and done.status == "done" and done.committed, done
    assert store.head_version("support", namespace="team-a") == 2
    assert "RF-7731" in " ".join(b.content for b in store.load("support", namespace="team-a"))
    store.close()


def test_reporting_before_any_run_is_a_clear_error(tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'agents.db'}")
    with pytest.raises(RuntimeError, match="no finished run"):
        AceHooks(store, "support").report(True)
