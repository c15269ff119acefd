"""`ace mcp`: the Model Context Protocol server, driven by the official SDK's own client: in process, as a stdio
subprocess (as a desktop client starts it; its worker learns from the recorded episode with the local model), and
over streamable HTTP with bearer tokens."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ace.playbook import parse_ace
from ace.service.mcp import create_server
from ace.store import PlaybookStore
from tests.conftest import free_port

START = parse_ace("## STRATEGIES AND HARD RULES\n[shr-00001] Always read the API doc before calling an API.\n")
EPISODE: dict[str, Any] = {
    "playbook": "agent",
    "episode_id": "mcp-1",
    "task": "Which day are invoices sent at the co-op?",
    "messages": [
        {"role": "user", "content": "Which day are invoices sent at the co-op?"},
        {"role": "assistant", "content": "Monday"},
    ],
    "outcome": {"success": False, "message": "wrong: invoices go out on Thursday"},
    "target": "Thursday",
}
TOOLS = {"read_playbook", "record_episode", "episode_status", "search_episodes", "query_facts", "list_playbooks",
         "review_pending", "review_approve", "review_reject"}  # fmt: skip


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def _data(result: Any) -> Any:
    assert not result.is_error, _text(result)
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = PlaybookStore(f"sqlite:///{tmp_path / 'mcp.db'}")
    s.create("agent", START, namespace="team-a")
    yield s
    s.close()


def test_tools_resources_and_errors_in_process(store: PlaybookStore) -> None:
    server = create_server(store, namespace="team-a")

    async def go() -> None:
        async with Client(server) as c:
            assert {t.name for t in (await c.list_tools()).tools} == TOOLS
            text = _data(await c.call_tool("read_playbook", {"playbook": "agent", "budget": 500}))
            assert text.startswith("# playbook team-a/agent v1 (1 bullets)") and "[shr-00001]" in text
            sent = _data(await c.call_tool("record_episode", EPISODE))
            assert sent["status"] == "queued" and sent["queued_now"] and sent["episode_id"] == "mcp-1"
            again = _data(await c.call_tool("record_episode", EPISODE))
            assert not again["queued_now"]
            status = _data(await c.call_tool("episode_status", {"playbook": "agent", "episode_id": "mcp-1"}))
            assert status["status"] == "queued" and status["attempts"] == 0
            assert _data(await c.call_tool("list_playbooks", {})) == [{"name": "agent", "head": 1}]
            assert _data(await c.call_tool("query_facts", {})) == []
            # failures reach the caller with their reason, as tool errors
            denied = await c.call_tool("read_playbook", {"playbook": "agent", "namespace": "team-b"})
            assert denied.is_error and "may not read in namespace 'team-b'" in _text(denied)
            missing = await c.call_tool("read_playbook", {"playbook": "nope"})
            assert missing.is_error and "no playbook 'nope'" in _text(missing)
            hostile = await c.call_tool("read_playbook", {"playbook": "../../etc/passwd"})
            assert hostile.is_error and "playbook" in _text(hostile)
            bad = await c.call_tool("record_episode", {"playbook": "agent", "messages": [], "outcome": True})
            assert bad.is_error and "messages" in _text(bad)
            no_memory = await c.call_tool("search_episodes", {"query": "invoices"})
            assert no_memory.is_error and "--memory" in _text(no_memory)
            templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
            assert templates == {"ace://playbooks/{ns}/{name}", "ace://playbooks/{ns}/{name}/versions/{version}"}
            head = await c.read_resource("ace://playbooks/team-a/agent/versions/1")
            assert "[shr-00001]" in head.contents[0].text  # type: ignore[union-attr]
            with pytest.raises(Exception, match="may not read"):
                await c.read_resource("ace://playbooks/team-b/agent")

    asyncio.run(go())


@pytest.mark.slow
def test_stdio_server_answers_a_read_and_learns_from_a_recorded_episode(store: PlaybookStore, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ace.cli", "mcp", "--db", store.url, "-n", "team-a", "--curation", "facts"],
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")},
    )

    async def go() -> dict[str, Any]:
        async with Client(params) as c:
            assert {t.name for t in (await c.list_tools()).tools} == TOOLS
            assert "[shr-00001]" in _data(await c.call_tool("read_playbook", {"playbook": "agent"}))
            assert _data(await c.call_tool("record_episode", EPISODE))["status"] == "queued"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:  # the server's worker loads the local model and learns
                status = _data(await c.call_tool("episode_status", {"playbook": "agent", "episode_id": "mcp-1"}))
                if status["status"] in ("done", "failed"):
                    return dict(status)
                await asyncio.sleep(0.5)
            raise AssertionError("the episode was not learned from within 3 minutes")

    status = asyncio.run(go())
    assert status["status"] == "done" and status["committed"] and status["version"] == 2, status
    assert "Thursday" in " ".join(b.content for b in store.load("agent", namespace="team-a"))


def test_streamable_http_needs_a_token_of_the_namespace(store: PlaybookStore, tmp_path: Path) -> None:
    reader, other = "mcp-reader-token-0123456789", "mcp-other-ns-token-0123456789"
    tokens = {
        "tokens": {
            reader: {"namespaces": ["team-a"], "role": "read"},
            other: {"namespaces": ["team-b"], "role": "write"},
        }
    }
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    port = free_port()
    cmd = [sys.executable, "-m", "ace.cli", "mcp", "--db", store.url, "--transport", "http", "--port", str(port)]
    cmd += ["--tokens", str(tmp_path / "tokens.json"), "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=1)
            except urllib.error.HTTPError as e:
                assert e.code == 401  # up, and closed without a token
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "no server")

        async def call(token: str, tool: str, args: dict[str, Any]) -> Any:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
            async with Client(streamable_http_client(url, http_client=http)) as c:
                return await c.call_tool(tool, args)

        text = _data(asyncio.run(call(reader, "read_playbook", {"playbook": "agent", "namespace": "team-a"})))
        assert "[shr-00001]" in text
        ro = asyncio.run(call(reader, "record_episode", EPISODE | {"namespace": "team-a"}))
        assert ro.is_error and "may not write" in _text(ro)
        cross = asyncio.run(call(other, "read_playbook", {"playbook": "agent", "namespace": "team-a"}))
        assert cross.is_error and "may not read in namespace 'team-a'" in _text(cross)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
