"""ACE for CrewAI (the ``ace-crewai`` package in integrations/crewai): a CrewAI crew reads the serving playbook from a
real ``ace serve`` (HTTP, a bearer token) into its agents, and each finished run is sent there as an episode, which a
worker learns a new version from.

CrewAI 1.15 cannot be installed beside ACE (it pins mcp<2, openai<3, pydantic<2.13), so the crews run in their own
virtualenv (``scripts/crewai-venv``: .venv-crewai, made by ``scripts/install`` with the ``test`` extra, or here on
first use) through ``integrations/crewai/tests/run_crew.py``, which prints what happened as JSON. The model is a
scripted CrewAI ``BaseLLM`` (a stand-in for the model provider) or, in the ``model`` tier, the packaged local model
behind a real ``llama_cpp.server``; the worker's model is ACE's scripted provider (what it learns is not the point)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.playbook import parse_ace
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore
from tests.conftest import ace_serve

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "integrations" / "crewai" / "tests" / "run_crew.py"
WRITER = "crewai-writer-token-0123456789"
START = parse_ace(
    "## BILLING RULES\n"
    "[br-00001] Refunds are possible for 30 days after delivery.\n"
    "[br-00002] Quote the order as {order_id} in replies.\n"  # braces CrewAI must not read as one of its inputs
)


@pytest.fixture(scope="module")
def crewai_python() -> Path:
    """The CrewAI environment's python (made on first use: about a minute; then a stamp check)."""
    try:
        made = subprocess.run(
            [str(REPO / "scripts" / "crewai-venv")], capture_output=True, text=True, timeout=1200, check=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        said = str(getattr(e, "stderr", "") or e)
        lines = [line for line in said.splitlines() if "is ignored" not in line]  # pip's find-links noise
        reason = "CrewAI's environment could not be made (scripts/crewai-venv): " + "\n".join(lines[-15:])
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(made.stdout.strip().splitlines()[-1])


@dataclass
class Served:
    url: str
    store: PlaybookStore


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real ``ace serve`` on 127.0.0.1 (workers 0: the test runs the worker) over a SQLite file, with a tokens
    file and the playbook ``team-a/support`` at version 1."""
    db = f"sqlite:///{tmp_path / 'crew.db'}"
    store = PlaybookStore(db)
    store.create("support", START, namespace="team-a")
    with ace_serve(db, {"tokens": {WRITER: {"namespaces": ["team-a"], "role": "write"}}}, tmp_path) as url:
        yield Served(url, store)


def run_crew(python: Path, served: Served, tmp_path: Path, timeout: float = 120, **config: Any) -> dict[str, Any]:
    """Run ``run_crew.py`` in the CrewAI environment against ``served``; what it printed after ``RESULT``."""
    config = {"url": served.url, "token": WRITER, "namespace": "team-a", "playbook": "support",
              "description": "Customer {customer} asks: can I get a refund after six weeks?", **config}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACE_", "OPENAI_"))}
    # CrewAI's telemetry and tracing would try the network; its storage goes under the test's folder
    env |= {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true", "CREWAI_TRACING_ENABLED": "false",
            "CREWAI_STORAGE_DIR": str(tmp_path / "crewai"), "PYTHONPATH": ""}  # fmt: skip
    done = subprocess.run(
        [str(python), str(DRIVER), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not found:
        pytest.fail(f"run_crew.py failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(found[-1].removeprefix("RESULT "))
    return result


def learn(served: Served, tmp_path: Path) -> None:
    """One worker pass over the queue (the worker's model: ACE's scripted provider)."""
    llm = LLM(ScriptedProvider(valid_reply))
    store = served.store
    done = Worker(store, EpisodeQueue(store), llm=lambda: llm, workdir=tmp_path / "runs").run_once()
    assert done is not None and done.status == "done" and done.committed, done


EPISODES = "/v1/playbooks/team-a/support/episodes"
READ = "GET /v1/playbooks/team-a/support"


@pytest.mark.slow
def test_a_crew_reads_the_playbook_once_per_run_and_its_run_becomes_a_version(
    crewai_python: Path, served: Served, tmp_path: Path
) -> None:
    got = run_crew(
        crewai_python, served, tmp_path, task="Refund questions", expect="30 days", probe_bad_token=True,
        replies=["Thought: I know this.\nFinal Answer: Refunds are possible for 30 days.", "FAIL"],
        runs=[{"inputs": {"customer": "Ana"}}, {"inputs": {"customer": "Bo"}}],
    )  # fmt: skip
    first, failed = got["runs"]
    # one read per run, then the episode; the read is the prompt: a line naming the playbook and version, the bullets
    assert first["requests"] == [READ, f"POST {EPISODES}"], first
    read = first["read"]
    assert read["version"] == 1 and read["text"].startswith("# playbook team-a/support v1: lessons learned")
    assert "[br-00001] Refunds are possible for 30 days after delivery." in read["text"]
    system, user = got["seen"][0][:2]
    assert system["role"] == "system" and read["text"] in system["content"]  # in the agent's backstory
    assert "You work for a small web shop." in system["content"]  # the agent's own backstory first
    assert "{order_id}" in system["content"]  # the playbook's braces reach the model as written
    assert "Customer Ana asks" in user["content"]  # the crew's own inputs still fill its task
    # the episode: the run's messages without the playbook, the final answer, the version read, the outcome
    log = first["last_run"]
    assert log["playbook_version"] == 1 and log["task"] == "Refund questions"
    assert [m["role"] for m in log["messages"]] == ["system", "user", "assistant"]
    assert not any("br-0000" in (m["content"] or "") for m in log["messages"])
    assert log["messages"][0]["content"].startswith("You are Support agent. You work for a small web shop.")
    assert log["messages"][-1] == {"role": "assistant", "content": "Refunds are possible for 30 days."}
    assert first["episode"]["status"] == "queued" and first["output"] == "Refunds are possible for 30 days."
    # a run whose model fails: the crew raises, nothing is sent (the read is all it did)
    assert "the model provider is away" in failed["error"] and failed["requests"] == [READ]
    assert failed["episode"] is None
    # a token ACE does not know: a clear error
    assert got["bad_token"] is not None and "401" in got["bad_token"] and "bearer token" in got["bad_token"]

    queued = EpisodeQueue(served.store).list(namespace="team-a")
    assert len(queued) == 1 and queued[0].episode_id == first["episode"]["episode_id"]
    assert queued[0].log["outcome"] == {"success": True} and queued[0].log["playbook_version"] == 1
    learn(served, tmp_path)
    assert served.store.head_version("support", namespace="team-a") == 2

    # the next crew reads what was learned; send=False keeps the run for report(outcome) later; the crew's own
    # inputs may not take the playbook's name
    again = run_crew(
        crewai_python, served, tmp_path, replies=["Final Answer: Within 30 days."],
        runs=[{"inputs": {"customer": "Cy"}, "send": False, "report": {"success": False, "message": "it was 60"}},
              {"inputs": {"customer": "Di", "ace_playbook": "mine"}}],
    )  # fmt: skip
    later, taken = again["runs"]
    assert later["read"]["version"] == 2 and "v2:" in again["seen"][0][0]["content"]
    assert later["requests"] == [READ, f"POST {EPISODES}"] and later["episode"] is None  # sent by report()
    assert later["reported"]["status"] == "queued"
    assert "already have 'ace_playbook'" in taken["error"] and taken["requests"] == []
    sent = EpisodeQueue(served.store).list(namespace="team-a", status="queued")
    assert len(sent) == 1 and sent[0].log["outcome"] == {"success": False, "message": "it was 60"}
    assert sent[0].log["playbook_version"] == 2
    assert sent[0].log["messages"][-1] == {"role": "assistant", "content": "Within 30 days."}


@pytest.mark.model
@pytest.mark.slow
def test_a_crew_on_the_local_model_through_its_openai_compatible_server_leaves_a_version(
    crewai_python: Path, served: Served, tmp_path: Path
) -> None:
    """The packaged local model behind a real ``llama_cpp.server`` on 127.0.0.1, a CrewAI agent on it through
    CrewAI's own ``LLM("openai/...", base_url=...)``: the crew reads the playbook from ``ace serve``, its run is sent
    there as an episode, and a worker learns version 2 from it."""
    pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")
    from ace.llm.local import default_model_path
    from tests.conftest import llama_server

    with llama_server(default_model_path(), "smollm2", tmp_path) as base:
        got = run_crew(
            crewai_python, served, tmp_path, timeout=600, model="openai", base_url=base, alias="smollm2",
            max_tokens=60, expect="30", task="Refund questions", runs=[{"inputs": {"customer": "Ana"}}],
        )  # fmt: skip
    (run,) = got["runs"]
    assert "error" not in run, run
    assert isinstance(run["output"], str) and run["output"].strip()
    assert run["requests"] == [READ, f"POST {EPISODES}"] and run["read"]["version"] == 1
    assert run["episode"]["status"] == "queued"
    log = run["last_run"]
    assert log["playbook_version"] == 1 and log["messages"][-1] == {"role": "assistant", "content": run["output"]}
    assert any("Customer Ana asks" in (m["content"] or "") for m in log["messages"] if m["role"] == "user")
    learn(served, tmp_path)
    assert served.store.head_version("support", namespace="team-a") == 2
