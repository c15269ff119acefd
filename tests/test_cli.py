"""The ``ace`` command: every playbook subcommand on a real SQLite file, and errors as one line + exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ace.cli import app
from ace.playbook.formats import parse_ace, parse_json, parse_markdown, parse_skillbook

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def ace(*args: str, db: str | None = None) -> Result:
    extra = ["--db", db] if db else []
    return runner.invoke(app, [*args, *extra])


def test_full_walk_through_the_playbook_commands(db: str, tmp_path: Path, shared_data: Path) -> None:
    released = shared_data / "playbooks" / "appworld_initial_playbook.txt"
    r = ace("playbook", "import", str(released), "--name", "app", db=db)
    assert r.exit_code == 0, r.output
    assert "imported app v1: 8 bullets in 8 sections" in r.output

    r = ace("playbook", "show", "app", "--no-counters", db=db)
    assert r.output == released.read_text()

    delta = tmp_path / "delta.json"
    delta.write_text(
        json.dumps(
            {
                "operations": [
                    {"type": "ADD", "section": "VERIFICATION CHECKLIST", "content": "Re-read the task."},
                    {"type": "TAG", "id": "shr-00005", "tag": "helpful"},
                ],
                "source": {"task_id": "task-1", "step": 1},
            }
        )
    )
    r = ace("playbook", "apply", "app", str(delta), "--expected-version", "1", "--author", "me", db=db)
    assert r.exit_code == 0 and "app v2: ADD×1 TAG×1 → 9 bullets" in r.output

    r = ace("playbook", "show", "app", "--version", "2", db=db)
    assert "[vc-00009] helpful=0 harmful=0 :: Re-read the task." in r.output
    assert "[shr-00005] helpful=1 harmful=0" in r.output

    r = ace("playbook", "show", "app", "--budget", "60", db=db)
    assert r.exit_code == 0 and "[shr-00005]" in r.output and len(r.output) <= 60 * 4

    r = ace("playbook", "history", "app", db=db)
    assert r.exit_code == 0 and "import" in r.output and "ADD×1" in r.output

    r = ace("playbook", "diff", "app", "1", "2", db=db)
    assert "+ [vc-00009] (VERIFICATION CHECKLIST) Re-read the task." in r.output
    assert "~ [shr-00005] helpful 0→1" in r.output

    r = ace("playbook", "blame", "app", "shr-00005", db=db)
    assert r.exit_code == 0 and "IMPORT" in r.output and "task-1" in r.output

    r = ace("playbook", "rollback", "app", "1", db=db)
    assert r.exit_code == 0 and "app v3: rolled back to the state of v1" in r.output

    for fmt, parse in [
        ("ace", parse_ace),
        ("json", parse_json),
        ("md", parse_markdown),
        ("skillbook", parse_skillbook),
    ]:
        r = ace("playbook", "export", "app", "--format", fmt, "--version", "2", db=db)
        assert r.exit_code == 0, r.output
        assert "vc-00009" in parse(r.output)
    out = tmp_path / "out.md"
    assert ace("playbook", "export", "app", "-f", "md", "-o", str(out), db=db).exit_code == 0
    assert parse_markdown(out.read_text())["shr-00005"].helpful == 0

    r = ace("playbook", "list", db=db)
    assert "app" in r.output and "3" in r.output
    r = ace("playbook", "verify", "app", db=db)
    assert "ok: 3 versions" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["playbook", "show", "missing"], "error: no playbook 'missing' in namespace 'default'"),
        (["playbook", "show", "app", "--version", "7"], "error: playbook 'app' has no version 7"),
        (["playbook", "import", "/no/such/file.txt", "--name", "x"], "error: [Errno 2] No such file or directory"),
        (["playbook", "import", "BAD", "--name", "x"], "error: ace playbook, line 2: expected a '## SECTION' header"),
        (["playbook", "import", "GOOD", "--name", "app"], "error: playbook 'app' already exists"),
        (["playbook", "apply", "app", "DELTA"], "error: operation 0 (UPDATE): unknown bullet id 'zz-00001'"),
        (["playbook", "apply", "app", "NOTJSON"], "error: delta: not valid JSON"),
        (["playbook", "apply", "app", "OK", "--expected-version", "0"], "error: playbook 'app' is at version 1, not 0"),
        (["playbook", "export", "app", "--format", "yaml"], "error: unknown format 'yaml'"),
        (["playbook", "rollback", "app", "5"], "error: playbook 'app' has no version 5"),
        (["playbook", "blame", "app", "zz-1"], "error: no version of 'app' touched a bullet with id 'zz-1'"),
    ],
)
def test_errors_are_one_line_and_exit_1(db: str, tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "BAD": "## A\nprose here\n",
        "GOOD": "## A\n[a-00001] fine\n",
        "DELTA": json.dumps({"operations": [{"type": "UPDATE", "id": "zz-00001", "content": "x"}]}),
        "NOTJSON": "{oops",
        "OK": json.dumps({"operations": [{"type": "TAG", "id": "a-00001", "tag": "helpful"}]}),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert ace("playbook", "import", str(tmp_path / "GOOD"), "--name", "app", db=db).exit_code == 0
    args = [str(tmp_path / a) if a in files else a for a in args]
    r = runner.invoke(app, [*args, "--db", db])
    assert r.exit_code == 1
    assert r.output.strip().startswith(message), r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) <= 3  # one logical line (Rich may wrap a long one)


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["playbook", "list", "--db", "postgresql+psycopg://nobody:x@127.0.0.1:1/none"])
    assert r.exit_code == 1 and r.output.startswith("error: database:") and "Traceback" not in r.output


def test_ace_db_environment_variable_is_read(tmp_path: Path) -> None:
    env_db = f"sqlite:///{tmp_path / 'env.db'}"
    r = runner.invoke(app, ["playbook", "import", "playbooks/agent.txt", "--name", "a"], env={"ACE_DB": env_db})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "env.db").is_file()


def test_tour_runs_as_a_real_process(tmp_path: Path) -> None:
    """The README's main job, as a user runs it: a separate process through the installed console script."""
    r = subprocess.run(
        [sys.executable, "-m", "ace.cli", "tour", "--db", f"sqlite:///{tmp_path / 'tour.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    assert "rejected: operation 1 (UPDATE): unknown bullet id 'calc-99999'" in r.stdout
    assert "same digest as v1: True" in r.stdout


def test_the_cli_and_a_trajectory_replay_start_without_the_loop_langgraph_or_alembic() -> None:
    # every `ace` call pays its imports: the loop (LangGraph, the memory tiers) and Alembic load only in the commands
    # that use them (`ace --help` took 1.7 s when they loaded at start, 0.5 s now); ace.runs resolves its names lazily
    code = (
        "import sys, ace.cli, ace.runs.trajectory, ace.runs\n"
        "heavy = ('ace.loop', 'langgraph', 'langchain_core', 'alembic', 'ace.memory')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)\n"
        "import ace.runs as r\n"
        "print([n for n in r.__all__ if getattr(r, n, None) is None])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "[]"], out


def test_import_takes_the_name_first_like_every_playbook_command_and_the_old_form_still(db: str) -> None:
    book = str(ROOT / "playbooks" / "finance.txt")
    assert ace("playbook", "import", "first", book, db=db).exit_code == 0
    assert ace("playbook", "import", book, "--name", "older", db=db).exit_code == 0  # FILE --name NAME, as before
    listed = ace("playbook", "list", "--json", db=db)
    assert sorted(p["name"] for p in json.loads(listed.stdout)) == ["first", "older"]
    alone = ace("playbook", "import", "third", db=db)  # no file
    assert alone.exit_code == 2 and "give the name and the file" in alone.output
    twice = ace("playbook", "import", "a", book, "--name", "b", db=db)  # the name twice
    assert twice.exit_code == 2 and "give the name once" in twice.output
    short = ace("playbook", "show", "first", "-v", "1", db=db)  # -v is no longer the version: no short flag
    assert short.exit_code == 2 and "No such option" in short.output
