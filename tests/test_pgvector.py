"""The episodic tier on PostgreSQL (pgvector) where it differs from Chroma's: what a reader makes (nothing), a
server that is not there, one without the extension, a role that may not create it, a table of another width, and
the password kept out of what is printed. The tests both tiers pass are in tests/test_memory.py."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ace.cli import app
from ace.errors import ConfigError
from ace.llm.embeddings import MiniLMEmbedder
from ace.memory import Episode, PgVectorEpisodicStore, open_episodic
from ace.memory.pgvector import is_postgres_url, table_name

pytestmark = pytest.mark.postgres
runner = CliRunner()


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def _ace(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _user_error(r: Any, *needles: str) -> None:
    """Exit status 1, one clear line, no traceback, the needles said."""
    assert r.exit_code == 1, r.output
    assert "internal error" not in r.output and "Traceback" not in r.output, r.output
    flat = " ".join(r.output.split())
    for needle in needles:
        assert needle in flat, r.output


def _tables_and_extension(url: str) -> tuple[list[str], bool]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            ext = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is not None
            return sorted(tables), ext
    finally:
        engine.dispose()


def test_a_postgres_url_chooses_the_pgvector_tier() -> None:
    for url in ("postgresql+psycopg://u:p@h/db", "postgresql://h/db", "postgres://h/db", "POSTGRESQL://h/db"):
        assert is_postgres_url(url), url
    for other in ("http://127.0.0.1:8000", "/var/lib/chroma", "chroma", "sqlite:///x.db", "postgresql"):
        assert not is_postgres_url(other), other
    assert table_name("a") != table_name("A") != table_name("a!")
    assert all(len(table_name(ns)) <= 63 for ns in ("x" * 500, "é" * 100, "'; DROP TABLE x; --"))


def test_a_reader_of_a_database_without_episodes_makes_nothing(pgvector_url: str) -> None:
    secret = make_url(pgvector_url).password or ""
    r = _ace("memory", "episodes", "--memory", pgvector_url)
    _user_error(r, "no episodic memory at postgresql+psycopg://postgres:***@")
    assert not secret or secret not in r.output
    assert _tables_and_extension(pgvector_url) == ([], False)  # no extension, no table made by a read


def test_a_reader_of_an_unknown_namespace_makes_no_table(pgvector_url: str, embedder: Any) -> None:
    store = open_episodic(pgvector_url, embedder, namespace="team-a")
    store.add([Episode(id="e1", task="add two numbers", summary="added", outcome="success", reflection="units")])
    before = _tables_and_extension(pgvector_url)
    r = _ace("memory", "episodes", "--memory", pgvector_url, "-n", "team-b")
    assert r.exit_code == 0 and "0 episode(s) in namespace 'team-b'" in r.output, r.output
    r = _ace("memory", "episodes", "numbers", "--chroma", pgvector_url, "-n", "team-b")
    assert r.exit_code == 0 and "0 episode(s)" in r.output, r.output
    assert _tables_and_extension(pgvector_url) == before and len(before[0]) == 1
    r = _ace("memory", "episodes", "--memory", pgvector_url, "-n", "team-a", "--json")
    assert r.exit_code == 0 and '"add two numbers"' in r.output, r.output
    r = _ace("memory", "episodes", "sum of numbers", "--memory", pgvector_url, "-n", "team-a")
    assert r.exit_code == 0 and "1 episode(s) in namespace 'team-a'" in r.output and "add two numbers" in r.output
    assert "***@" in r.output and (make_url(pgvector_url).password or "\0") not in r.output
    reader = open_episodic(pgvector_url, embedder, namespace="team-b", create=False)
    with pytest.raises(ConfigError, match="read-only"):
        reader.add([Episode(id="x", task="t", summary="s")])


def test_a_server_that_is_not_there_says_so(embedder: Any) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/ace"
    r = _ace("memory", "episodes", "--memory", url)
    _user_error(r, f"the PostgreSQL server at postgresql+psycopg://postgres:***@127.0.0.1:{port}/ace cannot be reached")
    assert "hunter2" not in r.output
    r = _ace("memory", "episodes", "--memory", "postgresql://u:hunter2@h:abc/db")
    _user_error(r, "a PostgreSQL URL that does not parse is not a PostgreSQL URL SQLAlchemy can open")
    assert "hunter2" not in r.output
    with pytest.raises(ConfigError, match="cannot be reached"):
        open_episodic(url, embedder, namespace="n")


def test_a_server_without_pgvector_says_so(pg_url: str, embedder: Any) -> None:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        has = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is not None
    engine.dispose()
    if has:
        pytest.skip("the PostgreSQL test server (ACE_TEST_PG_URL) has pgvector: nothing to refuse")
    with pytest.raises(ConfigError, match="has no pgvector extension"):
        open_episodic(pg_url, embedder, namespace="n")
    assert _tables_and_extension(pg_url) == ([], False)


@pytest.fixture
def limited_role(pgvector_url: str) -> Iterator[str]:
    """The test database, reached as a role that may not create an extension (not a superuser)."""
    admin = create_engine(pgvector_url, isolation_level="AUTOCOMMIT")
    role = f"ace_limited_{uuid.uuid4().hex[:8]}"
    db = make_url(pgvector_url).database
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'limited'"))
        conn.execute(text(f'GRANT ALL ON DATABASE "{db}" TO {role}'))
        conn.execute(text(f"GRANT ALL ON SCHEMA public TO {role}"))
    try:
        yield make_url(pgvector_url).set(username=role, password="limited").render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role} CASCADE"))  # its tables, and what it was granted
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_a_role_that_may_not_create_the_extension_is_told_who_can(
    pgvector_url: str, limited_role: str, embedder: Any
) -> None:
    with pytest.raises(
        ConfigError, match=r"CREATE EXTENSION vector failed .*permission denied.*\(a superuser can run it once\)"
    ):
        open_episodic(limited_role, embedder, namespace="n")
    assert _tables_and_extension(pgvector_url) == ([], False)
    open_episodic(pgvector_url, embedder, namespace="n")  # a superuser makes it once
    tier = open_episodic(limited_role, embedder, namespace="mine")  # then the role makes its tables and writes
    tier.add([Episode(id="e", task="t", summary="s")])
    assert tier.count() == 1


class _Tiny:
    name = "tiny"
    dim = 8

    def embed(self, texts: Any) -> np.ndarray:
        return np.full((len(texts), 8), 8**-0.5, dtype=np.float32)


def test_an_embedder_of_another_width_is_refused(pgvector_url: str, embedder: Any) -> None:
    tier = PgVectorEpisodicStore(pgvector_url, embedder, namespace="n")
    tier.add([Episode(id="e", task="t", summary="s")])
    with pytest.raises(ConfigError, match="384-d vectors; this embedder \\(tiny\\) makes 8-d ones"):
        PgVectorEpisodicStore(pgvector_url, _Tiny(), namespace="n")
    assert PgVectorEpisodicStore(pgvector_url, _Tiny(), namespace="other").count() == 0  # another namespace: its own


def test_ef_search_is_set_for_the_search_only(pgvector_url: str, embedder: Any) -> None:
    """A wider HNSW candidate list (ef_search) finds the same top episode, and is set for that search's transaction
    only: the pooled connection goes back with the server's default."""
    tier = PgVectorEpisodicStore(pgvector_url, embedder, namespace="n", ef_search=120)
    tier.add([Episode(id=f"e{i}", task=f"ratio of company {i}", summary="s") for i in range(30)])
    assert tier.search("ratio of company 7", 1)[0].episode.id == "e7"
    with tier.engine.connect() as conn:
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "40"


