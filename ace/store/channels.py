"""Channels: named pointers to versions of a playbook, each with a log of who moved it, when, why and on what evidence.

Two are always there. ``candidate`` is where learning commits: it is the head, always. ``serving`` is what agents
read: it follows the head until someone moves it to a version (a promotion, a demotion, a rollback of what is
served), and then stays there until it is moved again or set to follow the head once more. Other names (``canary``,
a pin per agent) are pointers that exist once moved. Reading a channel is one indexed read.

The tables (``ace_channels``: a channel's version, ``ace_channel_moves``: every move) are a component of the store's
database under Alembic (:mod:`ace.store.components`, version table ``ace_channel_version``): made by the first move,
never by a read. A database without them has no pointer yet: ``serving`` follows the head, as before channels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ace.names import InvalidName
from ace.store.components import ComponentSchema, TablePresence
from ace.store.errors import StoreError

CANDIDATE = "candidate"  # where learning commits: the head
SERVING = "serving"  # what agents read
BUILTIN = (CANDIDATE, SERVING)
# How serving moves: "immediate" follows the head (what every playbook did before channels); "review" stays where
# it is until a reviewer approves what learning added since (ace review); "gated" stays until a matched trial finds
# the candidate better on the playbook's lane (ace.governance); "gated+review": a trial passes it, a reviewer serves it
POLICIES = ("immediate", "review", "gated", "gated+review")
PINNED = frozenset(POLICIES) - {"immediate"}  # the policies under which serving stays where it is put
DEFAULT_POLICY = "immediate"

metadata = MetaData()

channels = Table(
    "ace_channels",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

moves = Table(
    "ace_channel_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("version", Integer, nullable=True),  # None: the channel follows the head from here on
    Column("previous", Integer, nullable=True),  # where it pointed before (None: it followed the head)
    Column("author", String(256), nullable=True),
    Column("reason", Text, nullable=True),
    Column("evidence", Text, nullable=True),  # JSON: what the move rests on (a trial, a review, an alert)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_channel_moves_lookup", "playbook_id", "channel", "id"),
)


policies = Table(
    "ace_policies",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("policy", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("author", String(256), nullable=True),
)


def _recognise(conn: Connection) -> str | None:
    return None  # the channels had a history from their first table on


SCHEMA = ComponentSchema("channels", "ace_channel_version", Path(__file__).parent / "channel_migrations", _recognise)


CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
RESERVED = frozenset({"head", "latest", "current"})  # would read as the head, which is "candidate"


def check_channel(name: str) -> str:
    """A channel's name as stored: lowercase ASCII letters, digits, ``-`` and ``_``, starting with a letter, at most
    64 characters (so ``Serving`` or a look-alike cannot pose as ``serving``), not ``candidate`` (the head, which is
    moved by commits) nor a name that reads as the head; :class:`InvalidName` otherwise."""
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        shown = ascii(name)[:40] if isinstance(name, str) else type(name).__name__
        raise InvalidName(
            "a channel name is lowercase letters, digits, '-' and '_', starting with a letter, at most 64 characters: "
            f"{shown} is not one"
        )
    if name in RESERVED:
        raise InvalidName(f"{name!r} would read as the head: the head is the channel 'candidate'")
    return name


class ChannelNotFound(StoreError):
    """A channel that was never moved (only ``candidate`` and ``serving`` always exist)."""


class ChannelMoved(StoreError):
    """A channel no longer points where the mover expected: someone moved it first."""

    def __init__(self, where: str, channel: str, expected: int | None, actual: int | None) -> None:
        self.expected, self.actual = expected, actual
        at = f"v{actual}" if actual is not None else "nothing"
        super().__init__(f"channel {channel!r} of {where} points at {at}, not v{expected}: someone moved it first")


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """Where a channel points: its version, and whether it follows the head."""

    name: str
    version: int
    follows_head: bool
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.name,
            "version": self.version,
            "follows_head": self.follows_head,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True, slots=True)
class ChannelMove:
    """One entry of a channel's log."""

    channel: str
    version: int | None  # None: set to follow the head
    previous: int | None
    author: str | None
    reason: str | None
    evidence: dict[str, Any] | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "version": self.version,
            "previous": self.previous,
            "author": self.author,
            "reason": self.reason,
            "evidence": self.evidence,
            "created_at": self.created_at.isoformat(),
        }


# whether the database has the channel tables (remembered per engine once it has)
tables_present = TablePresence("ace_channels")


