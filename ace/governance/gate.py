"""A playbook's gate, kept in the store's database: its evaluation lane (a task file and the evaluator that scores
it), the settings of the test that decides (alpha, minimum effect, the test, how the campaign spends alpha), the
campaign (:class:`~ace.governance.stats.Campaign`, as JSON), the watch after a promotion (on or off, the
detector's window and alpha), every trial with each task's answers (so a trial that was stopped or killed goes on
where it was), and the outcomes agents reported for the version they read (what the watch looks at).

The tables (``ace_gates``, ``ace_trials``, ``ace_trial_results``, ``ace_outcomes``) are a component under Alembic
(:mod:`ace.store.components`; history in ``gate_migrations``, version table ``ace_gate_version``), made by the
first write (a lane, a watch, a trial, an outcome), never by a read.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ace.errors import ConfigError, InputFileError
from ace.governance.stats import SPENDING, TESTS, Campaign, check_alpha
from ace.names import check_optional
from ace.store import PlaybookNotFound, PlaybookStore
from ace.store import schema as store_schema
from ace.store.components import ComponentSchema, TablePresence
from ace.tasks import Evaluator, Task, load_finance, load_tasks

Status = Literal["running", "stopped", "promoted", "passed", "not-better", "superseded"]
OPEN: tuple[Status, ...] = ("running", "stopped")  # a trial that goes on when it is run again
Arm = Literal["candidate", "serving"]
ARMS: tuple[Arm, ...] = ("candidate", "serving")
MAX_LANE_TASKS = 10_000
DEFAULT_WATCH_WINDOW = 20
MAX_WATCH_WINDOW = 10_000

metadata = MetaData()

gates = Table(
    "ace_gates",
    metadata,
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), primary_key=True),
    Column("tasks", Text, nullable=True),  # the lane's task file (absolute path); None: no lane
    Column("evaluator", Text, nullable=True),  # its evaluator's spec, JSON ({"name": ..., **parameters})
    Column("n_tasks", Integer, nullable=True),
    Column("digest", String(64), nullable=True),  # SHA-256 of the task file when the lane was set
    Column("alpha", Float, nullable=False),
    Column("min_effect", Float, nullable=False),
    Column("test", String(16), nullable=False),
    Column("spending", String(16), nullable=False),
    Column("looks", Integer, nullable=False),
    Column("campaign", Text, nullable=True),  # Campaign.to_dict(), JSON
    Column("watch", Boolean, nullable=False),
    Column("watch_window", Integer, nullable=False),
    Column("watch_alpha", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("author", String(256), nullable=True),
)

trials = Table(
    "ace_trials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("candidate", Integer, nullable=False),
    Column("serving", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("campaign", Integer, nullable=False),  # the campaign's number
    Column("look", Integer, nullable=False),  # the look's number in its campaign
    Column("alpha", Float, nullable=False),  # the look's share of the campaign's alpha
    Column("lane", Text, nullable=False),  # JSON: tasks, evaluator, digest, n
    Column("provider", String(256), nullable=True),
    Column("tokens", Integer, nullable=False),
    Column("wall_s", Float, nullable=False),
    Column("decision", Text, nullable=True),  # JSON: the decision and its evidence, once decided
    Column("note", Text, nullable=True),  # why it stopped (a budget, a provider), or why it was superseded
    Column("author", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_trials_lookup", "playbook_id", "id"),
)

results = Table(
    "ace_trial_results",
    metadata,
    Column("trial_id", Integer, ForeignKey("ace_trials.id", ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(256), primary_key=True),
    Column("arm", String(16), primary_key=True),  # candidate | serving
    Column("correct", Boolean, nullable=True),
    Column("score", Float, nullable=True),
    Column("answer", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("tokens", Integer, nullable=False),
    Column("latency_s", Float, nullable=False),
)

outcomes = Table(
    "ace_outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("playbook_id", Integer, ForeignKey("ace_playbooks.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),  # the version the agent read
    Column("success", Boolean, nullable=False),
    Column("episode", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ace_outcomes_lookup", "playbook_id", "version", "id"),
)

TABLES = (gates, trials, results, outcomes)


def _recognise(conn: Connection) -> str | None:
    return None  # the gate's tables had a history from their first table on


SCHEMA = ComponentSchema("gate", "ace_gate_version", Path(__file__).parent / "gate_migrations", _recognise)


class LaneError(ConfigError):
    """A lane that cannot be used: no task file there, a file with no task, an evaluator nobody registered."""


class NoLane(ConfigError):
    """The playbook has no evaluation lane (``ace playbook lane NAME --tasks F --evaluator E``)."""


# -- the lane -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lane:
    """An evaluation lane, loaded: its tasks, the evaluator that scores them, and where they came from."""

    path: str
    spec: dict[str, Any]
    tasks: list[Task]
    evaluator: Evaluator
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.path, "evaluator": self.spec, "digest": self.digest, "n": len(self.tasks)}


def evaluator_spec(evaluator: str | dict[str, Any]) -> dict[str, Any]:
    """An evaluator's spec from its name (``exact``) or a JSON object (``{"name": "numeric", "abs_tol": 0.5}``)."""
    if isinstance(evaluator, dict):
        spec = evaluator
    elif isinstance(evaluator, str) and evaluator.strip().startswith("{"):
        try:
            spec = json.loads(evaluator)
        except json.JSONDecodeError as e:
            raise LaneError(f"the evaluator {evaluator[:60]!r} is not a name or a JSON object ({e})") from None
    elif isinstance(evaluator, str) and evaluator.strip():
        spec = {"name": evaluator.strip()}
    else:
        raise LaneError("a lane names its evaluator (exact, numeric, tags, conventions, or a registered one)")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise LaneError(f'an evaluator spec is {{"name": ..., **parameters}}, not {str(evaluator)[:60]!r}')
    return spec


