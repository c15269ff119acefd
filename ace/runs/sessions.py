"""Coding-agent sessions as episodes to learn from: Claude Code transcripts and OpenAI Codex CLI rollouts.

``ace learn --format claude-code|codex PATH...`` reads them; :func:`load_sessions` is the same in Python. Each file
is read line by line (never whole: a 50 MB transcript costs one line at a time), every text that is kept is
redacted (:func:`redact`) and cut to a bound before it goes anywhere, and each *request* of the user becomes one
episode in the format of :mod:`ace.runs.from_logs` (then one step of the loop, like any logged conversation):

- the task: the user's message (a correction of the previous turn carries that turn's request with it);
- the trajectory: the assistant's text, its tool calls (``Bash(command='pytest -q')``) and their results, in order,
  until the user's next message (long episodes keep their start and end);
- the outcome, from the session itself (the first rule that applies, :func:`judge`):

  1. the user's next message reads as a correction ("no, ...", "that's wrong", "still failing", a pasted
     traceback): failed, with that message as the feedback;
  2. the user rejected one of the agent's tool calls (Claude Code's "The user doesn't want to proceed with this
     tool use", Codex's "rejected by user"): failed, with the reason the user gave;
  3. the last test command the agent ran in the episode (``pytest``, ``npm test``, ``go test``, ``cargo test``, ...;
     failing that, the last build, lint or type check): its exit code, read from the result, or a failure summary in
     its output (``3 failed``: a test piped into ``tail`` exits 0): passed or failed;
  4. the user's next message reads as approval ("thanks", "perfect", "lgtm", "works"): passed.

  A turn none of these apply to has no outcome and is left out (``unjudged=True`` keeps it, with no outcome). These
  are weak signals, read from words and exit codes: a user who moves on without a word is not approval, a
  sarcastic "great" is, and a test run that passes says nothing about what the user asked for.

What is read (the formats are the tools' own, undocumented by Claude Code and subject to change; fields not
listed are ignored, unknown record types skipped and counted):

- **Claude Code** (``~/.claude/projects/<project>/<session>.jsonl``, seen in versions 1.0 to 2.1): records of
  ``type`` ``user`` / ``assistant`` with ``message.content`` a string or a list of blocks (``text``, ``tool_use``
  with ``id``/``name``/``input``, ``tool_result`` with ``tool_use_id``/``content``/``is_error``; ``thinking`` and
  ``image`` are left out); ``isSidechain`` (a subagent's turns), ``isMeta`` and ``isCompactSummary`` records are
  skipped, as are ``summary``, ``system``, ``file-history-snapshot`` and other bookkeeping; slash-command markup
  (``<command-name>``, ``<local-command-stdout>``) and ``<system-reminder>`` blocks are dropped from user text. A
  Bash result starting ``Exit code N`` exited N; one without ``is_error`` exited 0.
- **Codex CLI** (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``, the ``{"timestamp", "type", "payload"}`` lines
  of Codex 0.3x and later, and the earlier lines that were the bare items): ``response_item`` payloads of
  ``type`` ``message`` (``role`` user / assistant, ``content`` items with ``text``; developer and system messages,
  and user messages that are only the CLI's scaffolding such as ``<environment_context>``, are left out),
  ``function_call`` / ``custom_tool_call`` / ``local_shell_call`` and their ``*_output`` (``output`` a string, a
  list of content items, or ``{"content", "success"}``; the exit code from ``"metadata": {"exit_code": N}``, an
  ``Exit code: N`` or ``Process exited with code N`` line); ``event_msg`` ``exec_command_end`` (``exit_code``: kept
  only by Codex's extended history), ``turn_aborted``, and ``user_message`` / ``agent_message`` when the file has
  no ``response_item`` message for them. ``reasoning``, ``session_meta``, ``turn_context`` and ``compacted`` are
  skipped.

A line that is not JSON is a :class:`~ace.runs.from_logs.LogError` naming the file and line (nothing is learned),
except an unfinished last line (no newline at the end: a session still being written), which is left out and
noted; so is a line over :data:`MAX_LINE_BYTES`. Lines are split on ``\\n`` only (a U+2028 inside a text is text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ace.errors import InvalidInput
from ace.runs.from_logs import MAX_CHARS, LogError, to_task
from ace.tasks import Task

Format = Literal["claude-code", "codex"]
FORMATS: tuple[Format, ...] = ("claude-code", "codex")
MAX_LINE_BYTES = 16 << 20  # a longer line (a pasted blob) is skipped and noted, never parsed
MAX_TEXT_CHARS = 4000  # a user or assistant message kept, at most
MAX_RESULT_CHARS = 2000  # a tool result kept, at most (its start and its end: a test run's summary is at its end)
MAX_ARG_CHARS = 600  # each argument of a tool call (an Edit's old and new text), at most
MAX_TASK_CHARS = 2000  # the task an episode is about
EPISODE_HEAD, EPISODE_TAIL = 40, 60  # messages of one episode kept while reading: its first and its last
Signal = Literal["correction", "rejection", "tests", "checks", "approval"]


# -- secrets ------------------------------------------------------------------------------------------------------
_REDACTED = "[REDACTED]"
# a name that says its value is secret: API_KEY, db.password, GITHUB_TOKEN_2 (whole words, so not "monkey"), and
# camelCase apiKey / clientSecret
# and, as shell and .env names, DB_PASS / MYSQL_PWD (a pass or pwd segment after another: a bare ``pwd`` is the
# working directory) and UPPER names with the word glued on: PGPASSWORD, PGPASS, VAULTTOKEN, CLIENTSECRET (not
# BYPASS, OLDPWD)
_SECRET_NAME = (
    r"(?:(?i:(?:[a-z0-9]+[_.-])*(?:key|keys|token|tokens|secret|secrets|password|passwd|passphrase|credentials?|auth"
    r"|dsn|cookie)(?:[_.-][a-z0-9]+)?)"
    r"|(?i:(?:[a-z0-9]+[_.-])+(?:pass|pwd))"
    r"|(?!BYPASS(?:_|\b)|OLDPWD\b)[A-Z][A-Z0-9]*(?:PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|CREDENTIALS?|APIKEY)"
    r"(?:_[A-Z0-9]+)*"
    r"|[a-z][a-zA-Z0-9]*(?:Key|Token|Secret|Password|Passwd|Credentials?))"
)
_NOT_DONE = r"(?![\s\"']*\[REDACTED)"  # a value redacted already (a header's) is not redacted twice


def _json_value(m: re.Match[str]) -> str:
    """``"name": value`` with the value redacted and its quotes kept (JSON stays JSON)."""
    q = m.group(2)[0] if m.group(2)[:1] in ('"', "'") else ""
    return f"{m.group(1)}{q}{_REDACTED}{q}"


_FLAG_NAME = r"(?:[a-z0-9]+-)*(?:password|passwd|pass|token|secret|api-key|apikey|access-key|secret-key|auth-token)"
_VALUE = r"(?![\"']?\$)(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'`;&|)]+)"  # not a $VARIABLE: that is no secret
_SECRETS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # private keys, whole
    (re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)", re.S),
     "[REDACTED PRIVATE KEY]"),
    (re.compile(r"(?m)(?:^[A-Za-z0-9+/=]{16,}\r?\n)*-----END[A-Z ]*PRIVATE KEY-----"), "[REDACTED PRIVATE KEY]"),
    # HTTP authorization, in headers, curl -H and code
    (re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie)(\s*[:=]\s*)[^\r\n\"']+"),
     rf"\1\2{_REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{12,}"),
     rf"\1 {_REDACTED}"),
    # credentials in URLs
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{_REDACTED}@"),
    # keys that announce themselves
    (re.compile(r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}"), _REDACTED),  # OpenAI, Anthropic, Stripe
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"), _REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), _REDACTED),  # GitLab
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), _REDACTED),  # Slack
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), _REDACTED),  # AWS access key ids
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), _REDACTED),  # Google
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), _REDACTED),  # Hugging Face
    (re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), _REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), _REDACTED),  # JWTs
    # NAME=value and "name": "value" where the name says it is a secret (.env files, exports, JSON, YAML)
    (re.compile(rf"\b({_SECRET_NAME})(\s*=\s*){_NOT_DONE}(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'`;&|,)]+)"),
     rf"\1\2{_REDACTED}"),
    (re.compile(rf"(\b{_SECRET_NAME}[\"']?\s*:\s*){_NOT_DONE}(\"[^\"\n]*\"|'[^'\n]*'|[^\s,}}\]]+)"), _json_value),
    # command-line flags: --password X, --password=X, --db-password X, --api-key X (not --password-stdin)
    (re.compile(rf"(\s--{_FLAG_NAME})(=|\s+){_NOT_DONE}(?!-){_VALUE}"), rf"\1\2{_REDACTED}"),
    # mysql -pSECRET (glued: ``-p NAME`` asks for the password and NAME is the database), sshpass -p, docker login -p
    (re.compile(r"\b((?:mysql|mysqldump|mysqladmin|mysqlimport|mariadb|mariadb-dump)\b[^\n|;&]*?\s-p)(?![\"']?\$)"
                r"(\"[^\"\n]+\"|'[^'\n]+'|[^\s\"'`;&|)]+)"), rf"\1{_REDACTED}"),
    (re.compile(rf"\b((?:sshpass|(?:docker|podman|nerdctl|buildah|skopeo|helm(?:\s+registry)?)\s+login\b[^\n|;&]*?)"
                rf"\s-p\s*){_NOT_DONE}{_VALUE}"), rf"\1{_REDACTED}"),
    # echo SECRET | docker login --password-stdin
    (re.compile(rf"\b((?:echo|printf)(?:\s+-[a-z]+)*\s+){_NOT_DONE}{_VALUE}(\s*\|[^\n|]*--password-stdin)"),
     rf"\1{_REDACTED}\3"),
    # curl -u user:password, --user user:password (wget --user X --password Y is a flag above)
    (re.compile(r"\b(curl\b[^\n|;&]*?\s(?:-u\s*|--user(?:=|\s+)))([\"']?)([^\s:\"']+):(?!\[REDACTED|\$)[^\s\"']+\2"),
     rf"\1\2\3:{_REDACTED}\2"),
]  # fmt: skip
# a line of a .env file, as cat prints it or as Claude Code's Read does (its line number, then → or a tab)
_ENV_LINE = re.compile(r"(?m)^(\s*(?:\d+[→\t])?\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=\s*)(?!\s*$).+$")
_ENV_FILE = re.compile(r"(?:^|[\s/\"'=])\.env(?:\.[\w.-]+)?(?=$|[\s\"'`;&|)])")


def redact(text: str, *, env_file: bool = False) -> str:
    """``text`` with what looks like a secret replaced by ``[REDACTED]``: private keys, ``Authorization:`` and
    similar headers, bearer tokens, passwords in URLs, keys with a known prefix (``sk-``, ``ghp_``, ``AKIA``,
    ``xoxb-``, ``AIza``, ``hf_``, JWTs) and values assigned to names that say they are secret (``API_KEY=``,
    ``"password": ...``). With ``env_file`` (the text is a ``.env`` file's content) every ``NAME=value`` line's
    value goes. A pattern, not a proof: a secret with no tell-tale shape or name gets through."""
    if env_file:
        text = _ENV_LINE.sub(rf"\1{_REDACTED}", text)
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


_ENV_VALUE = re.compile(r"(?m)^\s*(?:\d+[→\t])?\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=[ \t]*(.*?)\s*$")
MIN_ENV_VALUE = 6  # a shorter value of a .env file (PORT=8080, DEBUG=true) is not searched for elsewhere


def _env_values(text: str, known: set[str]) -> None:
    """Add to ``known`` the values of a ``.env`` file's ``NAME=value`` lines (quotes taken off), so that they are
    redacted wherever the session repeats them (:func:`_forget`)."""
    for m in _ENV_VALUE.finditer(text[:MAX_LINE_BYTES]):
        value = m.group(1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if len(value.strip()) >= MIN_ENV_VALUE and "[REDACTED" not in value:
            known.add(value.strip())


def _forget(value: Any, known: Iterable[str]) -> Any:
    """``value`` (an episode log: strings, lists, dicts) with every string of ``known`` replaced by ``[REDACTED]``,
    as written and as JSON writes it inside a string (a tool call's arguments), longest first."""
    pairs: list[tuple[str, str]] = []
    for k in sorted(known, key=len, reverse=True):
        pairs.append((k, _REDACTED))
        if (escaped := json.dumps(k, ensure_ascii=False)[1:-1]) != k:
            pairs.append((escaped, _REDACTED))
        if (ascii_escaped := json.dumps(k)[1:-1]) not in (k, escaped):
            pairs.append((ascii_escaped, _REDACTED))
    if not pairs:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for a, b in pairs:
                if a in v:
                    v = v.replace(a, b)
            return v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(value)


def _cut(text: str, limit: int) -> str:
    """``text`` within about ``limit`` characters: its start and its end, with what was left out counted. The cut
    falls on whitespace where there is some near it, so no token (a key, a password) is kept in part."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[len(text) - (limit - limit * 2 // 3) :]
    if (i := max(head.rfind(" ", len(head) - 120), head.rfind("\n", len(head) - 120))) > 0:
        head = head[:i]
    j = [k for k in (tail.find(" ", 0, 120), tail.find("\n", 0, 120)) if k >= 0]
    if j:
        tail = tail[min(j) + 1 :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters left out ...]\n{tail}"


def _clean(text: str, limit: int, *, env_file: bool = False) -> str:
    """``text`` cut to ``limit`` (on whitespace: :func:`_cut`), then redacted: a megabyte of tool output is not
    scanned for secrets, the part of it kept is."""
    return redact(_cut(text, limit), env_file=env_file)


# -- what both formats become ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _User:
    text: str


@dataclass(frozen=True)
class _Assistant:
    text: str


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    args: dict[str, Any]
    command: str | None  # the shell command, for a shell tool


@dataclass(frozen=True)
class _Result:
    id: str
    text: str
    exit_code: int | None = None  # known exit code of a shell command
    error: bool | None = None  # the tool said it failed (exit code unknown)
    rejected: str | None = None  # the user refused the call: their reason ("" without one)


@dataclass(frozen=True)
class _Exit:
    id: str
    exit_code: int


_Event = _User | _Assistant | _Call | _Result | _Exit


@dataclass
class SessionReport:
    """What reading the sessions found: counts for the summary line, and notes (a truncated last line...)."""

    files: int = 0
    records: int = 0  # lines of the format's conversation records read (user, assistant, response items)
    turns: int = 0  # user requests seen
    episodes: int = 0  # turns kept as episodes
    unjudged: int = 0  # turns with no outcome signal, left out (or kept with unjudged=True)
    silent: int = 0  # turns the agent never answered (no text, no tool call)
    signals: Counter[str] = field(default_factory=Counter)  # episodes per signal
    skipped: Counter[str] = field(default_factory=Counter)  # lines left out, by kind
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        by = ", ".join(f"{n} {s}" for s, n in sorted(self.signals.items())) or "none"
        skipped = ", ".join(f"{n} {k}" for k, n in sorted(self.skipped.items()))
        unjudged = f"{self.unjudged} without an outcome signal"
        return (
            f"{self.files} session file(s), {self.turns} user turns: {self.episodes} episodes (outcome from: {by}); "
            f"{unjudged}; {self.silent} unanswered" + (f"; lines skipped: {skipped}" if skipped else "")
        )


# -- reading lines ---------------------------------------------------------------------------------------------------
def _lines(path: Path, report: SessionReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each JSON object line of ``path``, streamed; see the module doc for bad lines."""
    with path.open("rb") as f:
        for n, raw, complete in _raw_lines(f):
            if raw is None:
                report.skipped["over-size"] += 1
                report.notes.append(f"{path}, line {n}: over {MAX_LINE_BYTES:,} bytes, left out")
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if not complete:  # the last line, unfinished: a session still being written
                    report.skipped["unfinished"] += 1
                    report.notes.append(f"{path}, line {n}: unfinished last line left out")
                    return
                raise LogError(f"{path}, line {n}: not JSON ({e})") from None
            if not isinstance(record, dict):
                raise LogError(f"{path}, line {n}: expected a JSON object, got {type(record).__name__}")
            yield n, record


def _raw_lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None, bool]]:
    """(number, bytes or None when over size, ends with a newline) per ``\\n``-terminated line, in bounded memory."""
    n, buf, over = 0, bytearray(), False
    while chunk := f.read(1 << 20):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            n += 1
            if not over:
                buf += chunk[start:end]
            yield n, (None if over or len(buf) > MAX_LINE_BYTES else bytes(buf)), True
            buf, over, start = bytearray(), False, end + 1
        if not over:
            buf += chunk[start:]
            if len(buf) > MAX_LINE_BYTES:
                buf, over = bytearray(), True
    if buf or over:
        yield n + 1, (None if over else bytes(buf)), False


