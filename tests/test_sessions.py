"""Learning from coding-agent sessions (ace.runs.sessions, ``ace learn --format claude-code|codex``): the fixture
transcripts in tests/fixtures/sessions were written by hand in each tool's format (a Claude Code session with a
failing then passing test, a correction, a rejected push, a subagent's sidechain, a secret read from .env, a raw
U+2028, bookkeeping lines of kinds not known and an unfinished last line; a Codex rollout with scaffolding, the
event mirrors of each message, the three ways Codex reports an exit code, a correction and a declined command).
The learning runs on the scripted provider (``ace.llm.testing``, a public test double): no model is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.runs import sessions
from ace.runs.from_logs import LogError, learn, load_logs, logged_outcome
from ace.runs.sessions import SessionReport, judge, load_sessions, redact, session_files, session_logs
from ace.runs.trajectory import replay
from ace.store import PlaybookStore

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sessions"
CLAUDE = FIXTURES / "7c1e2a90-3b5d-4f0e-9a61-2d8f4b7c0e15.jsonl"
CODEX = FIXTURES / "rollout-2026-03-04T09-00-00-0199a3f2-6c1d-7b20-9e4f-5a3b2c1d0e9f.jsonl"
# every secret the fixtures hold: none may reach a task, a prompt, the store or a trajectory
SECRETS = ["Tr0ub4dor", "rls_9f8e7d6c5b4a", "ghp_aB3dE5gH7", "sk-proj-Zt9Qw8", "sk-live-0123456789", "tok_5up3rs3cr3t"]


def _everything(tasks: list[Any]) -> str:
    return "\n".join(t.model_dump_json() for t in tasks)


def test_a_claude_code_session_becomes_judged_episodes() -> None:
    tasks, report = load_sessions([CLAUDE], "claude-code")
    assert [t.id for t in tasks] == [f"{CLAUDE.stem}#{k}" for k in (1, 2, 3)]
    first, second, third = tasks
    # the request, with the user's own U+2028 kept as text (lines are split on \n only)
    assert first.input.startswith("The invoice due date is wrong for ISO week dates") and "\u2028" in first.input
    text = first.metadata["transcript"]
    assert "agent: → Bash(command='python -m pytest -q tests/test_dates.py'" in text
    assert "1 failed, 2 passed" in text and "3 passed in 0.18s" in text
    assert "Run the failing test first." not in text  # a thinking block is left out
    assert first.metadata["final"].startswith("Fixed: ISO week dates")
    fb = logged_outcome(first, "")
    assert fb.correct is True and "the last test run passed" in fb.message and "| tail -3" in fb.message
    # the next message corrects the changelog turn; the correction carries the request it corrects
    fb = logged_outcome(second, "")
    assert fb.correct is False and fb.message.startswith("the user's next message: no, this project keeps")
    assert third.input.startswith("thanks! now add a line") and "The user then said: no, this project" in third.input
    fb = logged_outcome(third, "")
    assert (
        fb.correct is False
        and fb.message == "the user rejected a tool call: don't push to main yourself: open a pull request"
    )
    # noise: the subagent's sidechain, meta lines, slash-command markup and bookkeeping never become episodes
    everything = _everything(tasks)
    for absent in ("Search the repo for other", "Found 2 more", "local-command-caveat", "command-name", "/clear"):
        assert absent not in everything
    assert (
        report.turns == 4
        and report.unjudged == 1
        and dict(report.signals) == {"tests": 1, "correction": 1, "rejection": 1}
    )
    assert report.skipped["sidechain"] == 2 and report.skipped["meta"] == 1
    assert (
        report.skipped["ai-title"] == report.skipped["queue-operation"] == report.skipped["file-history-snapshot"] == 1
    )
    assert report.skipped["unfinished"] == 1 and "line 37: unfinished last line left out" in report.notes[0]


def test_secrets_are_redacted_before_anything_is_kept() -> None:
    tasks = load_sessions([CLAUDE], "claude-code")[0] + load_sessions([CODEX], "codex")[0]
    everything = _everything(tasks)
    assert not [s for s in SECRETS if s in everything]
    assert "DATABASE_URL=[REDACTED]" in everything and "RELEASE_TOKEN=[REDACTED]" in everything  # a .env read
    assert "Authorization: [REDACTED]" in everything and "OPENAI_API_KEY=[REDACTED]" in everything
    assert "UPLOAD_TOKEN=[REDACTED]" in everything


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("curl -H 'Authorization: Bearer abc.def.ghi123456'", "abc.def"),
        ("export GITHUB_TOKEN=ghp_0123456789abcdefghij0123", "ghp_"),
        ("ANTHROPIC_API_KEY='sk-ant-api03-AAAAAAAAAAAAAAAAAAAA'", "sk-ant"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("db.password = hunter2", "hunter2"),
        ("clientSecret: s3cr3t-value", "s3cr3t"),
        ("postgres://admin:pa55word@db:5432/x", "pa55word"),
        ("AWS key AKIAABCDEFGHIJKLMNOP in use", "AKIAABCDEFGHIJKLMNOP"),
        ("token eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4", "eyJhbGci"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----", "MIIEow"),
        ("AAAAAAAAAAAAAAAAAAAAAAAA\n-----END OPENSSH PRIVATE KEY-----", "AAAAAAAAAAAAAAAA"),
    ],
)
def test_redact_removes_secret_shapes(text: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out and "REDACTED" in out


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("PGPASSWORD=SuperSecretPg7 psql -h db", "PGPASSWORD=[REDACTED] psql -h db"),
        ("export DB_PASS=SuperSecretPass5", "export DB_PASS=[REDACTED]"),
        ("MYSQL_PWD='SuperSecret3' mysql", "MYSQL_PWD=[REDACTED] mysql"),
        ("mysql -u root --password SuperSecretCli1 db", "mysql -u root --password [REDACTED] db"),
        ("mysql --password=SuperSecretCli3 db", "mysql --password=[REDACTED] db"),
        ("mysql -uroot -pSuperSecretCli2 db", "mysql -uroot -p[REDACTED] db"),
        ("curl -u admin:SuperSecretBasic6 https://x", "curl -u admin:[REDACTED] https://x"),
        ("docker login -p SuperSecretDock10 reg.io", "docker login -p [REDACTED] reg.io"),
        (
            "echo SuperSecretDock11 | docker login -u me --password-stdin",
            "echo [REDACTED] | docker login -u me --password-stdin",
        ),
        ("sshpass -p SuperSecretSsh ssh host", "sshpass -p [REDACTED] ssh host"),
        ("gh auth --with-token --api-key k3y-Valu3", "gh auth --with-token --api-key [REDACTED]"),
        ("curl -H 'X-Api-Key: zq9Xabcdefgh777' x", "curl -H 'X-Api-Key: [REDACTED]' x"),  # no stray ]
        ("curl -H 'Cookie: session=abc123def' x", "curl -H 'Cookie: [REDACTED]' x"),
        ('{"client_secret":"SuperSecretJson8","n":1}', '{"client_secret":"[REDACTED]","n":1}'),  # still JSON
    ],
)
def test_redact_removes_passwords_in_names_and_flags(text: str, kept: str) -> None:
    assert redact(text) == kept
    if text.startswith("{"):
        assert json.loads(redact(text))["client_secret"] == "[REDACTED]"


def test_redact_keeps_ordinary_text() -> None:
    for text in (
        "monkey = 3",
        "the token count is 12",
        "Basic authentication is off",
        "KEYS.md",
        "pwd = os.getcwd()",  # the working directory, not a password
        "PWD=/home/dev OLDPWD=/tmp",
        "BYPASS_CACHE=1",
        "mysql -p billing",  # -p NAME asks for the password: NAME is the database
        "psql -p 5432 -h db",
        "echo $TOKEN | docker login -u me --password-stdin",  # a variable is no secret
        "curl -u $USER:$PASS https://x",
        "npm test -- --pass-with-no-tests",
        "git push --force",
        "ls -p",
        "the password is wrong",
    ):
        assert redact(text) == text
    assert redact("A=1\nexport B = two\n# comment", env_file=True) == "A=[REDACTED]\nexport B = [REDACTED]\n# comment"


def test_a_codex_rollout_becomes_judged_episodes() -> None:
    tasks, report = load_sessions([CODEX], "codex")
    assert report.turns == 3  # scaffolding (AGENTS.md, <environment_context>) is no request; event mirrors not twice
    first, second, third = tasks
    assert first.input.startswith("Rounding in ledger.total()")
    text = first.metadata["transcript"]
    assert "→ shell(command='pytest -q tests/test_ledger.py')" in text  # bash -lc CMD is CMD
    assert "→ apply_patch(input=" in text and "→ exec_command(command='scripts/test -q')" in text
    assert text.count("Totals now use Decimal") == 1  # the agent_message event and the item: once
    assert "metadata" not in text  # the JSON output's text, not its envelope
    fb = logged_outcome(first, "")
    assert fb.correct is True and fb.message == "the last test run passed: `scripts/test -q` exited 0"
    fb = logged_outcome(second, "")
    assert fb.correct is False and fb.message.startswith("the user's next message: that's wrong: the accountant")
    fb = logged_outcome(third, "")
    assert fb.correct is False and fb.message == "the user rejected a tool call (no reason given)"
    assert "Exit code: 2" in third.metadata["transcript"]  # an output given as content items
    assert report.skipped["world_state"] == 1 and report.skipped["reasoning"] == 1 and report.skipped["unfinished"] == 1


def _claude_line(kind: str, content: Any, **extra: Any) -> str:
    return json.dumps({"type": kind, "message": {"role": kind, "content": content}, **extra}, ensure_ascii=False)


def test_the_exit_code_comes_from_any_of_codexs_three_reports(tmp_path: Path) -> None:
    def call(cid: str, cmd: str) -> dict[str, Any]:
        args = json.dumps({"command": ["bash", "-lc", cmd]})
        return {"type": "response_item", "payload": {"type": "function_call", "name": "shell", "call_id": cid,
                                                      "arguments": args}}  # fmt: skip

    def output(cid: str, out: Any) -> dict[str, Any]:
        return {"type": "response_item", "payload": {"type": "function_call_output", "call_id": cid, "output": out}}

    def user(text: str) -> dict[str, Any]:
        content = [{"type": "input_text", "text": text}]
        return {"type": "response_item", "payload": {"type": "message", "role": "user", "content": content}}

    lines = [
        user("fix a"), call("a", "cargo test"), output("a", "Exit code: 101\nOutput:\ntest result: FAILED"),
        user("fix b"), call("b", "go test ./..."), output("b", "ok  \texample.com/b"),
        {"type": "event_msg", "payload": {"type": "exec_command_end", "call_id": "b", "exit_code": 0}},
        user("fix c"), call("c", "npm test"), output("c", json.dumps({"output": "Tests: 2 failed, 5 passed",
                                                                      "metadata": {"exit_code": 1}})),
        user("fix d"), call("d", "pytest -q | tail -1"), output("d", "Process exited with code 0\nOutput:\n3 failed"),
        user("fix e"), call("e", "ls"), output("e", "Exit code: 2"),
    ]  # fmt: skip
    path = tmp_path / "rollout-x.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    logs = list(session_logs(path, "codex", unjudged=True))
    got = [(log.get("signal"), (log.get("outcome") or {}).get("success")) for log in logs]
    # the piped pytest exited 0 but says "3 failed"; ls failing is no test, no check: no outcome
    assert got == [("tests", False), ("tests", True), ("tests", False), ("tests", False), (None, None)]


def test_the_earliest_codex_rollouts_are_read_too(tmp_path: Path) -> None:
    lines = [
        {"id": "0c1", "timestamp": "2025-05-01T10:00:00Z", "instructions": None},
        {"record_type": "state"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run the tests"}]},
        {"type": "function_call", "name": "shell", "call_id": "c1", "arguments": '{"command": ["pytest"]}'},
        {"type": "function_call_output", "call_id": "c1",
         "output": {"content": '{"output": "1 passed", "metadata": {"exit_code": 0}}', "success": True}},
    ]  # fmt: skip
    path = tmp_path / "rollout-2025-05-01T10-00-00-0c1.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (log,) = session_logs(path, "codex")
    assert log["task"] == "run the tests" and log["outcome"]["success"] is True


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("no, use the v2 endpoint", ("correction", False)),
        ("Nope.", ("correction", False)),
        ("That's wrong, the limit is 30 days", ("correction", False)),
        ("it still fails with the same error", ("correction", False)),
        ("Traceback (most recent call last):\n  File ...", ("correction", False)),
        ("you forgot the migration", ("correction", False)),
        ("thanks, but this is wrong", ("correction", False)),
        ("thanks!", ("approval", True)),
        ("No worries, thanks", None),  # neither: "no worries" is no correction, and it does not start with thanks
        ("perfect, now the docs", ("approval", True)),
        ("now add the docs", None),
    ],
)
def test_the_users_next_message_judges_a_turn(message: str, expected: tuple[str, bool] | None) -> None:
    episode = sessions._Episode("task")
    got = judge(episode, message)
    assert (got[:2] if got else None) == expected


def test_a_test_run_outranks_approval_and_a_correction_outranks_both() -> None:
    episode = sessions._Episode("task")
    episode.test = sessions._Check("pytest", exit_code=1, output="1 failed")
    episode.check = sessions._Check("ruff check", exit_code=0)
    assert judge(episode, "thanks!") == ("tests", False, "the last test run failed: `pytest` exited 1: 1 failed")
    assert judge(episode, "no, that is the wrong file")[:2] == ("correction", False)  # type: ignore[index]
    episode.test = None
    assert judge(episode, None) == ("checks", True, "the last check run passed: `ruff check` exited 0")


def test_a_huge_tool_result_is_bounded_and_redacted_where_it_is_cut(tmp_path: Path) -> None:
    """A 1 MB tool result (a log dumped by cat) with a secret in its middle and at its end, U+2028 inside: the
    episode's transcript stays within its bound, no secret is kept, and the failure summary at its end is read."""
    big = "\u2028".join(f"line {i} ok" for i in range(80_000)) + " API_KEY=sk-live-SECRETSECRETSECRET01\n2 failed"
    assert len(big) > 1_000_000
    middle = big[: len(big) // 2] + "password=hunter2hunter2 " + big[len(big) // 2 :]
    lines = [
        _claude_line("user", "run the suite and tell me what fails"),
        _claude_line(
            "assistant", [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "make test"}}]
        ),
        _claude_line("user", [{"type": "tool_result", "tool_use_id": "t1", "content": middle}]),
        _claude_line("assistant", [{"type": "text", "text": "Two tests fail."}]),
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (task,), _ = load_sessions([path], "claude-code")
    dumped = task.model_dump_json()
    assert len(dumped) < 20_000 and "hunter2" not in dumped and "SECRETSECRET" not in dumped
    assert "characters left out" in task.metadata["transcript"]
    fb = logged_outcome(task, "")
    assert fb.correct is False and "2 failed" in fb.message  # exit 0 (no is_error), but the output says it failed