def load_lane(path: str | Path, evaluator: str | dict[str, Any]) -> Lane:
    """The lane's tasks (a JSONL file: ``{"input"|"question", "target"|"answer", "id"}`` per line, or the finance
    format's ``{"context", "target"}``) and its evaluator, checked: a missing file, a file without tasks or with
    more than :data:`MAX_LANE_TASKS`, tasks with the same id, or an evaluator that is not registered are a
    :class:`LaneError` naming the problem."""
    from ace.loop.registry import evaluator_from_spec

    spec = evaluator_spec(evaluator)
    if spec["name"] == "judge":  # refused before it is built: building it may open a model
        raise LaneError("the judge calls a model of its own: a lane's evaluator has ground truth (exact, numeric...)")
    try:
        built = evaluator_from_spec(spec)
    except ConfigError as e:
        raise LaneError(f"the lane's evaluator: {e}") from None
    try:
        p = Path(path).expanduser()
        found = p.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: no file of that name
        found = False
    if not found:
        raise LaneError(f"the lane's task file {str(path)[:200]!r} does not exist (or is not a file)")
    try:
        raw = p.read_bytes()
        try:
            tasks = load_tasks(p)
        except InputFileError as generic:
            try:
                tasks = load_finance(p)  # the paper's {"context", "target"} lines
            except InputFileError:
                raise generic from None  # neither format: the generic loader's reason (a duplicate id, a bad field)
    except (InputFileError, OSError) as e:
        raise LaneError(f"the lane's task file: {e}") from None
    if not tasks:
        raise LaneError(f"the lane's task file {str(p)!r} holds no task: a lane needs at least one")
    if len(tasks) > MAX_LANE_TASKS:
        raise LaneError(f"the lane holds {len(tasks)} tasks: at most {MAX_LANE_TASKS:,}")
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise LaneError(f"the lane's tasks need distinct ids: {', '.join(map(repr, twice))} appear more than once")
    if too_long := [i for i in ids if len(i) > 256]:
        raise LaneError(f"a lane task's id is at most 256 characters: {too_long[0][:40]!r}...")
    return Lane(str(p.resolve()), spec, tasks, built, hashlib.sha256(raw).hexdigest())