def _fail(path: Path, n: int, problem: str) -> LogError:
    return LogError(f"{path}, line {n}: {problem}")


# -- Claude Code ------------------------------------------------------------------------------------------------------
_MARKUP = re.compile(r"<(command-name|command-message|command-args|local-command-stdout|local-command-stderr|"
                     r"local-command-caveat|bash-input|bash-stdout|bash-stderr)>.*?</\1>", re.S)  # fmt: skip
_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.S)
_INTERRUPTED = re.compile(r"^\[Request interrupted by user[^\]]*\]$")
_CLAUDE_EXIT = re.compile(r"^(?:Error: )?Exit code (-?\d+)\b")
_CLAUDE_REJECTED = "The user doesn't want to proceed with this tool use"
_CLAUDE_REASON = "the user said:\n"
_SHELL_TOOLS = {"bash", "shell", "exec_command", "local_shell", "container.exec", "run_terminal_cmd"}


def _block_text(content: Any, path: Path, n: int) -> str:
    """A tool result's or message's content (a string, or blocks with ``text``) as text; images as ``[image]``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, str):
                parts.append(b)
            elif isinstance(b, Mapping):
                if isinstance(b.get("text"), str):
                    parts.append(b["text"])
                elif b.get("type") in ("image", "input_image"):
                    parts.append("[image]")
        return "\n".join(parts)
    raise _fail(path, n, f"content must be a string or a list of blocks, not {type(content).__name__}")


def _args(raw: Any) -> dict[str, Any]:
    """A tool call's input as a small dict: each text value cut and redacted (an Edit's old and new text)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return {"input": _clean(raw, MAX_ARG_CHARS)}
    if not isinstance(raw, Mapping):
        return {"input": _clean(json.dumps(raw, default=str), MAX_ARG_CHARS)}
    out: dict[str, Any] = {}
    for k, v in list(raw.items())[:12]:
        text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
        out[str(k)[:60]] = _clean(text, MAX_ARG_CHARS)
    return out


