"""Issue #22, items 6 and 7 on the CLI and the tokens file: a mistake is the user's error in one line (never
"internal error ... a bug in ace"), a read never writes, a loose tokens file is refused, and every token has a name
that tells two tokens of one namespace apart without showing the key."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ace.cli import app
from ace.errors import ConfigError
from ace.service.auth import Grant, Tokens

runner = CliRunner()
FINANCE = Path(__file__).resolve().parents[1] / "playbooks" / "finance.txt"
HUGE = str(10**30)  # past any database integer: an OverflowError in SQLite before


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    r = runner.invoke(app, ["playbook", "import", str(FINANCE), "--name", "p", "--db", url])
    assert r.exit_code == 0, r.output
    return url


def ace(*args: str, db: str | None = None) -> Result:
    return runner.invoke(app, [*args, *(["--db", db] if db else [])])


def user_error(r: Result, code: int, *needles: str) -> None:
    """A user's mistake: the expected exit status, no "internal error", no traceback, the needles said."""
    out = r.output
    assert r.exit_code == code, out
    assert "internal error" not in out and "a bug in ace" not in out and "Traceback" not in out, out
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    flat = " ".join(out.split()).replace("│", "").replace("  ", " ")
    for needle in needles:
        assert needle in flat, out


# -- A. numbers out of range: a usage error (exit 2) naming the option, before anything is opened ----------------


def test_a_negative_budget_is_a_usage_error(db: str) -> None:
    user_error(ace("playbook", "show", "p", "--budget", "-5", db=db), 2, "--budget")
    r = ace("playbook", "show", "p", "--budget", "0", db=db)  # 0 is a budget (headers only)
    assert r.exit_code == 0, r.output


def test_check_from_a_version_past_the_head_names_it(db: str) -> None:
    user_error(ace("playbook", "check", "p", "--from", "99", db=db), 1, "no version 99", "1 to 1")


def test_trajectory_since_a_version_past_the_head_names_it(db: str, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    user_error(ace("playbook", "trajectory", "p", "-o", str(out), "--since", "99", db=db), 1, "no version 99")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["playbook", "check", "p", "--since", "0"], "--since"),
        (["playbook", "check", "p", "--from", HUGE], "--since"),
        (["playbook", "trajectory", "p", "-o", "t.jsonl", "--since", HUGE], "--since"),
        (["playbook", "trajectory", "p", "-o", "t.jsonl", "--since", "0"], "--since"),
        (["playbook", "verify", "p", "--since", "0"], "--since"),
        (["playbook", "verify", "p", "--since", HUGE], "--since"),
        (["playbook", "show", "p", "--version", "0"], "--version"),
        (["playbook", "export", "p", "--version", "-1"], "--version"),
        (["playbook", "diff", "p", "0", "1"], "v1"),
        (["playbook", "diff", "p", "1", HUGE], "v2"),
        (["playbook", "rollback", "p", "0"], "version"),
        (["playbook", "dedup", "p", "--show", "-1"], "--show"),
        (["playbook", "dedup", "p", "--threshold", "nan"], "--threshold"),
        (["playbook", "dedup", "p", "--threshold", "1.5"], "--threshold"),
        (["learn", "logs.jsonl", "--limit", "0"], "--limit"),
        (["learn", "logs.jsonl", "--batch-size", "0"], "--batch-size"),
        (["learn", "logs.jsonl", "--max-tokens", "-1"], "--max-tokens"),
        (["run", "ace.toml", "--limit", "-3"], "--limit"),
        (["worker", "--drain", "--lease", "inf"], "--lease"),
        (["worker", "--drain", "--max-tokens", "0"], "--max-tokens"),
        (["worker", "--drain", "--threads", HUGE], "--threads"),
        (["serve", "--tokens", "missing.json", "--workers", "100000000"], "--workers"),
        (["serve", "--tokens", "missing.json", "--processes", "100000000"], "--processes"),
        (["textworld", "make", "--recipe", "0"], "--recipe"),
        (["textworld", "make", "--recipe", "6"], "--recipe"),
        (["textworld", "export", "-o", "x.jsonl", "--perturbed", "-1"], "--perturbed"),
    ],
)
def test_every_number_out_of_range_is_a_usage_error(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    user_error(ace(*args, db=None if args[0] == "textworld" else db), 2, f"Invalid value for '{option}'")
    assert {p.name for p in tmp_path.iterdir()} <= {"cli.db", "cli.db-wal", "cli.db-shm"}  # no file made


def test_a_bad_parameter_raised_by_a_command_is_a_usage_error(tmp_path: Path) -> None:
    # typer.BadParameter from a command body was reported as "internal error: BadParameter ..."
    user_error(ace("textworld", "make", "--go", "2", "--dir", str(tmp_path)), 2, "--go must be 1, 6, 9 or 12")
    user_error(ace("textworld", "make", "--seeds", "x", "--dir", str(tmp_path)), 2, "seeds must look like")
    # a range of 10^11 seeds was built as a list before anything was checked
    user_error(ace("textworld", "make", "--seeds", "1-99999999999", "--dir", str(tmp_path)), 2, "at most 10000")
    assert list(tmp_path.iterdir()) == []


# -- A. memory episodes: a read never writes; a server that is not there says so ---------------------------------


def _episodes(location: Path, namespace: str) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.memory import EpisodicStore
    from ace.memory.episodic import Episode

    store = EpisodicStore(location, MiniLMEmbedder(), namespace=namespace)
    store.add([Episode(id="e1", task="add two numbers", summary="added", outcome="success", reflection="units")])


def _collections(location: Path) -> list[str]:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(location), settings=Settings(anonymized_telemetry=False))
    return sorted(c.name for c in client.list_collections())