# -- the gate's settings ----------------------------------------------------------------------------------------------
@dataclass
class Gate:
    """A playbook's gate settings (what ``ace playbook lane`` and ``ace review policy --watch`` set)."""

    tasks: str | None = None
    evaluator: dict[str, Any] | None = None
    n_tasks: int | None = None
    digest: str | None = None
    alpha: float = 0.05
    min_effect: float = 0.0
    test: str = "auto"
    spending: str = "bonferroni"
    looks: int = 10
    campaign: Campaign | None = None
    watch: bool = False
    watch_window: int = DEFAULT_WATCH_WINDOW
    watch_alpha: float = 0.05
    updated_at: datetime | None = None
    author: str | None = None

    def new_campaign(self, serving: int | None = None) -> Campaign:
        number = 1 if self.campaign is None else self.campaign.number + 1
        return Campaign(self.alpha, self.spending, self.looks, serving, number)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": None if self.tasks is None else {"tasks": self.tasks, "evaluator": self.evaluator,
                                                     "n": self.n_tasks, "digest": self.digest},
            "alpha": self.alpha, "min_effect": self.min_effect, "test": self.test, "spending": self.spending,
            "looks": self.looks, "campaign": None if self.campaign is None else self.campaign.to_dict(),
            "watch": {"on": self.watch, "window": self.watch_window, "alpha": self.watch_alpha},
            "updated_at": self.updated_at.isoformat() if self.updated_at else None, "author": self.author,
        }  # fmt: skip


def check_settings(alpha: Any, min_effect: Any, test: Any, spending: Any, looks: Any) -> None:
    check_alpha(alpha, "the campaign's alpha")
    if (
        isinstance(min_effect, bool)
        or not isinstance(min_effect, (int, float))
        or not (math.isfinite(min_effect) and 0.0 <= min_effect <= 1.0)
    ):
        raise ConfigError(f"the minimum effect is a difference in accuracy from 0 to 1, not {min_effect!r}")
    if test not in TESTS:
        raise ConfigError(f"the test is one of {', '.join(TESTS)}, not {test!r}")
    if spending not in SPENDING:
        raise ConfigError(f"alpha spending is one of {', '.join(SPENDING)}, not {spending!r}")
    Campaign(alpha, spending, looks)  # checks the number of looks


def _gate(row: Any) -> Gate:
    return Gate(
        row.tasks, json.loads(row.evaluator) if row.evaluator else None, row.n_tasks, row.digest, float(row.alpha),
        float(row.min_effect), str(row.test), str(row.spending), int(row.looks),
        Campaign.from_dict(json.loads(row.campaign)) if row.campaign else None, bool(row.watch),
        int(row.watch_window), float(row.watch_alpha), _utc(row.updated_at), row.author,
    )  # fmt: skip


def _values(gate: Gate) -> dict[str, Any]:
    return {
        "tasks": gate.tasks,
        "evaluator": None if gate.evaluator is None else json.dumps(gate.evaluator, sort_keys=True),
        "n_tasks": gate.n_tasks, "digest": gate.digest, "alpha": gate.alpha, "min_effect": gate.min_effect,
        "test": gate.test, "spending": gate.spending, "looks": gate.looks,
        "campaign": None if gate.campaign is None else json.dumps(gate.campaign.to_dict(), sort_keys=True),
        "watch": gate.watch, "watch_window": gate.watch_window, "watch_alpha": gate.watch_alpha,
        "updated_at": gate.updated_at, "author": gate.author,
    }  # fmt: skip


def _utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else (dt if dt.tzinfo else dt.replace(tzinfo=UTC))


def now() -> datetime:
    return datetime.now(UTC)


# whether the database has the gate's tables (remembered per engine once it has)
tables_present = TablePresence("ace_gates")


def playbook_id(conn: Connection, namespace: str, name: str) -> int:
    """The playbook's row id (its names NFC, as the store keys them); :class:`PlaybookNotFound` if there is none."""
    namespace, name = unicodedata.normalize("NFC", namespace), unicodedata.normalize("NFC", name)
    p = store_schema.playbooks
    found = conn.execute(select(p.c.id).where(p.c.namespace == namespace, p.c.name == name)).scalar()
    if found is None:
        raise PlaybookNotFound(namespace, name)
    return int(found)