def test_a_value_read_from_a_dotenv_is_redacted_everywhere_in_the_session(tmp_path: Path) -> None:
    value, quoted = "PlainEnvValueNoShape987", 'Quoted "Value" 42'
    lines = [
        _claude_line("user", f"earlier: is {value} right?"),  # said before the .env was read
        _claude_line("assistant", [{"type": "text", "text": "Let me look."}]),
        _claude_line("user", "which value does the app use? run the tests"),
        _claude_line(
            "assistant", [{"type": "tool_use", "id": "r", "name": "Read", "input": {"file_path": "/repo/.env"}}]
        ),
        _claude_line(
            "user",
            [{"type": "tool_result", "tool_use_id": "r", "content": f"     1→MY_VALUE={value}\n     2→Q='{quoted}'\n"}],
        ),
        _claude_line("assistant", [{"type": "text", "text": f"Done, used {value} from the env."}]),
        _claude_line(
            "assistant",
            [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": f"Q='{quoted}' APP={value} pytest"}}],
        ),
        _claude_line("user", [{"type": "tool_result", "tool_use_id": "t", "content": f"{value}: 1 passed"}]),
        _claude_line("user", "thanks"),
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    logs = list(session_logs(path, "claude-code", unjudged=True))
    dumped = json.dumps(logs)
    assert value not in dumped and "Quoted" not in dumped and "[REDACTED] from the env" in dumped
    tasks, _ = load_sessions([path], "claude-code", unjudged=True)
    assert value not in _everything(tasks) and "Quoted" not in _everything(tasks)
    assert "MY_VALUE=[REDACTED]" in _everything(tasks) and "1 passed" in _everything(tasks)


def test_an_over_size_line_is_skipped_and_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_LINE_BYTES", 2000)
    lines = [
        _claude_line("user", "fix it"),
        _claude_line("assistant", [{"type": "text", "text": "x" * 5000}]),
        _claude_line("assistant", [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "pytest"}}]),
        _claude_line("user", [{"type": "tool_result", "tool_use_id": "t", "content": "1 passed"}]),
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (task,), report = load_sessions([path], "claude-code")
    assert "xxxxx" not in task.metadata["transcript"] and report.skipped["over-size"] == 1
    assert "line 2: over 2,000 bytes" in report.notes[0]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            '{"type": "user", "message": {"role": "user", "content": "hi"}}\n{"type": "user", "mess\n{}\n',
            "line 2: not JSON",
        ),
        ("[1, 2]\n", "line 1: expected a JSON object"),
        ('{"type": "assistant", "message": "hello"}\n', "line 1: a assistant record's 'message' must be an object"),
        ('{"type": "user", "message": {"role": "user", "content": 7}}\n', "line 1: content must be a string or a list"),
        (
            '{"type": "user", "message": {"role": "user", "content": ["x"]}}\n',
            "line 1: a content block must be an object",
        ),
        ('{"type": "user", "message": {"role": "user", "content": "a"}}\n', "no episode to learn from"),
        ('{"type": "session_meta", "payload": {"id": "x"}}\n', "not a claude-code session"),
    ],
)
def test_a_malformed_session_is_a_clear_error_and_writes_nothing(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(LogError) as caught:
        load_sessions([path], "claude-code")
    assert problem in str(caught.value)
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["learn", "--format", "claude-code", str(path), "--db", db])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert PlaybookStore(db).list() == []  # nothing created, no model loaded