def _user_text(text: str) -> str:
    text = _REMINDER.sub("", _MARKUP.sub("", text))
    return text.strip()


def _claude(path: Path, report: SessionReport, known: set[str]) -> Iterator[_Event]:
    calls: dict[str, str] = {}  # tool_use id -> tool name (a shell's result has an exit code; a Read's does not)
    env_calls: set[str] = set()  # calls that read a .env file: every value of their result is a secret
    for n, rec in _lines(path, report):
        kind = rec.get("type")
        if kind not in ("user", "assistant"):
            report.skipped[str(kind)[:40] if kind else "untyped"] += 1
            continue
        report.records += 1
        if rec.get("isSidechain") or rec.get("isMeta") or rec.get("isCompactSummary"):
            report.skipped["sidechain" if rec.get("isSidechain") else "meta"] += 1
            continue
        message = rec.get("message")
        if not isinstance(message, Mapping):
            raise _fail(path, n, f"a {kind} record's 'message' must be an object")
        content = message.get("content")
        blocks: list[Any] = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not isinstance(blocks, list):
            raise _fail(path, n, f"content must be a string or a list of blocks, not {type(content).__name__}")
        for b in blocks:
            if not isinstance(b, Mapping):
                raise _fail(path, n, f"a content block must be an object, got {str(b)[:60]!r}")
            t = b.get("type")
            if kind == "assistant" and t == "text":
                if text := str(b.get("text") or "").strip():
                    yield _Assistant(_clean(text, MAX_TEXT_CHARS))
            elif kind == "assistant" and t == "tool_use":
                name, cid = str(b.get("name") or "tool"), str(b.get("id") or f"line{n}")
                calls[cid] = name
                if _reads_env(b.get("input")):
                    env_calls.add(cid)
                args = _args(b.get("input"))
                command = args.get("command") if name.lower() in _SHELL_TOOLS else None
                yield _Call(cid, name, args, command)
            elif kind == "user" and t == "tool_result":
                yield _claude_result(b, calls, env_calls, path, n, known)
            elif kind == "user" and t == "text":
                text = _user_text(str(b.get("text") or ""))
                if _INTERRUPTED.match(text):
                    report.skipped["interruption"] += 1
                elif text:
                    yield _User(_clean(text, MAX_TEXT_CHARS))
            # thinking, redacted_thinking, image, and blocks of kinds not known: left out


