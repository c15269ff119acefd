"""The episodic tier on PostgreSQL with pgvector: the same episodes, search and filters as the Chroma tier
(:class:`~ace.memory.episodic.EpisodicStore`), in the database the playbook store already uses, so a deployment
runs one database server.

Chosen by the location: a PostgreSQL URL (``postgresql+psycopg://…``, ``postgresql://…`` or ``postgres://…``) where
the Chroma tier takes a directory or a ``chroma run`` URL (:func:`~ace.memory.tiers.open_episodic`, which
``Memory.local``, ``ace serve|worker --memory`` and ``ace memory episodes --chroma`` use). The server needs the
``vector`` extension (pgvector 0.5 or later, for HNSW); a writer creates it (``CREATE EXTENSION IF NOT EXISTS
vector``, which needs a role allowed to), then one table per namespace, ``ace_episodes_<slug>_<hash>``, with an HNSW
index on cosine distance, so no read crosses a namespace and a namespace's search scans no other's rows (as Chroma's
collection per namespace). Vectors are computed by ACE's embedder, as for Chroma.

Search: the HNSW index gives the top ``k``, with ``hnsw.ef_search`` (the candidate list: recall against latency,
docs/memory.md has figures) at ``ef_search`` (default 40, pgvector's own) or ``2k`` if larger, since it also bounds
how many rows the index returns; set for the search's transaction only. With filters (outcome, time, playbook) the
index's rows are filtered after the scan, so when fewer than ``k`` come back the search runs again exactly (a
sequential scan of the namespace's rows that match), so a filter never hides an episode that matches.

Writes are upserts keyed by episode id (a repeated step does not duplicate), one transaction per batch. PostgreSQL's
text cannot hold NUL characters, and UTF-8 cannot hold lone surrogates: an episode with either is refused whole
(:class:`~ace.errors.InvalidInput`, naming the episode and the field) before anything is written.

Opened with ``create=False`` (a reader), nothing is made: a database with no episode table at all is
:class:`~ace.memory.episodic.NoEpisodicMemory`, a namespace without a table reads as empty.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from ace.errors import ConfigError, InvalidInput
from ace.llm.embeddings import Embedder
from ace.memory.episodic import TEXT_FIELDS, Episode, Hit, NoEpisodicMemory, Outcome, check_episode
from ace.store.engine import hide_secrets, remember_secrets, shown_url

TABLE_PREFIX = "ace_episodes"
HNSW_EF_SEARCH = 40  # pgvector's default
_COLUMNS = "id, task, summary, outcome, reflection, playbook, version, task_id, run_id, created_at"


def is_postgres_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database (and so the pgvector tier) rather than a Chroma one."""
    scheme, sep, _ = str(location).partition("://")
    return bool(sep) and scheme.split("+", 1)[0].lower() in ("postgresql", "postgres")


def engine_url(location: str) -> str:
    """``location`` with a driver SQLAlchemy has here: ``postgresql://`` and ``postgres://`` become psycopg 3's."""
    scheme, _, rest = location.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme.lower() in ("postgresql", "postgres") else location


def _extension(conn: Connection, url: str) -> None:
    """The pgvector extension, created if it is not there; a server without it, or a role that may not create it,
    is one clear error."""
    if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is not None:
        return
    if conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is None:
        raise ConfigError(
            f"the PostgreSQL server at {shown(url)} has no pgvector extension (install pgvector there, or keep "
            "the episodic tier on Chroma: a directory or a chroma URL)"
        )
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as e:
        first = hide_secrets(str(e.orig).splitlines()[0], url)
        raise ConfigError(
            f"CREATE EXTENSION vector failed at {shown(url)}: {first} (a superuser can run it once)"
        ) from None


