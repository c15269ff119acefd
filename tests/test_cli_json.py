"""``--json`` on the commands that print data (issue #23): one JSON document on stdout, the same fields the HTTP
service answers with (both come from the same ``to_dict``), and ``history --since/--limit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ace.cli import app
from ace.playbook import Delta
from ace.playbook.formats import loads
from ace.service.auth import Grant
from ace.service.core import Service
from ace.store import PlaybookStore

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
ADMIN = Grant(namespaces=frozenset({"*"}), role="admin", name="t")


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = PlaybookStore(url)
    store.create("p", loads((ROOT / "playbooks" / "finance.txt").read_text()))
    for i in range(3):
        store.commit("p", Delta.parse({"operations": [
            {"type": "ADD", "section": "notes [x]", "content": f"Check the units of line {i} before \u2028 adding."},
            {"type": "TAG", "id": "calc-00002", "tag": "helpful"}]}), author=f"a{i}")  # fmt: skip
    store.close()
    return url


def run_json(*args: str, db: str) -> Any:
    r = runner.invoke(app, [*args, "--json", "--db", db])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_history_json_matches_the_service_and_honours_since_and_limit(db: str) -> None:
    every = run_json("playbook", "history", "p", db=db)
    assert [h["version"] for h in every] == [1, 2, 3, 4]
    assert every[1]["author"] == "a0" and every[1]["delta"]["operations"][0]["content"].endswith("adding.")
    service = Service(PlaybookStore(db))
    assert every == service.history(ADMIN, "default", "p")
    assert [h["version"] for h in run_json("playbook", "history", "p", "--since", "2", "--limit", "2", db=db)] == [2, 3]
    assert run_json("playbook", "history", "p", "--since", "9", db=db) == []
    r = runner.invoke(app, ["playbook", "history", "p", "--limit", "0", "--db", db])
    assert r.exit_code == 2 and "--limit" in r.output


def test_list_diff_blame_check_verify_json(db: str) -> None:
    service = Service(PlaybookStore(db))
    assert [p["name"] for p in run_json("playbook", "list", db=db)] == ["p"]
    d = run_json("playbook", "diff", "p", "1", "3", db=db)
    assert d == service.diff(ADMIN, "default", "p", 1, 3)
    assert len(d["added"]) == 2 and d["changed"][0]["id"] == "calc-00002"
    blame = run_json("playbook", "blame", "p", "calc-00002", db=db)
    assert [e["version"] for e in blame] == [1, 2, 3, 4] and blame[0]["op"] == "IMPORT"
    check = run_json("playbook", "check", "p", "--since", "1", db=db)
    assert check["versions"] == [1, 4] and isinstance(check["alerts"], list)
    assert run_json("playbook", "verify", "p", db=db) == {"ok": True, "versions": 4}


def test_json_output_is_not_markup(db: str, tmp_path: Path) -> None:
    """A message holding Rich markup and a bracket comes out verbatim in JSON (never read as markup)."""
    store = PlaybookStore(db)
    store.commit("p", Delta.parse({"operations": [{"type": "TAG", "id": "calc-00002", "tag": "harmful"}]}),
                 message="[bold red]x[/] \\[y]")  # fmt: skip
    assert run_json("playbook", "history", "p", "--since", "5", db=db)[0]["message"] == "[bold red]x[/] \\[y]"


def test_memory_facts_json_is_a_list(db: str) -> None:
    assert run_json("memory", "facts", db=db) == []
