"""Bearer tokens for the HTTP service: each bound to namespaces and a role (read < write < review < admin), with a
name.

A tokens file is JSON (or TOML) mapping a token to who holds it and what it may do::

    {"tokens": {"s3cret-writer-token": {"name": "ci-bot", "namespaces": ["team-a"], "role": "write"},
                "ops-admin-token-42": {"name": "ops", "namespaces": ["*"], "role": "admin"}}}

- ``role``: ``read``, ``write``, ``review`` (approves or rejects what learning proposed for agents to read) or
  ``admin``, each allowed what the ones before it are; ``namespaces``: a non-empty list of namespace names (``*``: all);
- ``name`` (optional): who holds the token, recorded as the author of what it writes (``token:<name>``), so two
  tokens of one namespace can be told apart. A name follows :func:`ace.names.check_name` and is unique in the
  file; without one, a token is named ``token-`` + the first 8 hex digits of its SHA-256 (stable across restarts;
  the token itself is never logged, printed or recorded);
- any other field, or a field of the wrong type, is a :class:`~ace.errors.ConfigError` naming the token by its
  last 4 characters and the field.

``$ACE_TOKENS`` may hold the same JSON instead of a file. Tokens are compared in constant time; a token that is
shorter than 16 characters is refused when the file is read (a guessable token is a configuration error). As ssh
does with loose key files, a tokens file that its group or other users can write is refused (anyone who can write
it can grant themselves admin: ``chmod 600 FILE``), and one that other users can read loads with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from ace.errors import ConfigError
from ace.names import check_name
from ace.playbook.jsonio import load_json

Role = Literal["read", "write", "review", "admin"]
# each role may do what the ones before it may: a reviewer approves or rejects what learning proposed (and writes)
ROLES: dict[str, int] = {"read": 0, "write": 1, "review": 2, "admin": 3}
TOKEN_ENV = "ACE_TOKENS"
MIN_TOKEN_CHARS = 16
MAX_TOKENS_FILE = 1 << 20  # bytes: a tokens file holds a few hundred entries, not megabytes
FIELDS = ("name", "namespaces", "role")
RELOAD_S = 1.0  # a tokens file is looked at again at most this often (its size, mtime and inode)
SHAPE = "{'tokens': {TOKEN: {'name': NAME, 'namespaces': [...], 'role': 'read' | 'write' | 'review' | 'admin'}}}"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token may do: its role, in these namespaces (``*``: all); ``name`` says who holds it."""

    role: Role
    namespaces: frozenset[str]
    name: str = "unnamed"
    in_process: bool = False  # held by code in this process (a library adapter), not presented as a token

    def allows(self, namespace: str, role: Role) -> bool:
        return ROLES[self.role] >= ROLES[role] and ("*" in self.namespaces or namespace in self.namespaces)

    @classmethod
    def local(cls, name: str, namespaces: Iterable[str] | None = None, *, role: Role = "write") -> Grant:
        """The grant of in-process code (the LangGraph store, the Agents SDK hooks, ``ace mcp`` over stdio):
        ``role`` in ``namespaces`` (None: all); its writes are recorded under ``name`` as it is."""
        allowed = frozenset({"*"}) if namespaces is None else frozenset(namespaces)
        return cls(role, allowed, name=name, in_process=True)