def check_writable(url: str) -> None:
    """What ``ace serve`` / ``ace worker --memory URL`` check before they start: the server can be reached and has
    the pgvector extension, created now if this role may (else the workers would take episodes and fail each one)."""
    remember_secrets(url)
    try:
        engine = create_engine(engine_url(url), pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise ConfigError(
            f"{shown(url)} is not a PostgreSQL URL SQLAlchemy can open ({hide_secrets(str(e), url)})"
        ) from None
    try:
        conn = _connect(engine, url)
        with conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ace-episodic-ddl'))"))
            _extension(conn, url)
    finally:
        engine.dispose()


def shown(location: str) -> str:
    """The URL without its password (in the user part or a ``password=`` query parameter), for messages."""
    try:
        make_url(engine_url(location))
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "a PostgreSQL URL that does not parse"
    return shown_url(engine_url(location))


def table_name(namespace: str, prefix: str = TABLE_PREFIX) -> str:
    """A namespace's table: a readable slug plus a hash, so distinct namespaces never share a table; lower case
    letters, digits and ``_`` only, within PostgreSQL's 63 bytes."""
    slug = re.sub(r"[^a-z0-9]+", "_", namespace.lower()).strip("_")[:24]
    return f"{prefix}_{slug}_{hashlib.sha256(namespace.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def _vector(v: Any) -> str:
    """pgvector's text form of a vector: ``[x1,x2,…]``."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(v, dtype=np.float32).ravel()) + "]"


class PgVectorEpisodicStore:
    """Episodes of one namespace in its own PostgreSQL table with an HNSW index (pgvector); with ``create=False``,
    read only: nothing is made (see the module doc)."""

    def __init__(
        self,
        url: str,
        embedder: Embedder,
        *,
        namespace: str = "default",
        create: bool = True,
        engine: Engine | None = None,
        ef_search: int = HNSW_EF_SEARCH,
    ) -> None:
        if not namespace:
            raise ConfigError("namespace must not be empty")
        self.namespace = namespace
        self.embedder = embedder
        self.url = url
        self.table = table_name(namespace)
        self.ef_search = ef_search  # HNSW's candidate list per search: higher finds more of the true top k, slower
        remember_secrets(url)  # a driver's message that repeats part of the password shows *** (hide_secrets)
        try:
            self.engine = engine or create_engine(engine_url(url), pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ValueError) as e:
            raise ConfigError(
                f"{shown(url)} is not a PostgreSQL URL SQLAlchemy can open ({hide_secrets(str(e), url)})"
            ) from None
        self.exists = False  # whether the namespace's table is there (a reader's unknown namespace: no)
        with self._begin() as conn:
            if create:
                self._create(conn)
                self.exists = True
            else:
                tables = conn.execute(
                    text("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relname LIKE :p"),
                    {"p": TABLE_PREFIX.replace("_", r"\_") + r"\_%"},
                ).scalars()
                found = set(tables)
                if not found:
                    raise NoEpisodicMemory(shown(url))
                self.exists = self.table in found

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; a server that cannot be reached (or refuses the connection) is one clear error."""
        conn = _connect(self.engine, self.url)
        with conn, conn.begin():
            yield conn

    def _create(self, conn: Connection) -> None:
        """The extension, the namespace's table and its indexes, made once (an advisory lock keeps two processes
        from racing on them); a table of another width is refused."""
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ace-episodic-ddl'))"))
        _extension(conn, self.url)
        t, dim = self.table, int(self.embedder.dim)
        conn.execute(text(f"""CREATE TABLE IF NOT EXISTS "{t}" (
            id text PRIMARY KEY, namespace text NOT NULL, task text NOT NULL, summary text NOT NULL,
            outcome text NOT NULL, reflection text NOT NULL, playbook text NOT NULL, version integer,
            task_id text NOT NULL, run_id text NOT NULL, created_at double precision NOT NULL,
            document text NOT NULL, embedding vector({dim}) NOT NULL)"""))  # fmt: skip
        conn.execute(text(f'CREATE INDEX IF NOT EXISTS "{t}_hnsw" ON "{t}" USING hnsw (embedding vector_cosine_ops)'))
        conn.execute(text(f'CREATE INDEX IF NOT EXISTS "{t}_created" ON "{t}" (created_at)'))
        width = conn.execute(
            text("SELECT atttypmod FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = 'embedding'"),
            {"t": f'"{t}"'},
        ).scalar()
        if width != dim:
            raise ConfigError(
                f"namespace {self.namespace!r}'s episodes at {shown(self.url)} are {width}-d vectors; this embedder "
                f"({self.embedder.name}) makes {dim}-d ones"
            )

    def add(self, episodes: Sequence[Episode], vectors: np.ndarray | None = None) -> None:
        """Store (upsert) episodes in one transaction; ``vectors`` may be given (precomputed), else they are
        embedded here."""
        if not episodes:
            return
        if not self.exists:
            raise ConfigError("this episodic store was opened read-only (create=False)")
        for e in episodes:
            check_episode(e, nul=False)
        docs = [e.document() for e in episodes]
        vecs = self.embedder.embed(docs) if vectors is None else vectors
        if len(vecs) != len(episodes):
            raise InvalidInput(f"{len(episodes)} episodes but {len(vecs)} vectors")
        rows = [
            {
                "id": e.id, "namespace": self.namespace, "task": e.task, "summary": e.summary, "outcome": e.outcome,
                "reflection": e.reflection, "playbook": e.playbook, "version": e.version, "task_id": e.task_id,
                "run_id": e.run_id, "created_at": float(e.created_at), "document": doc, "embedding": _vector(v),
            }
            for e, doc, v in zip(episodes, docs, vecs, strict=True)
        ]  # fmt: skip
        columns = (*TEXT_FIELDS, "version", "created_at", "document", "embedding")
        updated = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        with self._begin() as conn:
            conn.execute(
                text(
                    f'INSERT INTO "{self.table}" ({_COLUMNS}, namespace, document, embedding) VALUES (:id, :task, '
                    ":summary, :outcome, :reflection, :playbook, :version, :task_id, :run_id, :created_at, "
                    ":namespace, :document, CAST(:embedding AS vector)) "
                    f"ON CONFLICT (id) DO UPDATE SET {updated}"
                ),
                rows,
            )

    def search(
        self,
        query: str | np.ndarray,
        k: int = 5,
        *,
        outcome: Outcome | None = None,
        since: float | None = None,
        until: float | None = None,
        playbook: str | None = None,
    ) -> list[Hit]:
        """The ``k`` episodes most similar to ``query`` (text or a vector), within the filters."""
        if not self.exists or k < 1:
            return []
        conds, params = [], {}
        for name, value, op in (("outcome", outcome, "="), ("playbook", playbook, "="),
                                ("since", since, ">="), ("until", until, "<=")):  # fmt: skip
            if value is None or value == "":
                continue
            column = "created_at" if name in ("since", "until") else name
            conds.append(f"{column} {op} :{name}")
            params[name] = float(value) if column == "created_at" else value
        vec = self.embedder.embed([query])[0] if isinstance(query, str) else query
        params |= {"q": _vector(vec), "k": int(k)}
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        sql = text(
            f'SELECT {_COLUMNS}, embedding <=> CAST(:q AS vector) AS distance FROM "{self.table}" {where} '
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"
        )
        with self._begin() as conn:
            ef = min(max(self.ef_search, 2 * k), 1000)  # it also bounds how many rows the index returns
            if ef != HNSW_EF_SEARCH:
                conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef)})
            rows = conn.execute(sql, params).all()
            if conds and len(rows) < k:  # the index's rows were filtered after the scan: search exactly
                conn.execute(text("SET LOCAL enable_indexscan = off"))
                rows = conn.execute(sql, params).all()
        return [Hit(_episode(r), 1.0 - float(r.distance)) for r in rows]

    def get(self, episode_id: str) -> Episode | None:
        if not self.exists or "\x00" in episode_id:
            return None
        with self._begin() as conn:
            row = conn.execute(
                text(f'SELECT {_COLUMNS} FROM "{self.table}" WHERE id = :id'), {"id": episode_id}
            ).first()
        return _episode(row) if row is not None else None

    def count(self) -> int:
        if not self.exists:
            return 0
        with self._begin() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM "{self.table}"')).scalar_one())

    def recent(self, limit: int = 10) -> list[Episode]:
        """The ``limit`` most recent episodes, newest first."""
        if not self.exists:
            return []
        with self._begin() as conn:
            rows = conn.execute(
                text(f'SELECT {_COLUMNS} FROM "{self.table}" ORDER BY created_at DESC, id LIMIT :n'), {"n": int(limit)}
            ).all()
        return [_episode(r) for r in rows]

    def close(self) -> None:
        self.engine.dispose()


def _episode(row: Any) -> Episode:
    return replace(
        Episode(id=str(row.id), task=row.task, summary=row.summary),
        outcome=row.outcome,
        reflection=row.reflection,
        playbook=row.playbook,
        version=row.version,
        task_id=row.task_id,
        run_id=row.run_id,
        created_at=float(row.created_at),
    )


def _connect(engine: Engine, url: str) -> Connection:
    """A connection, or a ConfigError naming the server (never its password) when it cannot be reached."""
    try:
        return engine.connect()
    except DBAPIError as e:
        detail = next((ln.strip() for ln in str(e.orig).splitlines() if ln.strip()), type(e.orig).__name__)
        raise ConfigError(
            f"the PostgreSQL server at {shown(url)} cannot be reached ({hide_secrets(detail, url)[:160]})"
        ) from None