def test_memory_episodes_at_a_missing_directory_makes_nothing(tmp_path: Path) -> None:
    where = tmp_path / "no" / "such" / "dir"
    user_error(ace("memory", "episodes", "--chroma", str(where)), 1, f"no episodic memory at {where}")
    assert not (tmp_path / "no").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    user_error(ace("memory", "episodes", "--chroma", str(empty)), 1, "no episodic memory")
    assert list(empty.iterdir()) == []  # no chroma.sqlite3 made in a directory that held none


def test_memory_episodes_of_an_unknown_namespace_makes_no_collection(tmp_path: Path) -> None:
    where = tmp_path / "chroma"
    _episodes(where, "team-a")
    before = _collections(where)
    r = ace("memory", "episodes", "--chroma", str(where), "-n", "team-b")
    assert r.exit_code == 0 and "0 episode(s) in namespace 'team-b'" in r.output, r.output
    r = ace("memory", "episodes", "numbers", "--chroma", str(where), "-n", "team-b")
    assert r.exit_code == 0 and "0 episode(s)" in r.output, r.output
    assert _collections(where) == before and len(before) == 1
    r = ace("memory", "episodes", "--chroma", str(where), "-n", "team-a")  # and a known one still reads
    assert r.exit_code == 0 and "1 episode(s) in namespace 'team-a'" in r.output and "add two numbers" in r.output


def test_memory_episodes_from_a_server_that_is_not_there_says_so() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    user_error(ace("memory", "episodes", "--chroma", url), 1, f"the Chroma server at {url} cannot be reached")
    user_error(ace("memory", "episodes", "--chroma", "http://127.0.0.1:abc"), 1, "cannot be reached")


# -- D. ace --version ---------------------------------------------------------------------------------------------


def test_ace_version_prints_the_installed_version() -> None:
    r = ace("--version")
    assert r.exit_code == 0 and r.output.strip() == f"ace {importlib.metadata.version('ace')}", r.output
    assert ace("playbook", "--help").exit_code == 0  # the root callback leaves the groups alone


# -- B. a tokens file: every malformed field named, loose modes refused -------------------------------------------