def _claude_result(
    b: Mapping[str, Any], calls: Mapping[str, str], env_calls: set[str], path: Path, n: int, known: set[str]
) -> _Result:
    cid = str(b.get("tool_use_id") or "")
    text = _block_text(b.get("content"), path, n)
    if text.startswith(_CLAUDE_REJECTED):
        reason = text.split(_CLAUDE_REASON, 1)[1].strip() if _CLAUDE_REASON in text else ""
        return _Result(cid, "[rejected by the user]", rejected=_clean(reason, MAX_TEXT_CHARS))
    error = b.get("is_error") is True
    exit_code = None
    if cid in env_calls:
        _env_values(text, known)
    if calls.get(cid, "").lower() in _SHELL_TOOLS:
        m = _CLAUDE_EXIT.match(text)
        exit_code = int(m.group(1)) if m else (None if error else 0)
    return _Result(cid, _clean(text, MAX_RESULT_CHARS, env_file=cid in env_calls), exit_code=exit_code, error=error)


def _reads_env(raw: Any) -> bool:
    """Whether a tool call's input names a ``.env`` file (Read's file_path, ``cat .env``): its result is secret."""
    try:
        text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    except (TypeError, ValueError):
        return False
    return bool(_ENV_FILE.search(text))


# -- Codex CLI --------------------------------------------------------------------------------------------------------
_ITEM_TYPES = {"message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
               "local_shell_call", "reasoning", "web_search_call"}  # fmt: skip
