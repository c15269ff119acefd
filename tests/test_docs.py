"""The documentation runs. Every fenced Python and shell snippet of README.md and docs/*.md is executed, page by page
in order, in a fresh directory with its own store (``ACE_DB``, ``XDG_DATA_HOME``) and the repository's playbooks,
examples and ``../shared`` beside it. A fence's info string says how:

- ``python`` / ``bash``: run (a fresh interpreter, ``bash -euo pipefail``); ``python needs-model`` /
  ``bash needs-model`` run in the ``model`` tier (they load the local model);
- ``bash with-server``: run against a real ``ace serve`` on loopback (``$ACE``, ``$TOKEN``; a playbook ``support``
  in namespace ``team-a``);
- ``python needs-key``: needs an API key or a model server: compiled, not run;
- ``bash setup``: installs the project or runs this suite: not run;
- ``json`` / ``toml``: parsed; ``text``, ``console`` and bare fences are not code.

Also: docs/cli-reference.md is what the CLI itself documents (a command or option added without regenerating it
fails), every command and option in the synopsis of docs/cli.md exists, and docs/architecture.md names every module
of the package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    ROOT / "examples" / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli-reference.md"),
]
LANGS = {"python", "bash", "json", "toml", "text", "console", ""}
TAGS = {"needs-model", "needs-key", "setup", "with-server"}
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TOKEN = "docs-test-token-0123456789abcdef"
SNIPPET_TIMEOUT_S = 600


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int
    lang: str
    tags: frozenset[str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in ("python", "bash") and not self.tags & {"needs-key", "setup"}


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        lang, *tags = m.group(1).split() or [""]
        found.append(Snippet(page, text.count("\n", 0, m.start()) + 1, lang, frozenset(tags), m.group(2)))
    return found


ALL = [s for page in PAGES for s in snippets(page)]


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_fence_says_what_it_is() -> None:
    bad = [f"{s.where}: ```{s.lang} {' '.join(sorted(s.tags))}" for s in ALL if s.lang not in LANGS or s.tags - TAGS]
    assert not bad, f"unknown fence language or tag (languages {sorted(LANGS)}, tags {sorted(TAGS)}): {bad}"
    assert sum(s.runs for s in ALL) >= 6  # the docs keep runnable examples


def test_data_snippets_parse_and_python_compiles() -> None:
    for s in ALL:
        if s.lang == "json":
            json.loads(s.code)
        elif s.lang == "toml":
            tomllib.loads(s.code)
        elif s.lang == "python":
            compile(s.code, s.where, "exec")  # needs-key snippets too: they are at least valid Python


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("playbooks", "examples", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    if (ROOT.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    scripts = sysconfig.get_path("scripts")
    env = {
        **os.environ,
        "ACE_DB": f"sqlite:///{tmp_path / 'ace.db'}",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PATH": f"{scripts}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    yield work, env


def _serve(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    from ace.store import PlaybookStore

    with PlaybookStore(env["ACE_DB"]) as store:
        store.ensure("support", namespace="team-a")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"tokens": {TOKEN: {"name": "docs", "namespaces": ["team-a"], "role": "write"}}}))
    tokens.chmod(0o600)
    port = free_port()
    server = subprocess.Popen(
        ["ace", "serve", "--tokens", str(tokens), "--port", str(port), "--workers", "0"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _answers(f"{base}/v1/health"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            said = server.stderr.read().decode() if server.stderr else ""
            raise AssertionError(f"ace serve did not start: {said}")
        time.sleep(0.2)
    return server, {"ACE": base, "TOKEN": TOKEN}


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except OSError:
        return False
    return True


def _run_page(page: Path, work: Path, env: dict[str, str], *, with_model: bool) -> int:
    """Run the page's snippets in order; returns how many ran."""
    ran = 0
    server: subprocess.Popen[bytes] | None = None
    try:
        for s in snippets(page):
            if not s.runs or ("needs-model" in s.tags and not with_model):
                continue
            run_env = env
            if "with-server" in s.tags:
                if server is None:
                    server, extra = _serve(work, env)
                    env = {**env, **extra}
                run_env = env
            if s.lang == "python":
                script = work / f"snippet_{s.line}.py"
                script.write_text(s.code)
                cmd = [sys.executable, str(script)]
            else:
                cmd = ["bash", "-euo", "pipefail", "-c", s.code]
            done = subprocess.run(cmd, cwd=work, env=run_env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
            assert done.returncode == 0, (
                f"{s.where} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            ran += 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    return ran


PLAIN_PAGES = [p for p in PAGES if any(s.runs and "needs-model" not in s.tags for s in snippets(p))]


@pytest.mark.parametrize("page", PLAIN_PAGES, ids=_id)
def test_the_page_runs(page: Path, sandbox: tuple[Path, dict[str, str]]) -> None:
    runnable = [s for s in snippets(page) if s.runs and "needs-model" not in s.tags]
    assert _run_page(page, *sandbox, with_model=False) == len(runnable)


MODEL_PAGES = [p for p in PAGES if any(s.runs and "needs-model" in s.tags for s in snippets(p))]


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("page", MODEL_PAGES, ids=_id)
def test_the_page_runs_with_the_model(page: Path, sandbox: tuple[Path, dict[str, str]]) -> None:
    pytest.importorskip("llama_cpp", reason="the local model stack is not installed (scripts/install)")
    assert _run_page(page, *sandbox, with_model=True) == sum(s.runs for s in snippets(page))


def test_the_cli_reference_is_what_the_cli_documents() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli-reference"), "--check"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def _commands() -> dict[str, Any]:
    """Every command of the CLI by its path ("ace playbook history"), groups included."""
    from ace.cli import app

    found: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        found[path] = cmd
        for name, sub in getattr(cmd, "commands", {}).items():  # a group (Typer's own click: duck-typed)
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "ace")
    return found


def _synopsis() -> list[str]:
    """The lines of docs/cli.md's synopsis, continuation lines joined to their command."""
    block = next(s for s in snippets(ROOT / "docs" / "cli.md") if s.lang == "text")
    lines: list[str] = []
    for line in block.code.splitlines():
        if line.startswith("ace "):
            lines.append(line)
        elif line.strip() and lines:
            lines[-1] += " " + line.strip()
    return lines


def _line_commands(line: str, commands: dict[str, Any]) -> list[str]:
    """The commands a synopsis line shows: ``ace playbook history``; ``ace textworld make|play|export`` and
    ``ace playbook list | verify N`` show several."""
    segments = [seg.split() for seg in line.split("(")[0].split(" | ")]
    path, found = "ace", []
    for word in segments[0][1:]:
        if "|" in word and not word.startswith("-"):
            found = [f"{path} {w}" for w in word.split("|")]
            break
        if f"{path} {word}" not in commands:
            break
        path = f"{path} {word}"
    found = found or [path]
    parent = found[0].rsplit(" ", 1)[0]
    return found + [f"{parent} {seg[0]}" for seg in segments[1:] if seg]


def test_the_cli_synopsis_names_every_command_and_only_options_that_exist() -> None:
    commands = _commands()
    problems, shown = [], set()
    for line in _synopsis():
        alternatives = _line_commands(line, commands)
        missing = [a for a in alternatives if a not in commands]
        if missing:
            problems.append(f"{line!r}: no command {missing}")
            continue
        shown.update(alternatives)
        known = {o for a in alternatives for p in commands[a].params for o in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", line.split("(")[0]):
            if option not in known:
                problems.append(f"{line!r}: {' / '.join(alternatives)} has no option {option}")
    leaves = sorted(p for p, c in commands.items() if not hasattr(c, "commands"))
    problems += [f"{leaf} is missing from the synopsis" for leaf in leaves if leaf not in shown]
    assert not problems, problems


def test_the_architecture_page_names_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted((ROOT / "ace").rglob("*.py")):
        rel = path.relative_to(ROOT / "ace")
        if path.name in ("__init__.py", "__main__.py") or {"data", "prompts", "versions"} & set(rel.parts):
            continue
        if rel.parts[0].endswith(".py"):  # a top-level module: named as ace/errors.py
            if f"ace/{rel.parts[0]}" not in text:
                missing.append(str(rel))
        elif not re.search(rf"\b{re.escape(path.stem)}\b", text):
            missing.append(str(rel))
    assert not missing, f"modules docs/architecture.md does not name: {missing}"