TOKEN = "s3cret-writer-token-9f2c"
OTHER = "s3cret-reader-token-77ab"


def _parse(spec: object, **more: object) -> Tokens:
    return Tokens.parse({"tokens": {TOKEN: spec, **more}}, where="tokens.json")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"namespaces": ["team-a"], "role": ["write"]}, "role"),
        ({"namespaces": ["team-a"], "role": {"write": True}}, "role"),
        ({"namespaces": ["team-a"], "role": 1}, "role"),
        ({"namespaces": ["team-a"]}, "role"),
        ({"namespaces": "team-a", "role": "write"}, "namespaces"),
        ({"namespaces": [["team-a"]], "role": "write"}, "namespaces"),
        ({"namespaces": [{"n": 1}], "role": "write"}, "namespaces"),
        ({"namespaces": [], "role": "write"}, "namespaces"),
        ({"namespaces": ["../x"], "role": "write"}, "namespaces"),
        ({"namespaces": ["team-a"], "role": "write", "name": ["ci"]}, "name"),
        ({"namespaces": ["team-a"], "role": "write", "name": 7}, "name"),
        ({"namespaces": ["team-a"], "role": "write", "name": ""}, "name"),
        ({"namespaces": ["team-a"], "role": "write", "name": "a/b"}, "name"),
        ({"namespaces": ["team-a"], "role": "write", "nmae": "ci"}, "nmae"),
    ],
)
def test_every_malformed_field_is_a_config_error_naming_token_and_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _parse(spec)
    message = str(e.value)
    assert "token …9f2c" in message and f"'{field}'" in message, message
    assert TOKEN not in message  # the key itself is never shown


@pytest.mark.parametrize("spec", [["write"], "write", None, 3])
def test_an_entry_that_is_not_an_object_is_a_config_error(spec: object) -> None:
    with pytest.raises(ConfigError, match="token …9f2c must map to an object"):
        _parse(spec)


def _file(tmp_path: Path, mode: int, table: dict[str, object] | None = None) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(table or {"tokens": {TOKEN: {"namespaces": ["team-a"], "role": "write"}}}))
    os.chmod(path, mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    return path


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o620, 0o660, 0o777])
def test_a_tokens_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = _file(tmp_path, mode)
    with pytest.raises(ConfigError, match=r"writable by .*refused\. Run: chmod 600 ") as e:
        Tokens.load(path)
    assert str(path) in str(e.value) and TOKEN not in str(e.value)


def test_a_tokens_file_others_can_read_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ace.service.auth"):
        assert len(Tokens.load(_file(tmp_path, 0o644))) == 1
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "readable by other users" in warned[0].getMessage()
    assert "chmod 600" in warned[0].getMessage() and TOKEN not in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ace.service.auth"):
        for mode in (0o600, 0o640, 0o400):  # the owner's (and a group's read): silent
            assert len(Tokens.load(_file(tmp_path, mode))) == 1
    assert caplog.records == []


def test_ace_serve_refuses_a_world_writable_tokens_file_in_one_line(tmp_path: Path) -> None:
    path = _file(tmp_path, 0o666)
    # (--curation is checked after the tokens are read: a server that loaded them stops there instead of serving)
    r = ace(
        "serve", "--tokens", str(path), "--workers", "0", "--curation", "none", "--db", f"sqlite:///{tmp_path}/x.db"
    )
    user_error(r, 1, "writable by other users", f"chmod 600 {path}")


# -- C. identity: every token has a name, recorded as its author ---------------------------------------------------