def read(conn: Connection, pid: int) -> Gate | None:
    """The gate's settings, or None when the playbook has none (no lane was set, no watch)."""
    if not tables_present(conn):
        return None
    row = conn.execute(gates.select().where(gates.c.playbook_id == pid)).one_or_none()
    return None if row is None else _gate(row)


def write(conn: Connection, pid: int, gate: Gate) -> None:
    conn.execute(gates.delete().where(gates.c.playbook_id == pid))
    conn.execute(gates.insert().values(playbook_id=pid, **_values(gate)))


def get(store: PlaybookStore, name: str, *, namespace: str) -> Gate | None:
    with store.transaction() as conn:
        return read(conn, playbook_id(conn, namespace, name))


def set_lane(
    store: PlaybookStore,
    name: str,
    *,
    namespace: str,
    tasks: str | Path | None = None,
    evaluator: str | dict[str, Any] | None = None,
    alpha: float | None = None,
    min_effect: float | None = None,
    test: str | None = None,
    spending: str | None = None,
    looks: int | None = None,
    new_campaign: bool = False,
    author: str | None = None,
) -> Gate:
    """Set the playbook's lane (``tasks`` and ``evaluator`` together) and the test's settings (what is not given is
    kept). The lane is loaded and checked first (:func:`load_lane`): a bad one changes nothing. A change to the
    lane or to the test's settings, or ``new_campaign``, starts a new campaign (an admin's decision, with its
    author): the campaign's looks were spent under the old ones."""
    author = check_optional(author, "author")
    lane = None
    if (tasks is None) != (evaluator is None):
        raise LaneError("a lane is a task file and its evaluator: give both (--tasks and --evaluator)")
    if tasks is not None and evaluator is not None:
        lane = load_lane(tasks, evaluator)
    d = Gate()
    check_settings(d.alpha if alpha is None else alpha, d.min_effect if min_effect is None else min_effect,
                   d.test if test is None else test, d.spending if spending is None else spending,
                   d.looks if looks is None else looks)  # fmt: skip
    SCHEMA.ensure(store.engine)
    with store.transaction(write=True) as conn:
        pid = playbook_id(conn, namespace, name)
        gate = read(conn, pid) or Gate()
        before = (gate.tasks, gate.digest, gate.alpha, gate.min_effect, gate.test, gate.spending, gate.looks)
        gate = replace(
            gate,
            alpha=gate.alpha if alpha is None else alpha,
            min_effect=gate.min_effect if min_effect is None else min_effect,
            test=gate.test if test is None else test,
            spending=gate.spending if spending is None else spending,
            looks=gate.looks if looks is None else looks,
        )
        check_settings(gate.alpha, gate.min_effect, gate.test, gate.spending, gate.looks)
        if lane is not None:
            gate = replace(gate, tasks=lane.path, evaluator=lane.spec, n_tasks=len(lane.tasks), digest=lane.digest)
        after = (gate.tasks, gate.digest, gate.alpha, gate.min_effect, gate.test, gate.spending, gate.looks)
        if new_campaign or before != after or gate.campaign is None:
            gate.campaign = gate.new_campaign()
        gate = replace(gate, updated_at=now(), author=author)
        write(conn, pid, gate)
    return gate


def set_watch(
    store: PlaybookStore,
    name: str,
    *,
    namespace: str,
    on: bool,
    window: int | None = None,
    alpha: float | None = None,
    author: str | None = None,
) -> Gate:
    """Watch serving after a promotion (or stop): see :mod:`ace.governance.watch`."""
    author = check_optional(author, "author")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or not 5 <= window <= MAX_WATCH_WINDOW):  # fmt: skip
        raise ConfigError(f"the watch's window is from 5 to {MAX_WATCH_WINDOW:,} outcomes, not {window!r}")
    if alpha is not None:
        check_alpha(alpha, "the watch's alpha")
    SCHEMA.ensure(store.engine)
    with store.transaction(write=True) as conn:
        pid = playbook_id(conn, namespace, name)
        gate = read(conn, pid) or Gate()
        if gate.campaign is None:
            gate.campaign = gate.new_campaign()
        gate = replace(gate, watch=on, watch_window=gate.watch_window if window is None else window,
                       watch_alpha=gate.watch_alpha if alpha is None else alpha, updated_at=now(),
                       author=author)  # fmt: skip
        write(conn, pid, gate)
    return gate