_SCAFFOLD = re.compile(r"^\s*(?:<([A-Za-z_][\w -]*)>.*</\1>\s*|# AGENTS\.md instructions.*|<INSTRUCTIONS>.*)$", re.S)
_CODEX_EXIT = re.compile(r"(?m)^(?:Exit code:|Process exited with code)\s*(-?\d+)")
_CODEX_REJECTED = re.compile(r"(?i)\b(?:rejected|declined|denied) by (?:the )?user\b")


def _command(args: Mapping[str, Any]) -> str | None:
    """The shell command a Codex call ran: ``cmd``, or ``command`` as argv (``bash -lc CMD`` is CMD)."""
    raw = args.get("cmd", args.get("command"))
    if isinstance(raw, str) and raw.startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            raw = json.loads(raw)
    if isinstance(raw, list):
        argv = [str(a) for a in raw]
        if len(argv) == 3 and argv[0].rsplit("/", 1)[-1] in ("bash", "sh", "zsh") and argv[1] in ("-lc", "-c"):
            return argv[2]
        return " ".join(argv)
    return raw if isinstance(raw, str) else None


def _codex_output(raw: Any, path: Path, n: int) -> tuple[str, int | None, bool | None]:
    """A ``*_output`` payload's output as (text, exit code, failed)."""
    failed = None
    if isinstance(raw, Mapping):  # early Codex: {"content", "success"}
        failed = raw.get("success") is False or None
        raw = raw.get("content", "")
    text = _block_text(raw, path, n)
    exit_code = None
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping) and isinstance(parsed.get("metadata"), Mapping):
            code = parsed["metadata"].get("exit_code")
            exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            text = str(parsed.get("output", text))
    if exit_code is None and (m := _CODEX_EXIT.search(text[:400])):
        exit_code = int(m.group(1))
    return text, exit_code, failed


