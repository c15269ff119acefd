"""Fixtures: the shared data directory, real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ACE_SHARED_DIR", ROOT.parent / "shared"))

# The injection probe (the embedded model judging what a commit adds) is off for tests of logic it has nothing to do
# with, here and in the processes they start; tests/test_injection_probe.py switches it on where it is the point.
os.environ["ACE_INJECTION_PROBE"] = "off"
# pytest-xdist's workers run with COLUMNS=80, which Rich reads once when the CLI's consoles are made (at import):
# the CLI's tables would then be 80 wide in every test, whatever COLUMNS a test gives the command it runs
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True)
def _model_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that loads the local model in this process must be marked ``model`` (so ``scripts/test --fast``, which
    skips that tier, never loads it): loading it unmarked fails the test."""
    if request.node.get_closest_marker("model") is not None:
        yield
        return
    import ace.llm.injection_probe as probe
    import ace.llm.local as local

    def refuse(*_a: object, **_k: object) -> object:
        pytest.fail("this test loads the local model: mark it @pytest.mark.model (or script the LLM: ace.llm.testing)")

    monkeypatch.setattr(local.LocalProvider, "llama", refuse)
    monkeypatch.setattr(probe.ProbeModel, "_model", refuse)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.fail(f"shared data not found at {data}; clone with ../shared beside the repo or set ACE_SHARED_DIR")
    return data


@pytest.fixture(scope="session")
def released_playbooks(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "playbooks").glob("*.txt"))
    assert files, "no released playbooks in shared/data/playbooks"
    return files


def _pg_admin_url() -> str:
    url = os.environ.get("ACE_TEST_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("ACE_TEST_PG_URL is not set under CI: scripts/test must start PostgreSQL")
        pytest.skip("no PostgreSQL: set ACE_TEST_PG_URL (scripts/test starts a local server and sets it)")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server, dropped afterwards."""
    with _fresh_database(_pg_admin_url()) as url:
        yield url


def _pgvector_admin_url() -> str:
    """A server with the pgvector extension: ACE_TEST_PGVECTOR_URL (scripts/pgvector-up), else ACE_TEST_PG_URL's
    server where it has the extension."""
    url = os.environ.get("ACE_TEST_PGVECTOR_URL")
    if not url and (plain := os.environ.get("ACE_TEST_PG_URL")):
        engine = create_engine(plain)
        try:
            with engine.connect() as conn:
                if conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first():
                    url = plain
        finally:
            engine.dispose()
    if not url:
        if os.environ.get("CI"):
            pytest.fail("ACE_TEST_PGVECTOR_URL is not set under CI: scripts/test must start scripts/pgvector-up")
        pytest.skip("no PostgreSQL with pgvector: set ACE_TEST_PGVECTOR_URL (scripts/test starts scripts/pgvector-up)")
    return url


@pytest.fixture
def pgvector_url() -> Iterator[str]:
    """A fresh, empty database on a PostgreSQL server that has pgvector, dropped afterwards."""
    with _fresh_database(_pgvector_admin_url()) as url:
        yield url


@contextmanager
def _fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on the server at ``admin_url`` (its URL), dropped afterwards."""
    name = f"ace_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ace.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a real SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ace.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ace_serve(db: str, tokens: Mapping[str, Any], where: Path, *args: str) -> Iterator[str]:
    """A real ``ace serve`` over ``db`` on a free port of 127.0.0.1 (``--workers 0`` and ``args``), with ``tokens``
    (a tokens file's table) in a file under ``where``; yields its base URL once ``/v1/health`` answers. Its log is
    ``where/serve.log``."""
    tokens_file = where / "tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    tokens_file.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ACE_TOKENS"}
    log_path = where / "serve.log"
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "ace.cli", "serve", "--db", db, "--port", str(port), "--tokens",
               str(tokens_file), "--workers", "0", *args]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{url}/v1/health", timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None:
                        pytest.fail(f"ace serve exited: {log_path.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def llama_server(model: Path, alias: str, log_dir: Path, *, n_ctx: int = 2048) -> Iterator[str]:
    """A real ``llama_cpp.server`` (OpenAI-compatible) on 127.0.0.1 serving ``model`` as ``alias``; yields the
    base URL (``http://127.0.0.1:PORT/v1``)."""
    port = free_port()
    # a file, not a pipe: the server logs >100 KB at start-up, which would fill a pipe and stall it
    log_path = log_dir / "server.log"
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2"]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if proc.poll() is not None:
                        pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
                    if time.monotonic() > deadline:
                        pytest.fail(f"llama_cpp.server did not come up in 120 s: {log_path.read_text()[-2000:]}")
                    time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