# -- trials ---------------------------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One trial: the candidate and serving versions it compares, its look in the campaign, where it stands."""

    id: int
    candidate: int
    serving: int
    status: str
    campaign: int
    look: int
    alpha: float
    lane: dict[str, Any]
    provider: str | None
    tokens: int
    wall_s: float
    decision: dict[str, Any] | None
    note: str | None
    author: str | None
    created_at: datetime
    updated_at: datetime
    answered: dict[str, int] = field(default_factory=dict)  # results per arm (filled by :func:`trial`)

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.id, "candidate": self.candidate, "serving": self.serving, "status": self.status,
            "campaign": self.campaign, "look": self.look, "alpha": self.alpha, "lane": self.lane,
            "provider": self.provider, "tokens": self.tokens, "wall_s": round(self.wall_s, 3),
            "decision": self.decision, "note": self.note, "author": self.author, "answered": dict(self.answered),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }  # fmt: skip


def _trial(row: Any) -> Trial:
    return Trial(
        int(row.id), int(row.candidate), int(row.serving), str(row.status), int(row.campaign), int(row.look),
        float(row.alpha), json.loads(row.lane), row.provider, int(row.tokens), float(row.wall_s),
        json.loads(row.decision) if row.decision else None, row.note, row.author,
        _utc(row.created_at) or now(), _utc(row.updated_at) or now(),
    )  # fmt: skip


def open_trial(conn: Connection, pid: int) -> Trial | None:
    """The playbook's trial that goes on when run again (running, or stopped by a budget or a provider)."""
    if not tables_present(conn):
        return None
    q = trials.select().where(trials.c.playbook_id == pid, trials.c.status.in_(OPEN)).order_by(trials.c.id.desc())
    row = conn.execute(q.limit(1)).one_or_none()
    return None if row is None else _trial(row)


def start_trial(
    conn: Connection, pid: int, gate: Gate, *, candidate: int, serving: int, lane: Lane, provider: str | None,
    author: str | None,
) -> Trial:  # fmt: skip
    """A new trial, its look spent from the campaign (:class:`~ace.governance.stats.CampaignSpent` when none is
    left), in the caller's write transaction."""
    campaign = (gate.campaign or gate.new_campaign()).against(serving)
    look, alpha = campaign.look()
    gate.campaign = campaign
    write(conn, pid, gate)
    t = now()
    tid = conn.execute(
        trials.insert().values(
            playbook_id=pid, candidate=candidate, serving=serving, status="running", campaign=campaign.number,
            look=look, alpha=alpha, lane=json.dumps(lane.to_dict(), sort_keys=True), provider=provider, tokens=0,
            wall_s=0.0, author=author, created_at=t, updated_at=t,
        )
    ).inserted_primary_key  # fmt: skip
    assert tid is not None
    return _trial(conn.execute(trials.select().where(trials.c.id == tid[0])).one())


def close(conn: Connection, trial_id: int, status: Status, *, note: str | None = None,
          decision: dict[str, Any] | None = None, wall_s: float = 0.0) -> bool:  # fmt: skip
    """Set an open trial's status (a trial already decided, by another process running it too, is left as it is:
    False)."""
    values: dict[str, Any] = {"status": status, "updated_at": now(), "wall_s": trials.c.wall_s + wall_s}
    if note is not None:
        values["note"] = note
    if decision is not None:
        values["decision"] = json.dumps(decision, sort_keys=True)
    done = conn.execute(update(trials).where(trials.c.id == trial_id, trials.c.status.in_(OPEN)).values(**values))
    return bool(done.rowcount)


@dataclass(frozen=True, slots=True)
class Result:
    """One task answered by one arm of a trial."""

    task_id: str
    arm: str
    correct: bool | None
    score: float | None
    answer: str | None
    error: str | None
    tokens: int
    latency_s: float


