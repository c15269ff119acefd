"""Learning a playbook offline from an agent's own logs (OpenAI-style chat messages with tool calls): parsing,
malformed logs (a clear error naming the line, nothing written), and the loop run over them (reflector and
curator called on the transcript; the run is a trajectory that replays and re-executes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.llm import LLM
from ace.llm.openai import OpenAIProvider
from ace.playbook.formats import parse_ace
from ace.runs.from_logs import LogError, LoggedAgent, learn, load_logs, logged_outcome, transcript, turns
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.trajectory import read, replay
from ace.store import PlaybookStore
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent


def _call(i: int, command: str) -> dict[str, Any]:
    arguments = json.dumps({"command": command})
    return {"id": f"c{i}", "type": "function", "function": {"name": "act", "arguments": arguments}}


def episode(n: int, won: bool, commands: list[str], **extra: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You play text adventures. Use the act tool."},
        {"role": "user", "content": [{"type": "text", "text": f"Game {n}: cook the meal in the cookbook."}]},
    ]
    for i, c in enumerate(commands):
        messages.append({"role": "assistant", "content": None, "tool_calls": [_call(i, c)]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"You {c}."})
    messages.append({"role": "assistant", "content": "Done: I ate the meal." if won else "I give up."})
    return {"id": f"ep{n}", "messages": messages, "outcome": {"success": won, "score": float(won)}, **extra}


def write(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_a_log_becomes_a_task_with_its_transcript_answer_and_outcome(tmp_path: Path) -> None:
    logs = write(tmp_path / "logs.jsonl", [episode(1, True, ["open fridge", "take carrot", "eat meal"])])
    (task,) = load_logs(logs)
    assert task.id == "ep1" and task.input == "Game 1: cook the meal in the cookbook."  # content blocks read
    text = task.metadata["transcript"]
    assert "agent: → act(command='open fridge')" in text and "observation: You open fridge." in text
    assert "You play text adventures" not in text  # the system prompt is the agent's, not the episode
    assert task.metadata["final"] == "Done: I ate the meal."
    fb = logged_outcome(task, "ignored")
    assert fb.correct is True and fb.score == 1.0


def test_legacy_function_calls_and_bare_outcomes_are_read(tmp_path: Path) -> None:
    log = {
        "task": "Find the key",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "function_call": {"name": "go", "arguments": "north"}},
        ],
        "outcome": False,
        "target": "key",
    }
    (task,) = load_logs(write(tmp_path / "l.jsonl", [log]))
    assert task.input == "Find the key" and task.target == "key" and task.id == "l:1"
    assert task.metadata["final"] == "go(north)"  # arguments that are not JSON are shown as they are
    fb = logged_outcome(task, "")
    assert fb.correct is False and fb.target == "key"


def test_a_long_episode_keeps_its_start_and_its_end() -> None:
    ts = turns([{"role": "assistant", "content": f"step {i:04d}"} for i in range(2000)])
    text = transcript(ts, max_chars=600)
    assert len(text) < 700 and "step 0000" in text and "step 1999" in text and "left out" in text


GOOD = json.dumps(episode(0, True, ["ok"]))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"messages": [}\n', "line 1: not JSON"),
        (GOOD + '\n\n{"id": "x"}\n', "line 3: no 'messages' list"),  # the right line, blank lines counted
        ('{"messages": [{"role": "user", "content": "q"}]}\n', "line 1: the agent never spoke"),
        ('{"messages": [{"content": "q"}]}\n', "line 1: a message must be an object with a 'role'"),
        ('{"messages": [{"role": "assistant", "content": "a"}]}\n', "line 1: no 'task' and no user message"),
        (json.dumps(episode(1, True, ["x"]) | {"outcome": {"success": "yes"}}), "line 1: the outcome's success must"),
        ('{"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}', "line 1: a tool call without"),
        ('[{"messages": 3}]', "item 1: no 'messages' list"),
        ("[3]", "item 1: expected an object"),
        ("\n\n", "no conversations"),
    ],
)
def test_a_malformed_log_is_a_clear_error_and_writes_nothing(tmp_path: Path, content: str, problem: str) -> None:
    logs = tmp_path / "bad.jsonl"
    logs.write_text(content)
    with pytest.raises(LogError) as caught:
        load_logs(logs)
    assert str(caught.value).startswith(str(logs)) and problem in str(caught.value)
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["learn", str(logs), "--db", db])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert PlaybookStore(db).list() == []  # nothing created


def _roles(seen: list[str]) -> Any:
    """A stand-in for a remote model: the reflector tags what was cited, the curator adds one lesson per log."""

    def respond(body: dict[str, Any]) -> str:
        system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        user = body["messages"][-1]["content"]
        if "You are an expert analyst" in system:
            seen.append(user)
            cited = [
                line[1:].split("]")[0] for line in user.split("CITED BULLETS:\n")[1].splitlines() if line[:1] == "["
            ]
            return json.dumps(
                {
                    "reasoning": "r",
                    "error_identification": "e",
                    "root_cause_analysis": "c",
                    "correct_approach": "read the cookbook first",
                    "key_insight": "examine the cookbook before cooking",
                    "bullet_tags": [{"id": i, "tag": "helpful"} for i in cited],
                }
            )
        if "You maintain a playbook" in system:
            n = len(seen)
            ops = [{"type": "ADD", "section": "strategies", "content": f"Lesson {n}: examine the cookbook first."}]
            return json.dumps({"reasoning": "curated", "operations": ops})
        raise AssertionError(f"unexpected prompt: {system[:60]}")

    return respond


def test_logs_are_learned_into_a_playbook_that_replays_and_re_executes(tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'l.db'}")
    store.create("cook", parse_ace("## strategies\n[str-00001] helpful=0 harmful=0 :: Read the cookbook first.\n"))
    items = [
        episode(1, True, ["examine cookbook", "eat meal"]),
        episode(2, False, ["eat meal"]),
        # the agent's own words cite a bullet: its tag reaches that bullet
        episode(3, True, ["examine cookbook"])
        | {
            "messages": [
                *episode(3, True, [])["messages"][:2],
                {"role": "assistant", "content": "Following [str-00001] I read it."},
            ]
        },
    ]
    tasks = load_logs(write(tmp_path / "logs.jsonl", items))
    seen: list[str] = []
    with FakeOpenAIServer() as server:
        server.responder = _roles(seen)
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)
        result = learn(tasks, llm, store, "cook", run_id="logs1", workdir=tmp_path)
        calls = len(server.requests)
    assert [r.correct for r in result.results] == [True, False, True] and not result.failed
    assert "→ act(command='examine cookbook')" in seen[0] and "OUTCOME: wrong" in seen[1]
    pb = store.load("cook")
    assert pb["str-00001"].helpful == 1 and len(pb) == 4 and store.head("cook").version == 4
    assert calls == 6  # reflector and curator per log: nothing is generated
    path = tmp_path / "logs1.trajectory.jsonl"
    header, _ = read(path)
    assert header["run"]["generator"] == LoggedAgent.spec and replay(path).ok
    again = rerun(path, LLM(RecordedProvider(path)), store, workdir=tmp_path / "again")
    assert again.reproduced == 3
    # the same call after it finished: resumed, nothing new
    assert learn(tasks, llm, store, "cook", run_id="logs1", workdir=tmp_path).resumed
    assert store.head("cook").version == 4
