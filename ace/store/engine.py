"""The store's database: where it is by default, the engine that opens it, and its connections across a fork.

SQLite runs in WAL mode with a busy timeout and explicit ``BEGIN`` s (a writer takes the write lock up front with
``BEGIN IMMEDIATE``); any other database is opened as SQLAlchemy opens it. :class:`Connections` hands out read and
write transactions and drops the pooled connections a forked child inherited, so that no connection (and no lock
the parent holds) crosses a fork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

from ace.store.errors import StoreError

WAL_AUTOCHECKPOINT = 10_000  # pages (SQLite's default is 1,000)

log = logging.getLogger("ace.store")


def default_url() -> str:
    """``$ACE_DB`` if set, else SQLite at ``$XDG_DATA_HOME/ace/ace.db`` (``~/.local/share/ace/ace.db``)."""
    if url := os.environ.get("ACE_DB"):
        return url
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'ace' / 'ace.db'}"


_SECRET_QUERY = ("password", "pwd", "sslpassword")  # query parameters libpq and the drivers read as a password
_known_secrets: set[str] = set()  # the passwords of the URLs this process opened: never printed (hide_secrets)


def _split(url: str) -> tuple[str, str, str, str]:
    """``url`` as (scheme://, userinfo, host and the rest, query). The userinfo ends at the last ``@`` before the
    query, so that a password with a raw ``@`` (``user:Raw@Secret@host``) is userinfo whole, never part of a host."""
    scheme, rest = url.split("://", 1)
    before_query, sep, query = rest.partition("?")
    if "@" in before_query:
        at = before_query.rindex("@")
        return f"{scheme}://", before_query[:at], before_query[at + 1 :], query if sep else ""
    return f"{scheme}://", "", before_query, query if sep else ""


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that must never be printed: its password (as written and decoded), the part of a
    password with a raw ``@`` a driver would read as a host, and the values of ``password``, ``pwd`` and
    ``sslpassword`` query parameters."""
    if "://" not in url:
        return []
    _, userinfo, _, query = _split(url)
    found: list[str] = []
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password), *password.split("@")]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _SECRET_QUERY:
            found.append(value)
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key).lower() in _SECRET_QUERY:
            found.append(value)
    return sorted({f for f in found if f}, key=len, reverse=True)


def remember_secrets(url: str) -> None:
    """Note ``url``'s secrets (:func:`url_secrets`) so that :func:`hide_secrets` takes them out of any message, a
    driver's included (``failed to resolve host 'Secret@127.0.0.1'``)."""
    _known_secrets.update(s for s in url_secrets(url) if len(s) >= 2)


def hide_secrets(text: str, *urls: str) -> str:
    """``text`` with the secrets of ``urls`` and of every URL opened so far replaced by ``***``."""
    secrets = set(_known_secrets)
    for u in urls:
        secrets.update(url_secrets(u))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def shown_url(url: str) -> str:
    """``url`` as it may be printed: its password masked, and the values of its ``password``, ``pwd`` and
    ``sslpassword`` query parameters (a plain path is printed as it is)."""
    if "://" not in url:
        return url
    try:
        make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: nothing of it is printed but its scheme
        return url.split(":", 1)[0] + ":..." if ":" in url else "(a store URL)"
    scheme, userinfo, rest, query = _split(url)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    shown = scheme + (f"{userinfo}@" if userinfo else "") + rest
    if query:
        parts = []
        for part in query.split("&"):
            key, eq, _ = part.partition("=")
            parts.append(f"{key}=***" if eq and unquote(key).lower() in _SECRET_QUERY else part)
        shown += "?" + "&".join(parts)
    return shown


def make_engine(url: str, *, busy_timeout_s: float = 60.0, create_dirs: bool = False) -> Engine:
    """An engine set up for the store: SQLite in WAL mode with a busy timeout and explicit BEGINs. A SQLite file's
    directory must exist (a mistyped path is an error, not a new directory tree) unless ``create_dirs``."""
    if not url.startswith("sqlite"):
        remember_secrets(url)
        return create_engine(url, pool_pre_ping=True)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        parent = Path(path).expanduser().parent
        if create_dirs:
            parent.mkdir(parents=True, exist_ok=True)
        elif not parent.is_dir():
            raise StoreError(
                f"{shown_url(url)}: the directory {parent} does not exist; create it first or fix the path"
            )
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
    if not path or path == ":memory:":
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves (pysqlite's own is deferred and late)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # the checkpoint (copying the WAL back into the database, with an fsync) runs in whichever commit crosses
        # this many pages; a store that writes runs them earlier from its background thread (PlaybookStore), so this
        # is the backstop for processes that never do (one CLI call), at 40 MB of WAL instead of SQLite's 4 MB
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two of them cannot both read the same head.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ace_write") else "BEGIN")

    return engine


class Connections:
    """Transactions on ``engine``, safe across a fork: the first use in a forked child drops the connections it
    inherited (without closing them under the parent) and opens its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pid = os.getpid()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: it takes the database's writer lock at its start (``BEGIN IMMEDIATE`` on SQLite)."""
        self.own()
        with self.engine.connect() as conn:
            conn.execution_options(ace_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self.own()
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def own(self) -> None:
        """In a process forked from the one that opened the store, drop the pooled connections it inherited
        (SQLite's and the drivers' connections must not cross a fork: a lock the parent held would be the child's
        too, or nobody's) without closing them under the parent; the child opens its own."""
        if self._pid != os.getpid():
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def checkpoint(self) -> None:
        """A passive WAL checkpoint (SQLite): it copies what no reader needs back into the database without
        blocking readers or writers, so that no commit has to."""
        try:
            self.own()
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            finally:
                raw.close()
        except Exception as e:  # a busy or closed database: the next one, or SQLite's own, will do it
            log.debug("WAL checkpoint skipped: %s", e)