def pointed(conn: Connection, playbook_id: int, channel: str) -> int | None:
    """The version ``channel`` points at, or None when it has no pointer (it follows the head, or was never
    moved)."""
    if not tables_present(conn):
        return None
    q = channels.select().where(channels.c.playbook_id == playbook_id, channels.c.channel == channel)
    row = conn.execute(q).one_or_none()
    return None if row is None else int(row.version)


def version_of(conn: Connection, playbook_id: int, head: int, channel: str, where: str) -> int:
    """The version a read of ``channel`` gets: the head for ``candidate`` and for a ``serving`` that follows it."""
    if channel == CANDIDATE:
        return head
    found = pointed(conn, playbook_id, channel)
    if found is not None:
        return found
    if channel == SERVING:
        return head
    raise ChannelNotFound(f"playbook {where} has no channel {channel!r} (candidate, serving or one moved before)")


def listed(conn: Connection, playbook_id: int, head: int) -> list[ChannelInfo]:
    """``candidate``, ``serving`` and every other channel moved, in that order."""
    by_name: dict[str, Any] = {}
    if tables_present(conn):
        rows = conn.execute(channels.select().where(channels.c.playbook_id == playbook_id)).all()
        by_name = {r.channel: r for r in rows}
    serving = by_name.pop(SERVING, None)
    found = [
        ChannelInfo(CANDIDATE, head, True),
        ChannelInfo(SERVING, head, True) if serving is None else ChannelInfo(
            SERVING, int(serving.version), False, _utc(serving.updated_at)),
    ]  # fmt: skip
    found += [ChannelInfo(n, int(r.version), False, _utc(r.updated_at)) for n, r in sorted(by_name.items())]
    return found


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # SQLite gives the stored UTC time back without its zone


def policy_of(conn: Connection, playbook_id: int) -> str:
    """The playbook's promotion policy (``immediate`` when none was set)."""
    if not tables_present(conn):
        return DEFAULT_POLICY
    found = conn.execute(policies.select().where(policies.c.playbook_id == playbook_id)).one_or_none()
    return DEFAULT_POLICY if found is None else str(found.policy)


def set_policy(conn: Connection, playbook_id: int, policy: str, *, author: str | None, now: datetime) -> None:
    conn.execute(policies.delete().where(policies.c.playbook_id == playbook_id))
    conn.execute(policies.insert().values(playbook_id=playbook_id, policy=policy, updated_at=now, author=author))


def log(conn: Connection, playbook_id: int, channel: str | None = None) -> list[ChannelMove]:
    if not tables_present(conn):
        return []
    q = moves.select().where(moves.c.playbook_id == playbook_id)
    if channel is not None:
        q = q.where(moves.c.channel == channel)
    return [
        ChannelMove(r.channel, r.version, r.previous, r.author, r.reason,
                    json.loads(r.evidence) if r.evidence else None, _utc(r.created_at))
        for r in conn.execute(q.order_by(moves.c.id)).all()
    ]  # fmt: skip


def move(
    conn: Connection,
    playbook_id: int,
    channel: str,
    version: int | None,
    *,
    author: str | None,
    reason: str | None,
    evidence: dict[str, Any] | None,
    now: datetime,
) -> int | None:
    """Point ``channel`` at ``version`` (None: follow the head) and log the move, in ``conn``'s write transaction
    (the caller has locked the playbook's row and checked the version). Returns where it pointed before."""
    previous = pointed(conn, playbook_id, channel)
    where = (channels.c.playbook_id == playbook_id) & (channels.c.channel == channel)
    conn.execute(channels.delete().where(where))
    if version is not None:
        conn.execute(channels.insert().values(playbook_id=playbook_id, channel=channel, version=version,
                                              updated_at=now))  # fmt: skip
    conn.execute(
        moves.insert().values(
            playbook_id=playbook_id, channel=channel, version=version, previous=previous, author=author,
            reason=reason, evidence=json.dumps(evidence, sort_keys=True) if evidence is not None else None,
            created_at=now,
        )
    )  # fmt: skip
    return previous


__all__ = [
    "BUILTIN",
    "CANDIDATE",
    "DEFAULT_POLICY",
    "PINNED",
    "POLICIES",
    "SCHEMA",
    "SERVING",
    "ChannelInfo",
    "ChannelMove",
    "ChannelMoved",
    "ChannelNotFound",
    "check_channel",
    "listed",
    "log",
    "move",
    "pointed",
    "policy_of",
    "set_policy",
    "version_of",
]