def _codex(path: Path, report: SessionReport, known: set[str]) -> Iterator[_Event]:
    # the user's and the agent's words are in response_item messages, and again in event_msg user_message /
    # agent_message (what the TUI shows): the events are read only until a response_item message is seen
    items_seen = False
    shells: dict[str, bool] = {}  # call id -> is a shell command
    env_calls: set[str] = set()  # calls that read a .env file
    for n, rec in _lines(path, report):
        kind, payload = rec.get("type"), rec.get("payload")
        if "payload" not in rec and kind in _ITEM_TYPES:  # the earliest rollouts: one bare item per line
            kind, payload = "response_item", rec
        if kind not in ("response_item", "event_msg"):
            report.skipped[str(kind)[:40] if kind else ("state" if "record_type" in rec else "untyped")] += 1
            continue
        if not isinstance(payload, Mapping):
            raise _fail(path, n, f"a {kind} line's 'payload' must be an object")
        report.records += 1
        t = payload.get("type")
        if kind == "event_msg":
            if t == "exec_command_end" and isinstance(payload.get("exit_code"), int):
                yield _Exit(str(payload.get("call_id") or ""), int(payload["exit_code"]))
            elif t in ("user_message", "agent_message") and not items_seen:
                text = str(payload.get("message") or "").strip()
                if text and not (t == "user_message" and _SCAFFOLD.match(text)):
                    clean = _clean(text, MAX_TEXT_CHARS)
                    yield _User(clean) if t == "user_message" else _Assistant(clean)
            elif t == "turn_aborted":
                report.skipped["interruption"] += 1
            else:
                report.skipped[f"event {str(t)[:30]}"] += 1
            continue
        if t == "message":
            role = payload.get("role")
            text = _block_text(payload.get("content"), path, n).strip()
            if role == "user":
                items_seen = True
                if text and not _SCAFFOLD.match(text):
                    yield _User(_clean(text, MAX_TEXT_CHARS))
            elif role == "assistant":
                items_seen = True
                if text:
                    yield _Assistant(_clean(text, MAX_TEXT_CHARS))
            else:
                report.skipped[f"{role} message"] += 1
        elif t in ("function_call", "custom_tool_call", "local_shell_call"):
            cid = str(payload.get("call_id") or payload.get("id") or f"line{n}")
            name = str(payload.get("name") or ("shell" if t == "local_shell_call" else "tool"))
            if t == "local_shell_call":
                action = payload.get("action")
                raw_args: Any = action if isinstance(action, Mapping) else {}
            else:
                raw_args = payload.get("arguments") if t == "function_call" else {"input": payload.get("input")}
            parsed = _parsed_args(raw_args)
            command = _command(parsed) if name.lower() in _SHELL_TOOLS else None
            shells[cid] = command is not None
            if _reads_env(parsed):
                env_calls.add(cid)
            args = _args({"command": command} if command is not None else parsed)
            yield _Call(cid, name, args, args.get("command") if command is not None else None)
        elif t in ("function_call_output", "custom_tool_call_output"):
            cid = str(payload.get("call_id") or "")
            text, exit_code, failed = _codex_output(payload.get("output"), path, n)
            if _CODEX_REJECTED.search(text[:300]) and exit_code is None:
                yield _Result(cid, "[rejected by the user]", rejected="")
                continue
            if not shells.get(cid):
                exit_code = None
            if cid in env_calls:
                _env_values(text, known)
            text = _clean(text, MAX_RESULT_CHARS, env_file=cid in env_calls)
            yield _Result(cid, text, exit_code=exit_code, error=failed)
        else:  # reasoning, web_search_call, kinds not known
            report.skipped[str(t)[:40]] += 1


def _parsed_args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return {"input": raw}
    return dict(raw) if isinstance(raw, Mapping) else {"input": raw}


# -- judging an episode ----------------------------------------------------------------------------------------------
_TESTS = re.compile(
    r"(?:^|[\s;&|(`])(?:pytest|py\.test|python[\d.]*\s+-m\s+(?:pytest|unittest)|tox|nox|"
    r"(?:npm|pnpm|yarn|bun)(?:\s+run)?\s+test|npx\s+(?:jest|vitest|mocha|playwright\s+test)|jest|vitest|mocha|"
    r"go\s+test|cargo\s+(?:test|nextest)|mvn\b[^|;&]*\s(?:test|verify)|(?:\./)?gradlew?\s+(?:\S+\s+)*test|"
    r"make\s+(?:test|check)|ctest|rspec|phpunit|dotnet\s+test|mix\s+test|swift\s+test|scripts/test|"
    r"bundle\s+exec\s+(?:rspec|rake\s+test))(?=$|[\s;&|)`])"
)
_CHECKS = re.compile(
    r"(?:^|[\s;&|(`])(?:make|cargo\s+(?:build|check|clippy)|go\s+(?:build|vet)|tsc|mypy|pyright|ruff|flake8|"
    r"pylint|eslint|(?:npm|pnpm|yarn)\s+run\s+(?:build|lint|typecheck|check)|gcc|g\+\+|clang|javac|"
    r"(?:\./)?gradlew?\s+build|mvn\s+(?:compile|package))(?=$|[\s;&|)`])"
)
_FAILED_OUTPUT = re.compile(
    r"(?im)\b[1-9]\d* (?:failed|errors?|failures?)\b|^FAIL(?:ED)?\b|test result: FAILED|^ERROR\b|"
    r"Tests:\s+[1-9]\d* failed|\bfailures=[1-9]"
)
_CORRECTION = re.compile(
    r"(?is)^\W*(?:no\b(?![-\s]+(?:worries|problem|rush|need))|nope\b|wrong\b|incorrect\b|not\s+(?:what|quite|right|"
    r"correct|like\s+that)|(?:that|this|it)(?:'s|\s+is|\s+was)\s+(?:wrong|incorrect|not\s+(?:right|correct|it|what))|"
    r"(?:it\s+)?(?:doesn'?t|does\s+not|didn'?t|did\s+not)\s+work|(?:(?:it|that|this|the\s+\w+)\s+)?still\s+"
    r"(?:fail|broken|not|doesn'?t|does\s+not|"
    r"wrong|the\s+same|getting|seeing|an?\s+error)|you\s+(?:broke|didn'?t|did\s+not|forgot|missed|deleted)|"
    r"(?:it|that|this)(?:'s|\s+is)?\s+(?:still\s+)?(?:broken|failing|fails)|undo\b|revert\b|stop\b|why\s+did\s+you|"
    r"that\s+broke|(?:error|exception)\s*:)"
    r"|\b(?:that'?s|this\s+is|it'?s)\s+(?:wrong|incorrect|not\s+right)\b|Traceback \(most recent call last\)"
)
_APPROVAL = re.compile(
    r"(?i)^\W*(?:thanks|thank\s+you|thx|ty\b|great|perfect|awesome|excellent|nice|lgtm|looks\s+good|good\s+job|"
    r"well\s+done|(?:it|that|this)\s+works|works\b|exactly|yes[,!.]?\s+(?:that|this|it)\s+(?:works|is\s+right))"
)


