"""Trajectories: a run as a JSONL file that rebuilds and verifies the playbook history with no model.

Format ``ace-trajectory/1``, one JSON object per line:

- the first line, ``{"type": "header", "format": "ace-trajectory/1", "namespace", "playbook", "version",
  "digest", "state"}``: the playbook the run started from (``state`` in the lossless JSON format of
  :mod:`ace.playbook.formats`) and its version and digest;
- ``{"type": "run", "run_id", "config", "evaluator", "generator", "sampling", "refiner", "memory", "guard"}``
  when the loop starts (again on a resume; the last one counts): how to re-execute the run — the loop settings,
  the evaluator's and generator's specs (null for your own callables), the LLM sampling, the refiner's
  parameters (or null), whether memory tiers and a guard were on;
- then one ``{"type": "step", "index", "task_id", "task", "correct", "final_correct", "rounds", "error", "calls",
  "version", "digest", "delta"}`` per task: ``task`` is the task itself (``id``, ``input``, ``target``,
  ``metadata``); ``calls`` is every LLM call of the step (``role``, ``hash`` of the normalized request as in
  cassettes, ``text`` of the response, ``usage``); ``delta`` is the *resolved* delta committed by the step (or
  null), ``version``/``digest`` the head after it. A step repeated after a crash may appear twice; the last line
  for an index wins.

``run`` and ``task`` are optional (an exported history has neither): they are what ``ace replay --provider``
needs to run the same tasks again (see :mod:`ace.runs.reexecute`).

:func:`replay` starts from the header's state (its digest must match), applies each step's delta, and checks that
the version numbers follow and that every rebuilt version has the recorded digest: a tampered delta, state or
digest is reported with the line it is on, and nothing after it is accepted. The collapse detectors run on every
rebuilt step. :func:`export` writes the same format from a stored history (no calls: they were not recorded).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace.collapse import Alert, Detectors
from ace.errors import ConfigError, InputFileError
from ace.llm import LLM
from ace.llm.cassette import request_hash
from ace.llm.types import Completion, Request
from ace.loop import RunDescription, StepRecord
from ace.playbook import Delta, DeltaError, Playbook, apply
from ace.playbook.formats import dumps, loads
from ace.store import PlaybookStore
from ace.tasks import Task

FORMAT = "ace-trajectory/1"


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
    """Appends a run's steps to a trajectory file (a :class:`~ace.loop.StepSink`): the loop calls :meth:`start`
    when it starts, then :meth:`step` once per task."""

    def __init__(self, path: str | Path, store: PlaybookStore, playbook: str, *, namespace: str = "default") -> None:
        self.path = Path(path)
        self.store, self.playbook, self.namespace = store, playbook, namespace
        self.recorder = CallRecorder()
        if not self.path.exists() or self.path.stat().st_size == 0:
            head = store.head(playbook, namespace=namespace)
            pb = store.load(playbook, head.version, namespace=namespace)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write(
                {
                    "type": "header",
                    "format": FORMAT,
                    "namespace": namespace,
                    "playbook": playbook,
                    "version": head.version,
                    "digest": head.digest,
                    "state": json.loads(dumps(pb, "json")),
                }
            )

    def _write(self, obj: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")

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


@dataclass
class ReplayReport:
    playbook: Playbook | None
    versions: list[int] = field(default_factory=list)  # versions rebuilt and verified
    steps: int = 0
    calls: int = 0
    alerts: list[Alert] = field(default_factory=list)
    problem: str | None = None  # the first inconsistency: replay stops there

    @property
    def ok(self) -> bool:
        return self.problem is None


def read(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the steps (one per index, the last line for an index winning, in index order); the last
    ``run`` line, if any, is in the header under ``"run"``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise InputFileError(f"{path}: empty trajectory")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path}, line 1: not JSON ({e})") from None
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise InputFileError(f"{path}: not an {FORMAT} file (line 1 must be its header)")
    steps: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # the last line cut by a crash
                break
            raise InputFileError(f"{path}, line {n}: not JSON") from None
        if obj.get("type") == "step":
            steps[int(obj["index"])] = {**obj, "_line": n}
        elif obj.get("type") == "run":
            header["run"] = {k: v for k, v in obj.items() if k != "type"}
    return header, [steps[i] for i in sorted(steps)]


def replay(path: str | Path, *, detectors: Detectors | None = None) -> ReplayReport:
    """Rebuild and verify the history in a trajectory (see the module doc); no model is called."""
    header, steps = read(path)
    try:
        pb = loads(json.dumps(header["state"]), "json")
    except Exception as e:  # any malformed state is a tampered file
        return ReplayReport(None, problem=f"line 1: the starting state does not load ({e})")
    report = ReplayReport(pb, steps=len(steps))
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
            after = apply(pb, Delta.model_validate(step["delta"])).playbook
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
    pb = store.load(name, first.version, namespace=namespace)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        header = {
            "type": "header",
            "format": FORMAT,
            "namespace": namespace,
            "playbook": name,
            "version": first.version,
            "digest": first.digest,
            "state": json.loads(dumps(pb, "json")),
        }
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for n, h in enumerate(history[1:]):
            source = h.delta.source if h.delta else None
            step: dict[str, Any] = {
                "type": "step",
                "index": n,
                "task_id": source.task_id if source else None,
                "calls": [],
                "version": h.version,
                "digest": h.digest,
                "delta": json.loads(h.delta.to_json()) if h.delta else None,
            }
            f.write(json.dumps(step, ensure_ascii=False) + "\n")
    return len(history) - 1


__all__ = ["FORMAT", "CallRecorder", "ReplayReport", "TrajectoryWriter", "export", "read", "replay"]