def test_directories_are_searched_for_sessions(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-home-dev-billing"
    (project / CLAUDE.stem / "subagents").mkdir(parents=True)
    shutil.copy(CLAUDE, project / CLAUDE.name)
    shutil.copy(CLAUDE, project / CLAUDE.stem / "subagents" / "agent-a1.jsonl")  # a subagent's: not a session
    shutil.copy(CLAUDE, project / "agent-b2.jsonl")  # the older place of a subagent's transcript
    assert session_files([tmp_path / "projects"], "claude-code") == [project / CLAUDE.name]
    day = tmp_path / "sessions" / "2026" / "03" / "04"
    day.mkdir(parents=True)
    shutil.copy(CODEX, day / CODEX.name)
    (day / "notes.jsonl").write_text("{}\n")
    assert session_files([tmp_path / "sessions"], "codex") == [day / CODEX.name]
    with pytest.raises(LogError, match="no codex session"):
        session_files([project], "codex")
    with pytest.raises(LogError, match="no such file"):
        session_files([tmp_path / "nowhere"], "codex")


def test_each_session_is_learned_into_a_version_with_a_lesson_and_no_secret_reaches_a_prompt(tmp_path: Path) -> None:
    """The learning bar of the issue: a Claude Code transcript and a Codex rollout each leave versions, one per
    judged episode, on the scripted provider; the prompts, the store and the trajectory hold no secret."""
    store = PlaybookStore(f"sqlite:///{tmp_path / 's.db'}")
    provider = ScriptedProvider(valid_reply)
    llm = LLM(provider)
    for name, path, fmt in (("cc", CLAUDE, "claude-code"), ("cx", CODEX, "codex")):
        tasks, _ = load_sessions([path], fmt)  # type: ignore[arg-type]
        result = learn(tasks, llm, store, name, run_id=f"sessions-{name}", workdir=tmp_path)
        assert not result.failed and [r.correct for r in result.results] == [True, False, False]
        assert store.head(name).version == 4 and store.head(name).n_bullets >= 1
        assert replay(tmp_path / f"sessions-{name}.trajectory.jsonl").ok
    prompts = "\n".join(m.content for call in provider.calls for m in call.messages)
    assert "the user rejected a tool call: don't push to main yourself" in prompts  # the signal reached the reflector
    assert "the last test run passed: `scripts/test -q` exited 0" in prompts
    stored = (tmp_path / "s.db").read_bytes().decode("utf-8", "replace")
    trajectories = "".join(p.read_text() for p in tmp_path.glob("*.trajectory.jsonl"))
    for where in (prompts, stored, trajectories):
        assert not [s for s in SECRETS if s in where]


def test_ace_learn_reads_sessions_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    run = CliRunner().invoke
    result = run(app, ["learn", "--format", "codex", str(FIXTURES), "--provider", "scripted:valid", "--db", db])
    assert result.exit_code == 0, result.output
    assert (
        "codex: 1 session file(s), 3 user turns: 3 episodes" in result.output
        and "unfinished last line" in result.output
    )
    assert PlaybookStore(db).head("codex").version == 4
    args = [
        "learn",
        "--format",
        "claude-code",
        str(CLAUDE),
        "-p",
        "billing",
        "--provider",
        "scripted:valid",
        "--db",
        db,
    ]
    assert run(app, args).exit_code == 0
    assert PlaybookStore(db).head("billing").version == 4
    again = run(app, args)  # the same files into the same playbook: resumed, nothing learned twice
    assert again.exit_code == 0 and PlaybookStore(db).head("billing").version == 4
    bad = run(app, ["learn", "--format", "cursor", str(CLAUDE), "--db", db])
    assert bad.exit_code == 1 and "a session format is one of claude-code, codex" in bad.output
    two = run(app, ["learn", str(CLAUDE), str(CODEX), "--db", db])
    assert two.exit_code == 2 and "one file at a time" in two.output


def test_chat_logs_split_lines_on_newlines_only(tmp_path: Path) -> None:
    """A chat log whose text holds a raw U+2028 (json.dumps(..., ensure_ascii=False) writes it as it is) is one
    line, not two."""
    log = {"messages": [{"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "ok"}]}
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(log, ensure_ascii=False) + "\n", encoding="utf-8")
    (task,) = load_logs(path)
    assert task.input == "a\u2028b"


def test_a_session_report_sums_up_what_was_read() -> None:
    report = SessionReport()
    list(session_logs(CLAUDE, "claude-code", report=report))
    assert report.summary().startswith("1 session file(s), 4 user turns: 3 episodes (outcome from: 1 correction, 1 ")