@dataclass
class _Check:
    command: str
    exit_code: int | None = None
    output: str = ""

    def failed(self) -> bool | None:
        if self.exit_code not in (None, 0):
            return True
        if _FAILED_OUTPUT.search(self.output[-MAX_RESULT_CHARS:]):
            return True  # "3 failed" in the output of a test piped into tail (which exits 0)
        return None if self.exit_code is None else False


@dataclass
class _Episode:
    task: str
    said: str = ""  # the user's words that opened it
    last_said: str = ""  # the agent's last words
    head: list[dict[str, Any]] = field(default_factory=list)
    tail: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EPISODE_TAIL))
    left_out: int = 0
    spoke: bool = False
    test: _Check | None = None  # the last test command run
    check: _Check | None = None  # the last build / lint / type check run
    rejections: list[str] = field(default_factory=list)
    pending: dict[str, _Check] = field(default_factory=dict)  # shell calls by id, until their result

    def add(self, message: dict[str, Any]) -> None:
        if len(self.head) < EPISODE_HEAD:
            self.head.append(message)
            return
        if len(self.tail) == self.tail.maxlen:
            self.left_out += 1
        self.tail.append(message)

    def messages(self) -> list[dict[str, Any]]:
        gap = [{"role": "assistant", "content": f"[... {self.left_out} steps of this episode left out ...]"}]
        return [{"role": "user", "content": self.task}, *self.head, *(gap if self.left_out else []), *self.tail]


def judge(episode: _Episode, next_user: str | None) -> tuple[Signal, bool, str] | None:
    """The outcome of ``episode`` as (signal, success, feedback), by the rules of the module doc; None without."""
    if next_user is not None and _CORRECTION.search(next_user):
        return "correction", False, f"the user's next message: {_cut(next_user, 600)}"
    if episode.rejections:
        reasons = [r for r in episode.rejections if r]
        said = f": {_cut(' / '.join(reasons), 600)}" if reasons else " (no reason given)"
        return "rejection", False, f"the user rejected a tool call{said}"
    runs: tuple[tuple[Signal, str, _Check | None], ...] = (("tests", "test", episode.test),
                                                           ("checks", "check", episode.check))  # fmt: skip
    for signal, what, check in runs:
        if check is None or (failed := check.failed()) is None:
            continue
        ran = f"`{_cut(check.command, 200)}`" + ("" if check.exit_code is None else f" exited {check.exit_code}")
        if failed:
            return signal, False, f"the last {what} run failed: {ran}: {_cut(check.output.strip(), 600) or '-'}"
        return signal, True, f"the last {what} run passed: {ran}"
    if next_user is not None and _APPROVAL.search(next_user):
        return "approval", True, f"the user's next message: {_cut(next_user, 300)}"
    return None


def _episodes(events: Iterable[_Event], stem: str, report: SessionReport, unjudged: bool) -> Iterator[dict[str, Any]]:
    """Events of one session as episode logs (the format of :mod:`ace.runs.from_logs`), each judged."""
    current: _Episode | None = None
    k = 0

    def close(ep: _Episode, next_user: str | None) -> dict[str, Any] | None:
        nonlocal k
        if not ep.spoke:
            report.silent += 1
            return None
        verdict = judge(ep, next_user)
        if verdict is None:
            report.unjudged += 1
            if not unjudged:
                return None
        k += 1
        log: dict[str, Any] = {"id": f"{stem}#{k}", "task": ep.task, "messages": ep.messages()}
        if verdict is not None:
            signal, success, message = verdict
            report.signals[signal] += 1
            log |= {"outcome": {"success": success, "message": message}, "signal": signal}
        report.episodes += 1
        return log

    for ev in events:
        if isinstance(ev, _User):
            if current is not None and not current.spoke and ev.text == current.said:
                continue  # the same words twice (Codex logs a message as an item and as an event)
            report.turns += 1
            task = ev.text
            if current is not None:
                if (log := close(current, ev.text)) is not None:
                    yield log
                if _CORRECTION.search(ev.text):  # a correction carries the request it corrects
                    task = f"{_cut(current.task, MAX_TASK_CHARS // 2)}\n\nThe user then said: {ev.text}"
            current = _Episode(_cut(task, MAX_TASK_CHARS), said=ev.text)
            continue
        if current is None:  # the agent before any request (a resumed session's first lines): no task to learn
            continue
        if isinstance(ev, _Assistant):
            if current.last_said == ev.text:
                continue  # the same words twice (an event and an item)
            current.spoke, current.last_said = True, ev.text
            current.add({"role": "assistant", "content": ev.text})
        elif isinstance(ev, _Call):
            current.spoke = True
            call = {"id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": json.dumps(ev.args)}}
            current.add({"role": "assistant", "content": None, "tool_calls": [call]})
            if ev.command is not None:
                check = _Check(ev.command)
                current.pending[ev.id] = check
                if _TESTS.search(ev.command):
                    current.test = check
                elif _CHECKS.search(ev.command):
                    current.check = check
        elif isinstance(ev, _Result):
            current.add({"role": "tool", "tool_call_id": ev.id, "content": ev.text})
            if ev.rejected is not None:
                current.rejections.append(ev.rejected)
            if (pending := current.pending.get(ev.id)) is not None:
                pending.output = ev.text
                if ev.exit_code is not None:
                    pending.exit_code = ev.exit_code
                elif ev.error and pending.exit_code is None:
                    pending.exit_code = 1
        elif isinstance(ev, _Exit) and (pending := current.pending.get(ev.id)) is not None:
            pending.exit_code = ev.exit_code
    if current is not None and (log := close(current, None)) is not None:
        yield log