def test_a_worker_does_not_start_with_a_role_that_may_not_create_the_extension(
    limited_role: str, tmp_path: Any
) -> None:
    """Checked at start-up (ace serve and ace worker): else every episode would be taken and fail."""
    db = f"sqlite:///{tmp_path / 'ace.db'}"
    r = _ace("worker", "--db", db, "--memory", limited_role, "--provider", "scripted:valid")
    _user_error(r, "CREATE EXTENSION vector failed", "a superuser can run it once")
    assert "limited@" not in r.output  # the password is not shown


def test_an_episode_memory_refuses_is_learned_and_says_so(pgvector_url: str, embedder: Any, tmp_path: Any) -> None:
    """A NUL cannot be stored in PostgreSQL text: the playbook still learns, and the episode's note says that memory
    refused it (an HTTP client sees it in the episode's status)."""
    from ace.llm import LLM
    from ace.llm.testing import ScriptedProvider, valid_reply
    from ace.memory import Memory
    from ace.service.queue import EpisodeQueue
    from ace.service.worker import Worker
    from ace.store import PlaybookStore

    store = PlaybookStore(f"sqlite:///{tmp_path / 'ace.db'}")
    queue = EpisodeQueue(store, lease_s=30)
    log = {
        "id": "nul-1",
        "task": "nul \u0000 byte inside: which day are invoices sent?",
        "messages": [{"role": "user", "content": "nul \u0000 byte inside"}, {"role": "assistant", "content": "Monday"}],
        "outcome": {"success": False, "message": "wrong: the answer is Thursday"},
    }
    queue.submit("agent", log, namespace="default")
    tier = open_episodic(pgvector_url, embedder, namespace="default")
    worker = Worker(store, queue, llm=lambda: LLM(ScriptedProvider(valid_reply)), workdir=tmp_path / "runs",
                    memory=lambda ns: Memory(namespace=ns, episodic=tier))  # fmt: skip
    done = worker.run_once()
    assert done is not None
    assert done.status == "done" and done.committed, done.to_dict()
    note = done.to_dict()["note"]  # what GET /v1/episodes/... shows
    assert note and "memory refused the episode" in note and "NUL" in note, note
    assert tier.count() == 0
    store.close()