def record(store: PlaybookStore, trial_id: int, result: Result) -> bool:
    """Keep one answer (its own transaction: a killed trial loses at most the answer being made). False when the
    answer was there already (another process running the same trial got there first)."""
    try:
        with store.transaction(write=True) as conn:
            conn.execute(results.insert().values(
                trial_id=trial_id, task_id=result.task_id, arm=result.arm, correct=result.correct,
                score=result.score, answer=None if result.answer is None else result.answer[:2000],
                error=None if result.error is None else result.error[:2000], tokens=result.tokens,
                latency_s=result.latency_s,
            ))  # fmt: skip
            conn.execute(update(trials).where(trials.c.id == trial_id).values(
                tokens=trials.c.tokens + result.tokens, updated_at=now()))  # fmt: skip
    except IntegrityError:
        return False
    return True


def answers(conn: Connection, trial_id: int) -> dict[tuple[str, str], Result]:
    rows = conn.execute(results.select().where(results.c.trial_id == trial_id)).all()
    return {
        (r.task_id, r.arm): Result(r.task_id, r.arm, None if r.correct is None else bool(r.correct),
                                   None if r.score is None else float(r.score), r.answer, r.error, int(r.tokens),
                                   float(r.latency_s))
        for r in rows
    }  # fmt: skip


def trial(store: PlaybookStore, trial_id: int) -> Trial:
    with store.transaction() as conn:
        row = conn.execute(trials.select().where(trials.c.id == trial_id)).one_or_none()
        if row is None:
            raise ConfigError(f"no trial #{trial_id}")
        found = _trial(row)
        counts = conn.execute(select(results.c.arm, func.count()).where(results.c.trial_id == trial_id)
                              .group_by(results.c.arm)).all()  # fmt: skip
    found.answered = {str(arm): int(n) for arm, n in counts}
    return found


def list_trials(store: PlaybookStore, name: str, *, namespace: str, limit: int = 20) -> list[Trial]:
    """The playbook's trials, newest first."""
    with store.transaction() as conn:
        pid = playbook_id(conn, namespace, name)
        if not tables_present(conn):
            return []
        q = trials.select().where(trials.c.playbook_id == pid).order_by(trials.c.id.desc()).limit(limit)
        return [_trial(r) for r in conn.execute(q).all()]


def verdict(store: PlaybookStore, name: str, *, namespace: str, candidate: int, serving: int) -> Trial | None:
    """The newest decided trial of ``candidate`` against ``serving`` (what a reviewer sees), or None."""
    with store.transaction() as conn:
        pid = playbook_id(conn, namespace, name)
        if not tables_present(conn):
            return None
        q = trials.select().where(trials.c.playbook_id == pid, trials.c.candidate == candidate,
                                  trials.c.serving == serving).order_by(trials.c.id.desc())  # fmt: skip
        row = conn.execute(q.limit(1)).one_or_none()
        return None if row is None else _trial(row)


# -- outcomes -------------------------------------------------------------------------------------------------------
def add_outcome(conn: Connection, pid: int, version: int, success: bool, episode: str | None) -> None:
    conn.execute(outcomes.insert().values(playbook_id=pid, version=version, success=success, episode=episode,
                                          created_at=now()))  # fmt: skip


def outcomes_of(conn: Connection, pid: int, version: int, *, last: int | None = None) -> list[bool]:
    """The outcomes reported for ``version``, oldest first (the last ``last`` of them, when given)."""
    if not tables_present(conn):
        return []
    q = select(outcomes.c.success).where(outcomes.c.playbook_id == pid, outcomes.c.version == version)
    if last is not None:
        rows = conn.execute(q.order_by(outcomes.c.id.desc()).limit(last)).scalars().all()
        return [bool(s) for s in reversed(rows)]
    return [bool(s) for s in conn.execute(q.order_by(outcomes.c.id)).scalars().all()]


__all__ = [
    "ARMS",
    "OPEN",
    "SCHEMA",
    "TABLES",
    "Arm",
    "Gate",
    "Lane",
    "LaneError",
    "NoLane",
    "Result",
    "Status",
    "Trial",
    "add_outcome",
    "answers",
    "check_settings",
    "close",
    "evaluator_spec",
    "get",
    "list_trials",
    "load_lane",
    "open_trial",
    "outcomes_of",
    "playbook_id",
    "read",
    "record",
    "set_lane",
    "set_watch",
    "start_trial",
    "trial",
    "verdict",
    "write",
]