# -- files -----------------------------------------------------------------------------------------------------------
def session_files(paths: Iterable[str | Path], fmt: Format) -> list[Path]:
    """The session files ``paths`` name: files as given, directories searched (symbolic links to directories not
    followed) for ``*.jsonl`` (Claude Code: not a session's ``subagents`` or ``tool-results``) or ``rollout-*.jsonl``
    (Codex), in path order."""
    check_format(fmt)
    found: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            found.append(p)
            continue
        if not p.is_dir():
            raise LogError(f"{p}: no such file or directory")
        inside = []
        for root, dirs, files in os.walk(p, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d not in ("subagents", "tool-results"))
            for name in files:
                if fmt == "codex" and not (name.startswith("rollout-") and name.endswith(".jsonl")):
                    continue
                if fmt == "claude-code" and (not name.endswith(".jsonl") or name.startswith("agent-")):
                    continue
                inside.append(Path(root) / name)
        if not inside:
            pattern = "rollout-*.jsonl" if fmt == "codex" else "*.jsonl"
            raise LogError(f"{p}: no {fmt} session ({pattern}) in this directory")
        found.extend(sorted(inside))
    return found


def check_format(fmt: str) -> Format:
    """``fmt`` if it names a session format, else :class:`InvalidInput` listing them."""
    for known in FORMATS:
        if fmt == known:
            return known
    raise InvalidInput(f"a session format is one of {', '.join(FORMATS)}, not {fmt!r}")


def session_logs(
    path: str | Path, fmt: Format, *, report: SessionReport | None = None, unjudged: bool = False
) -> Iterator[dict[str, Any]]:
    """The episodes of one session file as logs in the format of :mod:`ace.runs.from_logs` (``id``, ``task``,
    ``messages``, ``outcome`` with ``success`` and ``message``, and the ``signal`` it came from): what
    ``ace learn`` learns from, or what an agent could send to the episode queue (:meth:`Service.submit_episode`)."""
    p = Path(path)
    report = report if report is not None else SessionReport()
    report.files += 1
    before = (report.records, sum(report.skipped.values()))
    known: set[str] = set()  # the values of the .env files the agent read: redacted in every episode of the session
    events = _claude(p, report, known) if check_format(fmt) == "claude-code" else _codex(p, report, known)
    logs = list(_episodes(events, p.stem, report, unjudged))  # all of them: a value read late was said earlier too
    for log in logs:
        yield _forget(log, known)
    if report.records == before[0] and sum(report.skipped.values()) > before[1]:
        other = "codex" if fmt == "claude-code" else "claude-code"
        raise LogError(f"{p}: not a {fmt} session: none of its lines is a {fmt} record (--format {other}?)")


def load_sessions(
    paths: Iterable[str | Path],
    fmt: Format,
    *,
    limit: int | None = None,
    max_chars: int = MAX_CHARS,
    unjudged: bool = False,
) -> tuple[list[Task], SessionReport]:
    """The episodes of the sessions ``paths`` name (files or directories: :func:`session_files`) as tasks for
    :func:`ace.runs.from_logs.learn`, and what was read; a malformed line is a :class:`LogError` naming it, and no
    episode at all is one too."""
    report = SessionReport()
    tasks: list[Task] = []
    for p in session_files(paths, fmt):
        for log in session_logs(p, fmt, report=report, unjudged=unjudged):
            try:
                tasks.append(to_task(log, log["id"], max_chars=max_chars))
            except (ValueError, TypeError) as e:  # not expected: every log is built to be valid
                raise LogError(f"{p}: episode {log['id']}: {e}") from None
            if limit is not None and len(tasks) >= limit:
                return tasks, report
    if not tasks:
        why = "no turn of the agent had an outcome signal" if report.turns else "no user request found"
        raise LogError(f"no episode to learn from in {report.files} {fmt} session file(s): {why} ({report.summary()})")
    return tasks, report


__all__ = [
    "FORMATS",
    "MAX_LINE_BYTES",
    "Format",
    "SessionReport",
    "check_format",
    "judge",
    "load_sessions",
    "redact",
    "session_files",
    "session_logs",
]