def default_name(token: str) -> str:
    """The name of a token that has none: ``token-`` + 8 hex digits of its SHA-256 (it reveals nothing usable)."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def token_digest(token: str) -> str:
    """What names a token where the token itself must not be (a console session): 32 hex digits of an HMAC of it."""
    return hmac.new(token.encode("utf-8"), b"ace-token-digest", hashlib.sha256).hexdigest()[:32]


class Tokens:
    """The token table; :meth:`grant` finds a presented token's grant (or None) in constant time per entry.

    Loaded from a file (:meth:`load`), the table follows the file: at most once a second (:data:`RELOAD_S`) a check
    looks at the file's size, modification time and inode, and a file that changed is read again, so a token removed
    or demoted there stops working (its console sessions too) within a second. A file that no longer loads (not
    JSON, a wrong field, a mode others may write, gone) keeps the tokens as they were and logs an error, once per
    change of the file: a mistake in it never opens access. ``$ACE_TOKENS`` is read once (restart to change it)."""

    def __init__(self, grants: dict[str, Grant], *, source: Path | None = None) -> None:
        self._grants = grants
        self._digests = {token_digest(t): t for t in grants}
        self._source = source
        self._stamp = _stamp(source) if source is not None else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._grants)

    def grant(self, presented: str) -> Grant | None:
        self.refresh()
        found = None
        for token, grant in self._grants.items():  # every entry compared: no early exit that timing could reveal
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = grant
        return found

    def by_digest(self, digest: str) -> tuple[str, Grant] | None:
        """The token whose :func:`token_digest` is ``digest``, and its grant (None: no such token now)."""
        self.refresh()
        grants, digests = self._grants, self._digests
        token = digests.get(digest)
        return None if token is None or token not in grants else (token, grants[token])

    def refresh(self, *, now: float | None = None) -> bool:
        """Read the tokens file again if it changed since it was read (checked at most once per :data:`RELOAD_S`);
        True when the table changed."""
        if self._source is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._checked < RELOAD_S:
            return False
        with self._lock:
            if now - self._checked < RELOAD_S:
                return False
            self._checked = now
            stamp = _stamp(self._source)
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                fresh = Tokens.load(self._source)
            except ConfigError as e:
                log.error(
                    "%s: the tokens file changed and does not load (%s); the tokens read before stay", self._source, e
                )
                return False
            self._grants, self._digests = fresh._grants, fresh._digests
            log.info("%s: the tokens file changed: %d token(s) now", self._source, len(fresh))
            return True

    @classmethod
    def parse(cls, data: object, *, where: str) -> Tokens:
        table = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"{where}: expected {SHAPE}")
        grants: dict[str, Grant] = {}
        holders: dict[str, str] = {}  # name -> the token's last 4 characters
        for token, spec in table.items():
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"{where}: every token must be a string of at least {MIN_TOKEN_CHARS} characters")
            grant = _grant(token, spec, where)
            if grant.name in holders:
                raise ConfigError(
                    f"{where}: tokens …{holders[grant.name]} and …{token[-4:]} are both named {grant.name!r}; "
                    "each token needs its own name"
                )
            holders[grant.name] = token[-4:]
            grants[token] = grant
        return cls(grants)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Tokens:
        """From ``path`` (JSON or TOML), else from ``$ACE_TOKENS`` (JSON); raises ConfigError if neither is set, and
        if the file is writable by its group or others (see the module doc)."""
        if path is not None:
            p = Path(path)
            try:
                with p.open("rb") as f:  # the mode checked is that of the file read, not of a path swapped later
                    _check_mode(p, os.fstat(f.fileno()).st_mode)
                    raw_bytes = f.read(MAX_TOKENS_FILE + 1)
                if len(raw_bytes) > MAX_TOKENS_FILE:
                    raise ConfigError(f"{p}: the tokens file is over {MAX_TOKENS_FILE:,} bytes")
                text = raw_bytes.decode("utf-8")
                data = tomllib.loads(text) if p.suffix == ".toml" else load_json(text, what="the tokens file")
            except RecursionError:  # TOML nested beyond Python's recursion limit
                raise ConfigError(f"{p}: cannot read the tokens file (nested too deeply)") from None
            except (OSError, ValueError) as e:
                if isinstance(e, ConfigError):
                    raise
                raise ConfigError(f"{p}: cannot read the tokens file ({e})") from None
            table = cls.parse(data, where=str(p))
            return cls(table._grants, source=p)
        raw = os.environ.get(TOKEN_ENV)
        if not raw:
            raise ConfigError(f"no tokens: pass --tokens FILE or set ${TOKEN_ENV} (the service never runs open)")
        try:
            data = load_json(raw, what=f"${TOKEN_ENV}", max_chars=MAX_TOKENS_FILE)
        except ValueError as e:
            raise ConfigError(f"${TOKEN_ENV} is not JSON ({e})") from None
        return cls.parse(data, where=f"${TOKEN_ENV}")


def _grant(token: str, spec: object, where: str) -> Grant:
    """One entry's grant; every malformed field is a ConfigError naming the token (last 4 characters) and field."""
    who = f"{where}: token …{token[-4:]}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{who} must map to an object like {{'namespaces': [...], 'role': ...}}, not {_kind(spec)}")
    unknown = sorted(str(k) for k in spec if k not in FIELDS)
    if unknown:
        raise ConfigError(f"{who} has unknown field(s) {', '.join(map(repr, unknown))}; fields: {', '.join(FIELDS)}")
    role = spec.get("role")
    if not isinstance(role, str) or role not in ROLES:
        shown = repr(role) if isinstance(role, str) else _kind(role)
        raise ConfigError(f"{who}: field 'role' must be 'read', 'write', 'review' or 'admin', not {shown}")
    namespaces = spec.get("namespaces")
    if not isinstance(namespaces, list) or not namespaces:
        raise ConfigError(f"{who}: field 'namespaces' must be a non-empty list of names ('*' for all)")
    allowed = set()
    for n in namespaces:
        if not isinstance(n, str):
            raise ConfigError(f"{who}: field 'namespaces' holds {_kind(n)}; every namespace is a name ('*' for all)")
        allowed.add(n if n == "*" else _checked(n, who, "namespaces"))
    name = spec.get("name")
    if name is None:
        name = default_name(token)
    elif not isinstance(name, str):
        raise ConfigError(f"{who}: field 'name' must be a name, not {_kind(name)}")
    else:
        name = _checked(name, who, "name")
    return Grant(cast(Role, role), frozenset(allowed), name)


def _checked(value: str, who: str, field: str) -> str:
    """``value`` NFC-normalized, or :class:`~ace.names.InvalidName` (a ConfigError) naming the token and field."""
    return check_name(value, f"{who}: field {field!r}:")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells that a file changed: its size, modification time (ns), inode and change time; None: no file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _check_mode(path: Path, mode: int) -> None:
    """Refuse a tokens file its group or others can write; warn when others can read it (as ssh does)."""
    if os.name == "nt" or not stat.S_ISREG(mode):
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "other users" if mode & stat.S_IWOTH else "its group"
        raise ConfigError(
            f"{path}: the tokens file is writable by {who} (mode {stat.S_IMODE(mode):04o}), so they could grant "
            f"themselves any role; refused. Run: chmod 600 {path}"
        )
    if mode & stat.S_IROTH:
        log.warning(
            "%s: the tokens file is readable by other users (mode %04o): they can use its tokens; run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
