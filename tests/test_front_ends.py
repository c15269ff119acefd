"""The four front ends (HTTP routes, MCP tools, the LangGraph store and nodes, the Agents SDK hooks) are thin
adapters over one :class:`~ace.service.core.Service`: an agent reads the same prompt text through each, every write
goes through the service's checks and limits (a quota set on the service binds the LangGraph store and the hooks
too), and no adapter calls the store's or the queue's writers itself. Scripted and structural: no model."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage, HumanMessage

from ace.integrations.langgraph import AceStore, playbook_text, report_outcome
from ace.playbook import parse_ace
from ace.service.app import create_app
from ace.service.auth import Grant, Tokens
from ace.service.core import PROMPT_BUDGET, AccessDenied, Limits, QuotaExceeded, Service
from ace.service.mcp import create_server
from ace.store import PlaybookStore

ROOT = Path(__file__).resolve().parents[1]
PB = parse_ace(
    "## STRATEGIES AND HARD RULES\n"
    "[shr-00001] Always read the API doc before calling an API.\n"
    "[shr-00002] Invoices are paged: fetch every page before summing.\n"
    "## BILLING\n"
    "[bil-00001] Refunds from Oslo use ledger code LC-4471.\n"
)
TOKEN = "t" * 32
EPISODE: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Refund order 7?"}, {"role": "assistant", "content": "Done."}],
    "outcome": {"success": True},
}


@pytest.fixture
def store(tmp_path: Path) -> PlaybookStore:
    s = PlaybookStore(f"sqlite:///{tmp_path / 'fe.db'}")
    s.create("agent", PB, namespace="team-a")
    return s


def _mcp_read(store: PlaybookStore, **arguments: Any) -> str:
    from mcp import Client

    server = create_server(store, namespace="team-a")

    async def go() -> str:
        async with Client(server) as client:
            result = await client.call_tool("read_playbook", {"playbook": "agent", **arguments})
            assert not result.is_error, result
            data = result.structured_content
            assert isinstance(data, dict)
            return str(data["result"])

    return asyncio.run(go())


def test_every_agent_facing_front_end_gives_the_same_prompt(store: PlaybookStore) -> None:
    svc = Service(store)
    want = svc.prompt(Grant.local("test", ["team-a"]), "team-a", "agent").text
    assert want.startswith("# playbook team-a/agent v1 (3 bullets): lessons learned")
    assert "[bil-00001]" in want and "LC-4471" in want
    assert playbook_text(store, "agent", namespace="team-a") == want  # the LangGraph node and hook
    assert _mcp_read(store) == want  # the MCP tool, same defaults

    pytest.importorskip("agents", reason="the OpenAI Agents SDK is the 'agents' extra")
    from ace.integrations.openai_agents import AceHooks

    hooks = AceHooks(store, "agent", namespace="team-a")
    build = hooks.instructions("You answer billing questions.")
    got = asyncio.run(build(object(), object()))  # type: ignore[arg-type]  # the SDK's context and agent are not read
    assert got == "You answer billing questions.\n\n" + want


def test_the_pydantic_ai_capability_gives_the_same_prompt(store: PlaybookStore) -> None:
    pytest.importorskip("pydantic_ai", reason="Pydantic AI is the 'pydantic-ai' extra")
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from ace.integrations.pydantic_ai import AcePlaybook

    seen: list[str | None] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:  # Pydantic AI's stand-in for a model
        seen.append(info.instructions)
        return ModelResponse(parts=[TextPart("Done.")])

    want = Service(store).prompt(Grant.local("test", ["team-a"]), "team-a", "agent").text
    ace = AcePlaybook(store, "agent", namespace="team-a", send=False, query=False)
    agent = Agent(FunctionModel(model), instructions="You answer billing questions.", capabilities=[ace])
    agent.run_sync("Refund order 7?")
    assert seen == ["You answer billing questions.\n\n" + want.rstrip("\n")]  # Pydantic AI trims the end


def test_the_http_read_is_the_playbook_itself_and_matches_the_prompts_body(store: PlaybookStore) -> None:
    """GET gives the playbook (no header; defaults: whole, sections layout); with the prompt's budget and layout
    its text is the prompt's body: one rendering behind both."""
    app = create_app(store, tokens=Tokens({TOKEN: Grant("read", frozenset({"team-a"}), name="reader")}))
    with TestClient(app) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        whole = http.get("/v1/playbooks/team-a/agent", headers=auth)
        assert whole.status_code == 200 and whole.text.startswith("## STRATEGIES AND HARD RULES")
        body = http.get(f"/v1/playbooks/team-a/agent?budget={PROMPT_BUDGET}&layout=stable", headers=auth).text
    prompt = Service(store).prompt(Grant.local("test"), "team-a", "agent").text
    assert prompt.split("\n\n", 1)[1] == body


def test_a_quota_on_the_service_binds_the_langgraph_store_and_report_outcome(store: PlaybookStore) -> None:
    svc = Service(store, limits=Limits(max_queued_episodes=2))
    lg = AceStore(svc, namespaces=["team-a"])
    lg.put(("team-a", "episodes"), "e1", {"playbook": "agent", **EPISODE})
    messages = [HumanMessage("Refund order 8?"), AIMessage("Done.")]
    report_outcome(svc, "agent", messages, {"success": True}, namespace="team-a", episode_id="e2")
    with pytest.raises(QuotaExceeded):
        lg.put(("team-a", "episodes"), "e3", {"playbook": "agent", **EPISODE})
    assert [e.episode_id for e in svc.queue.list(namespace="team-a")] == ["e2", "e1"]


def test_adapter_writes_are_recorded_under_the_adapters_name(store: PlaybookStore) -> None:
    lg = AceStore(store, namespaces=["team-a"], author="graph-7")
    lg.put(("team-a", "playbooks", "agent"), "shr-00001", {"content": "Read the API doc first, always."})
    assert store.history("agent", namespace="team-a")[-1].author == "graph-7"
    http = Service(store)
    http.ensure(Grant("write", frozenset({"team-b"}), name="ci"), "team-b", "new")
    assert store.history("new", namespace="team-b")[0].author == "token:ci"


def test_an_in_process_grant_is_held_to_its_namespaces(store: PlaybookStore) -> None:
    svc = Service(store)
    grant = Grant.local("graph", ["team-b"])
    with pytest.raises(AccessDenied):
        svc.prompt(grant, "team-a", "agent")
    with pytest.raises(AccessDenied):
        svc.submit_episode(grant, "team-a", "agent", EPISODE)
    assert svc.catalog(grant) == []
    assert [p.name for p in svc.catalog(Grant.local("graph", ["team-a"]))] == ["agent"]


WRITERS = {"commit", "create", "rollback", "ensure", "submit", "import_", "put_playbook"}
ADAPTERS = ["ace/service/app.py", "ace/service/mcp.py", "ace/integrations/langgraph.py",
            "ace/integrations/openai_agents.py", "ace/integrations/pydantic_ai.py"]  # fmt: skip


@pytest.mark.parametrize("path", ADAPTERS)
def test_no_front_end_calls_the_store_or_the_queue_itself(path: str) -> None:
    """Each front end reaches the store and the queue only through the service: no ``<x>.store.<op>(...)``,
    ``<x>.queue.<op>(...)``, ``store.<writer>(...)`` or ``queue.<writer>(...)`` call in its source."""
    tree = ast.parse((ROOT / path).read_text())
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if owner_name in {"store", "queue"} and (isinstance(owner, ast.Attribute) or node.func.attr in WRITERS):
            found.append(f"{path}:{node.lineno} {ast.unparse(node.func)}")
    assert not found, found
