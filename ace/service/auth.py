"""Bearer tokens for the HTTP service: each bound to namespaces and a role (read < write < admin).

A tokens file is JSON (or TOML) mapping a token to what it may do::

    {"tokens": {"s3cret-writer": {"namespaces": ["team-a"], "role": "write"},
                "ops-admin":     {"namespaces": ["*"], "role": "admin"}}}

``$ACE_TOKENS`` may hold the same JSON instead of a file. Tokens are compared in constant time; a token that is
shorter than 16 characters is refused when the file is read (a guessable token is a configuration error).
"""

from __future__ import annotations

import hmac
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ace.errors import ConfigError
from ace.names import check_name

Role = Literal["read", "write", "admin"]
ROLES: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
TOKEN_ENV = "ACE_TOKENS"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token may do: its role, in these namespaces (``*``: all)."""

    role: Role
    namespaces: frozenset[str]

    def allows(self, namespace: str, role: Role) -> bool:
        return ROLES[self.role] >= ROLES[role] and ("*" in self.namespaces or namespace in self.namespaces)


class Tokens:
    """The token table; :meth:`grant` finds a presented token's grant (or None) in constant time per entry."""

    def __init__(self, grants: dict[str, Grant]) -> None:
        self._grants = grants

    def __len__(self) -> int:
        return len(self._grants)

    def grant(self, presented: str) -> Grant | None:
        found = None
        for token, grant in self._grants.items():  # every entry compared: no early exit that timing could reveal
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = grant
        return found

    @classmethod
    def parse(cls, data: object, *, where: str) -> Tokens:
        table = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"{where}: expected {{'tokens': {{TOKEN: {{'namespaces': [...], 'role': ...}}}}}}")
        grants = {}
        for token, spec in table.items():
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"{where}: every token must be a string of at least {MIN_TOKEN_CHARS} characters")
            if not isinstance(spec, dict) or spec.get("role") not in ROLES:
                raise ConfigError(f"{where}: token …{token[-4:]} needs a role: read, write or admin")
            namespaces = spec.get("namespaces")
            if not isinstance(namespaces, list) or not namespaces or not all(isinstance(n, str) for n in namespaces):
                raise ConfigError(f"{where}: token …{token[-4:]} needs a non-empty list of namespaces ('*' for all)")
            for n in namespaces:
                if n != "*":
                    check_name(n, "namespace")
            grants[token] = Grant(spec["role"], frozenset(namespaces))
        return cls(grants)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Tokens:
        """From ``path`` (JSON or TOML), else from ``$ACE_TOKENS`` (JSON); raises ConfigError if neither is set."""
        if path is not None:
            p = Path(path)
            try:
                text = p.read_text(encoding="utf-8")
                data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{p}: cannot read the tokens file ({e})") from None
            return cls.parse(data, where=str(p))
        raw = os.environ.get(TOKEN_ENV)
        if not raw:
            raise ConfigError(f"no tokens: pass --tokens FILE or set ${TOKEN_ENV} (the service never runs open)")
        try:
            return cls.parse(json.loads(raw), where=f"${TOKEN_ENV}")
        except ValueError as e:
            raise ConfigError(f"${TOKEN_ENV} is not JSON ({e})") from None
