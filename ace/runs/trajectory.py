"""Trajectories: a run as a JSONL file that rebuilds and verifies the playbook history with no model, and that
cannot be edited, cut, reordered or extended without the edit being found.

Format ``ace-trajectory/2``, one JSON object per line (written with :func:`~ace.playbook.jsonio.json_line`, read
split on ``\n`` only, so any content survives):

- the first line, ``{"type": "header", "format": "ace-trajectory/2", "namespace", "playbook", "version",
  "digest", "state", "keyed"}``: the playbook the run started from (``state`` in the lossless JSON format of
  :mod:`ace.playbook.formats`) and its version and digest;
- ``{"type": "run", ...}`` when the loop starts (again on a resume; the last one counts): how to re-execute the
  run (:class:`~ace.loop.RunDescription`: loop settings, evaluator and generator specs, sampling, refiner, memory,
  guard, the apply policy);
- one ``{"type": "step", "index", "task_id", "task", "correct", "final_correct", "rounds", "error", "calls",
  "version", "digest", "delta"}`` per task: ``calls`` is every LLM call of the step (``role``, request ``hash`` as in
  cassettes, response ``text``, ``usage``); ``delta`` the *resolved* delta the step committed (or null);
  ``version``/``digest`` the head after it;
- ``{"type": "end", "count"}`` when the run finishes: ``count`` is the number of lines before it.

**The chain.** Every line carries ``prev`` (the ``chain`` of the line before; 64 zeros on the header) and
``chain``, the SHA-256 of the line's canonical JSON without ``chain`` (an HMAC-SHA256 with the key in
``$ACE_TRAJECTORY_KEY`` when one is set: then nobody without the key can re-chain an edited file, and the header
says ``"keyed": true``). So an edited field, outcome, call or response, a line removed, inserted, duplicated or
moved, and a file cut short (its last line is not an ``end`` with the right count) are each rejected with the line
number. A step recorded twice because the run resumed after a crash between writing it and checkpointing is kept
once (both lines are chained; they must agree on version, digest and delta).

``ace-trajectory/1`` files (no chain, no end line) still load and replay, with a note that edits, truncation and
reordering cannot be detected in them.

:func:`replay` then starts from the header's state (its digest must match), applies each step's delta, and checks
that the version numbers follow and every rebuilt version has the recorded digest; the collapse detectors run on
every rebuilt step. :func:`export` writes the same format from a stored history (no calls: they were not recorded).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ace.collapse import Alert, Detectors
from ace.errors import ConfigError, InputFileError, read_input
from ace.llm.cassette import request_hash
from ace.playbook import REPLAY_POLICY, Delta, DeltaError, Playbook, apply
from ace.playbook.formats import dumps, from_json_data
from ace.playbook.jsonio import JSONLimitError, json_line, load_json, split_lines
from ace.store import PlaybookStore

if TYPE_CHECKING:
    from ace.llm import LLM
    from ace.llm.types import Completion, Request
    from ace.loop import RunDescription, StepRecord
    from ace.tasks import Task

FORMAT = "ace-trajectory/2"
LEGACY_FORMATS = ("ace-trajectory/1",)
GENESIS = "0" * 64
KEY_ENV = "ACE_TRAJECTORY_KEY"
# what two lines recording the same step (a resumed run) must agree on
_SAME_STEP = ("index", "task_id", "version", "digest", "delta")


class TrajectoryError(InputFileError):
    """A trajectory that does not verify; the message names the line."""


def _key() -> bytes | None:
    key = os.environ.get(KEY_ENV)
    return key.encode() if key else None


def chain_of(obj: dict[str, Any], key: bytes | None) -> str:
    """The ``chain`` value of a line: a hash (or, with a key, an HMAC) of its canonical JSON without ``chain``."""
    body = {k: v for k, v in obj.items() if k != "chain"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, canon, hashlib.sha256).hexdigest() if key else hashlib.sha256(canon).hexdigest()


class CallRecorder:
    """An ``LLM`` observer that keeps the calls made since the last :meth:`drain`."""

    def __init__(self) -> None:
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, role: str, request: Request, completion: Completion) -> None:
        entry = {
            "role": role,
            "hash": request_hash(request),
            "text": completion.text,
            "usage": completion.usage.to_dict(),
        }
        with self._lock:
            self._calls.append(entry)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            calls, self._calls = self._calls, []
        return calls


class TrajectoryWriter:
    """Appends a run's lines to a trajectory file, each chained to the one before (a :class:`~ace.loop.StepSink`):
    the loop calls :meth:`start` when it starts, :meth:`step` once per task and :meth:`finish` when it is done.
    Opening an existing file continues its chain (a resumed run); a line cut by a crash is dropped first."""

    def __init__(
        self,
        path: str | Path,
        store: PlaybookStore,
        playbook: str,
        *,
        namespace: str = "default",
        version: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.store, self.playbook, self.namespace = store, playbook, namespace
        self.recorder = CallRecorder()
        self._key = _key()
        self._prev = GENESIS
        self._count = 0
        if self.path.exists() and self.path.stat().st_size > 0:
            self._continue()
        else:
            head = (
                store.head(playbook, namespace=namespace)
                if version is None
                else store.version(playbook, version, namespace=namespace)
            )
            pb = store.load(playbook, head.version, namespace=namespace)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
            self._write(
                {
                    "type": "header",
                    "format": FORMAT,
                    "namespace": namespace,
                    "playbook": playbook,
                    "version": head.version,
                    "digest": head.digest,
                    "state": json.loads(dumps(pb, "json")),
                    "keyed": self._key is not None,
                }
            )

    def _continue(self) -> None:
        text = read_input(self.path, what="trajectory")
        lines = split_lines(text)
        try:
            last = load_json(lines[-1])
        except JSONLimitError:  # the last line was cut by a crash: drop it, the chain goes on from the one before
            lines = lines[:-1]
            self.path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
            last = load_json(lines[-1]) if lines else {}
        header = load_json(lines[0]) if lines else {}
        if header.get("format") != FORMAT:
            raise TrajectoryError(f"{self.path}: a {header.get('format')!r} file cannot be continued; start a new run")
        self._prev, self._count = last.get("chain", GENESIS), len(lines)

    def line(self, obj: dict[str, Any]) -> None:
        """Append ``obj`` as the next chained line."""
        self._write(obj)

    def _write(self, obj: dict[str, Any]) -> None:
        obj = {**obj, "prev": self._prev}
        obj["chain"] = self._prev = chain_of(obj, self._key)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json_line(obj) + "\n")
        self._count += 1

    def start(self, run: RunDescription, llm: LLM) -> None:
        """Record the run's LLM calls from now on, and how the run is configured (a ``run`` line), so that it can
        be re-executed."""
        if self.recorder not in llm.observers:
            llm.observers.append(self.recorder)
        self._write({"type": "run", **run.model_dump(mode="json")})

    def step(self, record: StepRecord, task: Task | None = None) -> None:
        head = self.store.head(self.playbook, namespace=self.namespace)
        delta = None
        if record.committed and head.delta is not None:
            delta = json.loads(head.delta.to_json())
        fields = record.model_dump(include={"index", "task_id", "correct", "final_correct", "rounds", "error"})
        if record.refused:  # curator deltas the playbook's rules refused in this step, and whether one was repaired
            fields |= {"refused": record.refused, "repaired": record.repaired}
        self._write(
            {
                "type": "step",
                **fields,
                "task": task.model_dump() if task is not None else None,
                "calls": self.recorder.drain(),
                "version": head.version,
                "digest": head.digest,
                "delta": delta,
            }
        )

    def finish(self) -> None:
        """Close the file: an ``end`` line counting the lines before it (a file cut short lacks it)."""
        self._write({"type": "end", "count": self._count})


@dataclass
class ReplayReport:
    playbook: Playbook | None
    versions: list[int] = field(default_factory=list)  # versions rebuilt and verified
    steps: int = 0
    calls: int = 0
    alerts: list[Alert] = field(default_factory=list)
    problem: str | None = None  # the first inconsistency: replay stops there
    notes: list[str] = field(default_factory=list)  # what this file cannot prove (an older format)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Trajectory:
    """A trajectory file read and its chain verified: the header (with the last ``run`` line under ``"run"``), the
    steps (one per index, in index order, each with its ``_line``), and notes on what could not be verified."""

    header: dict[str, Any]
    steps: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def load(path: str | Path) -> Trajectory:
    """Read ``path`` and verify it line by line (see the module doc); raises :class:`TrajectoryError` naming the
    first line that does not verify."""
    where = str(path)
    lines = split_lines(read_input(path, what="trajectory"))
    if not any(line.strip() for line in lines):
        raise TrajectoryError(f"{where}: empty trajectory")
    objs: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(lines, start=1):
        try:
            obj = load_json(line, what=f"line {n}")
        except JSONLimitError as e:
            raise TrajectoryError(f"{where}, line {n}: {e}") from None
        if not isinstance(obj, dict):
            raise TrajectoryError(f"{where}, line {n}: a line must be a JSON object, not {type(obj).__name__}")
        objs.append((n, obj))
    header = objs[0][1]
    fmt = header.get("format")
    if header.get("type") != "header" or fmt not in (FORMAT, *LEGACY_FORMATS):
        raise TrajectoryError(f"{where}: not an {FORMAT} file (line 1 must be its header)")
    notes = []
    if fmt == FORMAT:
        _check_chain(where, header, objs)
    else:
        notes.append(
            f"{fmt} has no hash chain: edited outcomes or responses, removed, moved or duplicated lines and a cut "
            "file cannot be detected in it (only deltas that do not rebuild the recorded digests)"
        )
    _check_header(where, header)
    steps: dict[int, dict[str, Any]] = {}
    for n, obj in objs[1:]:
        kind = obj.get("type")
        if kind == "run":
            header["run"] = {k: v for k, v in obj.items() if k not in ("type", "prev", "chain")}
        elif kind == "step":
            step = _check_step(where, n, obj)
            first = steps.get(step["index"])
            if first is not None and fmt == FORMAT:
                if any(first.get(k) != step.get(k) for k in _SAME_STEP):
                    raise TrajectoryError(
                        f"{where}, line {n}: step {step['index']} was recorded on line {first['_line']} with another "
                        "outcome"
                    )
                first["calls"] = [*(first.get("calls") or []), *(step.get("calls") or [])]
            else:  # the first record of a step (format 1: the last one wins)
                steps[step["index"]] = step
        elif not (kind == "end" and fmt == FORMAT):
            raise TrajectoryError(f"{where}, line {n}: unknown line type {kind!r}")
    return Trajectory(header, [steps[i] for i in sorted(steps)], notes)


def _check_chain(where: str, header: dict[str, Any], objs: list[tuple[int, dict[str, Any]]]) -> None:
    key = _key()
    if header.get("keyed") and key is None:
        raise TrajectoryError(f"{where}: the file is signed with a key; set {KEY_ENV} to verify it")
    prev = GENESIS
    for n, obj in objs:
        if obj.get("prev") != prev:
            what = "the file starts wrong" if n == 1 else f"it does not follow line {n - 1}"
            raise TrajectoryError(f"{where}, line {n}: {what} (a line was removed, inserted, duplicated or moved)")
        if obj.get("chain") != chain_of(obj, key):
            signed = " or signed with another key" if header.get("keyed") else ""
            raise TrajectoryError(f"{where}, line {n}: its content was edited{signed} (its chain does not match)")
        prev = obj["chain"]
        if obj.get("type") == "end" and obj.get("count") != n - 1:
            raise TrajectoryError(
                f"{where}, line {n}: the end line counts {obj.get('count')} lines, {n - 1} precede it"
            )
    last_n, last = objs[-1]
    if last.get("type") != "end":
        raise TrajectoryError(
            f"{where}: the file ends at line {last_n} without its closing line: it was cut short, or its run has not "
            "finished (resume the run to close it)"
        )


def _check_header(where: str, header: dict[str, Any]) -> None:
    for key, kind in (("version", int), ("digest", str), ("state", dict), ("playbook", str)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise TrajectoryError(f"{where}, line 1: the header's {key!r} is missing or not a {kind.__name__}")


def _check_step(where: str, n: int, obj: dict[str, Any]) -> dict[str, Any]:
    """A step line with its fields' types checked (a hand-edited file gets a clear error, not a traceback)."""
    expected: tuple[tuple[str, tuple[type, ...], bool], ...] = (
        ("index", (int,), True),
        ("version", (int,), False),
        ("digest", (str,), False),
        ("calls", (list,), False),
        ("delta", (dict,), False),
        ("task", (dict,), False),
        ("correct", (bool,), False),
    )
    for key, kinds, required in expected:
        value = obj.get(key)
        if value is None and not required:
            continue
        bad_bool = isinstance(value, bool) and bool not in kinds
        if not isinstance(value, kinds) or bad_bool:
            raise TrajectoryError(
                f"{where}, line {n}: the step's {key!r} must be a {kinds[0].__name__}, got {value!r:.40}"
            )
    for call in obj.get("calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("text"), str) or not isinstance(call.get("hash"), str):
            raise TrajectoryError(f"{where}, line {n}: a call must be an object with a 'hash' and a response 'text'")
    return {**obj, "_line": n}


def read(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the steps of a verified trajectory (:func:`load`)."""
    t = load(path)
    return t.header, t.steps


def replay(path: str | Path, *, detectors: Detectors | None = None) -> ReplayReport:
    """Verify a trajectory and rebuild its history (see the module doc); no model is called. A problem found is
    in the report (``ok`` is False), with the line it is on."""
    try:
        t = load(path)
    except TrajectoryError as e:
        return ReplayReport(None, problem=str(e))
    header, steps = t.header, t.steps
    try:
        pb = from_json_data(header["state"])
    except Exception as e:  # any malformed state is a tampered file
        return ReplayReport(None, problem=f"line 1: the starting state does not load ({e})", notes=t.notes)
    report = ReplayReport(pb, steps=len(steps), notes=t.notes)
    if pb.digest() != header.get("digest"):
        report.problem = "line 1: the starting state does not match its digest (tampered or corrupt)"
        return report
    version = int(header["version"])
    report.versions.append(version)
    for step in steps:
        report.calls += len(step.get("calls") or [])
        where = f"line {step['_line']} (task {step.get('task_id')}, version {step.get('version')})"
        if step.get("delta") is None:
            if step.get("version") != version or step.get("digest") != pb.digest():
                report.problem = f"{where}: no delta, yet the head is not the previous version"
                return report
            continue
        if step.get("version") != version + 1:
            report.problem = f"{where}: expected version {version + 1}"
            return report
        try:
            after = apply(pb, Delta.model_validate(step["delta"]), policy=REPLAY_POLICY).playbook
        except (DeltaError, ValueError) as e:
            report.problem = f"{where}: the delta does not apply ({e})"
            return report
        if after.digest() != step.get("digest"):
            report.problem = f"{where}: the rebuilt version does not match the recorded digest (tampered or corrupt)"
            return report
        if detectors is not None:
            report.alerts.extend(detectors.check(pb, after, versions=(version, version + 1)))
        pb, version = after, version + 1
        report.versions.append(version)
        report.playbook = pb
    return report


def export(store: PlaybookStore, name: str, path: str | Path, *, namespace: str = "default", since: int = 1) -> int:
    """Write a stored history as a trajectory (deltas and digests; no calls); returns the number of steps.
    A rollback or re-import in the range starts a new header-less segment, which this format cannot express:
    export from after it (``since``)."""
    history = store.history(name, namespace=namespace, since=since)
    later = [h for h in history[1:] if h.kind != "delta"]
    if later:
        raise ConfigError(f"version {later[0].version} is a {later[0].kind}; export from --since {later[-1].version}")
    first = history[0]
    out = Path(path)
    if out.exists():
        out.unlink()  # written anew (the writer would continue an existing file's chain)
    writer = TrajectoryWriter(out, store, name, namespace=namespace, version=first.version)
    for n, h in enumerate(history[1:]):
        source = h.delta.source if h.delta else None
        writer.line(
            {
                "type": "step",
                "index": n,
                "task_id": source.task_id if source else None,
                "calls": [],
                "version": h.version,
                "digest": h.digest,
                "delta": json.loads(h.delta.to_json()) if h.delta else None,
            }
        )
    writer.finish()
    return len(history) - 1


def reply_field(calls: list[dict[str, Any]], role: str, key: str) -> str | None:
    """``key`` of the last ``role`` call's JSON reply among a step's recorded ``calls`` (the reply as it is when it
    is not JSON): what a report or the console shows of a step's answer or reflection."""
    for call in reversed(calls):
        if call.get("role") != role:
            continue
        text = str(call.get("text") or "")
        try:
            data = json.loads(text)
        except ValueError:
            return text or None
        value = data.get(key) if isinstance(data, dict) else None
        return None if value is None else str(value)
    return None


__all__ = [
    "FORMAT",
    "KEY_ENV",
    "CallRecorder",
    "ReplayReport",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryWriter",
    "chain_of",
    "export",
    "load",
    "read",
    "replay",
    "reply_field",
]