def test_a_token_has_its_name_or_a_stable_one_made_from_its_hash() -> None:
    tokens = _parse(
        {"name": "ci-bot", "namespaces": ["team-a"], "role": "write"},
        **{OTHER: {"namespaces": ["team-a"], "role": "read"}},
    )
    named, unnamed = tokens.grant(TOKEN), tokens.grant(OTHER)
    assert named == Grant("write", frozenset({"team-a"}), "ci-bot")
    expected = "token-" + hashlib.sha256(OTHER.encode()).hexdigest()[:8]
    assert unnamed is not None and unnamed.name == expected
    assert OTHER[:8] not in expected and OTHER[-4:] not in expected
    again = _parse({"namespaces": ["team-a"], "role": "write"}, **{OTHER: {"namespaces": ["x"], "role": "read"}})
    assert again.grant(OTHER) == Grant("read", frozenset({"x"}), expected)  # the same name on every load
    assert Grant("read", frozenset({"a"})).name == "unnamed"  # positional callers keep working


def test_two_tokens_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"tokens …9f2c and …77ab are both named 'ci-bot'"):
        _parse(
            {"name": "ci-bot", "namespaces": ["team-a"], "role": "write"},
            **{OTHER: {"name": "ci-bot", "namespaces": ["team-a"], "role": "read"}},
        )
    clash = "token-" + hashlib.sha256(OTHER.encode()).hexdigest()[:8]  # a name that is another token's default
    with pytest.raises(ConfigError, match="both named"):
        _parse({"name": clash, "namespaces": ["a"], "role": "write"}, **{OTHER: {"namespaces": ["a"], "role": "read"}})


def test_names_and_namespaces_are_stored_normalized(tmp_path: Path) -> None:
    nfd = "cafe\u0301"  # 'café' decomposed: one name with its NFC form
    path = _file(tmp_path, 0o600, {"tokens": {TOKEN: {"name": nfd, "namespaces": [nfd], "role": "read"}}})
    grant = Tokens.load(path).grant(TOKEN)
    assert grant is not None and grant.name == "caf\u00e9" and grant.namespaces == frozenset({"caf\u00e9"})
    toml = tmp_path / "t.toml"
    toml.write_text(f'[tokens."{TOKEN}"]\nname = "ops"\nnamespaces = ["*"]\nrole = "admin"\n')
    os.chmod(toml, 0o600)
    assert Tokens.load(toml).grant(TOKEN) == Grant("admin", frozenset({"*"}), "ops")


# -- found from outside: inputs with no end, numbers too long to read, a tokens file nested without end ------------


@pytest.mark.parametrize(
    "command", [["playbook", "import", "/dev/zero", "--name", "z"], ["playbook", "apply", "p", "/dev/zero"]]
)
def test_a_file_with_no_end_is_refused_at_the_limit(db: str, command: list[str]) -> None:
    """Before: the whole file was read before its size was checked (/dev/zero: 11 GB in 10 s)."""
    user_error(ace(*command, db=db), 1, "over the limit")


def test_a_number_too_long_to_read_in_a_delta_file_is_a_user_error(db: str, tmp_path: Path) -> None:
    f = tmp_path / "big.json"
    f.write_text('{"operations": [{"type": "TAG", "id": "calc-00002", "tag": "helpful"}], "source": {"step": '
                 + "9" * 5000 + "}}")  # fmt: skip
    user_error(ace("playbook", "apply", "p", str(f), db=db), 1, "too large")


def test_a_tokens_file_nested_without_end_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="nested deeper"):
        Tokens.load(f)
    toml = tmp_path / "deep.toml"
    toml.write_text("a = " + "[" * 100_000 + "]" * 100_000)
    toml.chmod(0o600)
    with pytest.raises(ConfigError, match="tokens file"):
        Tokens.load(toml)


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["replay", "/dev/zero"], "trajectory"),
        (["report", "/dev/zero"], "report source"),
        (["learn", "/dev/zero", "--provider", "recorded", "--playbook", "z"], "log file"),
        (["run", "/dev/zero"], "run config"),
    ],
)
def test_run_inputs_with_no_end_are_refused_at_their_limit(command: list[str], what: str) -> None:
    """Found from outside: replay and learn read /dev/zero until the kernel killed them (24 GB)."""
    user_error(ace(*command), 1, f"the {what} is over the limit")
