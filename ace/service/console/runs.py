"""The console's runs: the run directories and trajectories under the server's runs directory
(:func:`ace.runs.workspace.runs_dir`, ``~/.local/share/ace/runs``), read only.

A run is named by one entry of that directory: a directory (``ace run``'s ``<run id>/``, the worker's
``episodes/``) or a trajectory file beside them (``ace learn``'s, ``ace demo``'s ``<run id>.trajectory.jsonl``); a
trajectory of a directory run by one entry of that directory. A name is never a path: a name with a separator, a
leading dot (``..``, a hidden file) or a control character is refused, and whatever a name leads to (through a
symbolic link) must resolve inside the runs directory and be a directory or a regular file (never a FIFO, which
would block a read); an entry of a name refused is not listed. Nothing under it is written: the report is rendered
from copies of the files checked, in a temporary directory (``report``, given by the layer that has ``ace report``:
:func:`ace.app.console_report.report_html`), and kept in memory.

The runs directory holds the runs of every namespace: only a token for every namespace (``*``) reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ace.errors import AceError, InputFileError
from ace.llm import Usage
from ace.runs.trajectory import Trajectory, load, reply_field
from ace.service.auth import Grant
from ace.service.core import AccessDenied, BadRequest, TooMuchWork

TRAJECTORY = ".trajectory.jsonl"
MAX_LISTED = 500  # entries of the runs directory listed (the newest)
MAX_FILES = 2000  # trajectories of one run directory listed (the newest)
MAX_CONSOLE_BYTES = 64 << 20  # a trajectory the console reads whole (ace report reads larger ones); a report's files
MAX_REPORT_FILES = 100  # trajectories of one run the console reports on (the workers' episodes/ has thousands)
PAGE_STEPS = 50  # steps of the step table on one page
STEP_TEXT = 400  # characters of a task, an answer or a reflection in the step table

ReportRenderer = Callable[[Path], str]


class RunNotFound(AceError):
    """No run or trajectory of that name in the runs directory (404)."""


def may_read_runs(grant: Grant) -> None:
    """The runs directory is the server's, with the runs of every namespace: a token for all of them reads it."""
    if "*" not in grant.namespaces:
        raise AccessDenied("the runs directory holds the runs of every namespace: only a token for every namespace (*) "
                           "reads it")  # fmt: skip


def component(name: str, what: str = "a run") -> str:
    """``name`` if it is one plain name of a directory entry, else :class:`BadRequest`: never a path."""
    problem = refused(name)
    if problem is not None:
        raise BadRequest(f"{what} is named by one entry of the runs directory: {name[:80]!r} {problem}")
    return name


def refused(name: str) -> str | None:
    """Why the console takes no run or trajectory of this name (None: it takes it)."""
    if not name:
        return "is empty"
    if len(name) > 255:
        return f"is {len(name):,} characters long (at most 255)"
    if any(c in name for c in "/\\"):
        return "holds a path separator (a name, never a path)"
    if name.startswith("."):
        return "starts with a dot (.. and hidden entries are not runs)"
    if not name.isprintable():
        ch = next(c for c in name if not c.isprintable())
        return f"holds the control or invisible character U+{ord(ch):04X}"
    if name != name.strip():
        return "starts or ends with a space"
    return None


@dataclass(frozen=True, slots=True)
class Entry:
    """One run of the listing: a directory or a trajectory file."""

    name: str
    kind: str  # "directory" or "trajectory"
    modified: float
    size: int  # bytes of a trajectory; of a directory, its trajectories together
    trajectories: int
    summary: bool  # an ace run directory's summary.json


class RunsDir:
    """The runs under ``root`` (read only), with the report of a run rendered by ``report`` and kept per state."""

    def __init__(self, root: Path, report: ReportRenderer | None = None, *, keep: int = 4) -> None:
        self.root, self.report = Path(root), report
        self.keep = keep
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._loaded: OrderedDict[tuple[str, int, int], Trajectory | str] = OrderedDict()
        self._reports: OrderedDict[tuple[Any, ...], str] = OrderedDict()

    # -- names to paths, inside the root only ---------------------------------------------------------------
    def _base(self) -> Path:
        return self.root.resolve()

    def _inside(self, path: Path, shown: str) -> tuple[Path, Any]:
        """``path`` resolved (links followed) and its stat, if it stays inside the runs directory."""
        base = self._base()
        try:
            resolved = path.resolve(strict=True)
            st = resolved.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise RunNotFound(f"no run {shown!r} in the runs directory") from None
        except (OSError, RuntimeError) as e:  # a loop of links, a permission
            raise RunNotFound(f"{shown!r} cannot be read ({type(e).__name__})") from None
        if resolved != base and not resolved.is_relative_to(base):
            raise AccessDenied(f"{shown!r} leads out of the runs directory: refused")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise RunNotFound(f"{shown!r} is neither a directory nor a file")
        return resolved, st

    def run(self, name: str) -> tuple[Path, bool]:
        """The run ``name``: its path and whether it is a directory (else a trajectory file)."""
        component(name)
        path, st = self._inside(self.root / name, name)
        if path == self._base():
            raise BadRequest("a run is an entry of the runs directory")
        if stat.S_ISREG(st.st_mode) and not name.endswith(TRAJECTORY):
            raise RunNotFound(f"{name!r} is not a run: a run is a directory or a *{TRAJECTORY} file")
        return path, stat.S_ISDIR(st.st_mode)

    def trajectory(self, run: str, file: str | None) -> Path | None:
        """The trajectory ``file`` of run ``run`` (a trajectory run: itself), or the run's first one, or None."""
        path, is_dir = self.run(run)
        if not is_dir:
            if file not in (None, "", run):
                raise RunNotFound(f"{run!r} is a trajectory: it has no file {file!r}")
            return path
        if not file:
            files = self.files(run)
            return None if not files else self._inside(path / files[0]["name"], files[0]["name"])[0]
        component(file, "a trajectory")
        if not file.endswith(TRAJECTORY):
            raise RunNotFound(f"{file!r} is not a trajectory (*{TRAJECTORY})")
        found, st = self._inside(path / file, f"{run}/{file}")
        if not stat.S_ISREG(st.st_mode):
            raise RunNotFound(f"{file!r} is not a file")
        return found

    # -- listings -------------------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """The runs, newest first (at most :data:`MAX_LISTED`); entries that lead out of the directory or are
        neither a run directory nor a trajectory are left out."""
        if not self.root.is_dir():
            return []
        found: list[Entry] = []
        for child in self.root.iterdir():
            if refused(child.name) is not None:  # a name the run's page would refuse is no link of the listing
                continue
            try:
                path, st = self._inside(child, child.name)
            except (RunNotFound, AccessDenied):
                continue
            if stat.S_ISDIR(st.st_mode):
                trajectories = self._scan(path)
                summary = (path / "summary.json").is_file()
                size = sum(s.st_size for _, s in trajectories)
                found.append(Entry(child.name, "directory", st.st_mtime, size, len(trajectories), summary))
            elif child.name.endswith(TRAJECTORY):
                found.append(Entry(child.name, "trajectory", st.st_mtime, st.st_size, 1, False))
        found.sort(key=lambda e: (-e.modified, e.name))
        return found[:MAX_LISTED]

    def _scan(self, directory: Path) -> list[tuple[str, Any]]:
        """``(name, stat)`` of the regular trajectory files of ``directory`` that stay inside the runs directory."""
        out = []
        try:
            children = list(directory.iterdir())
        except OSError:
            return []
        for child in children:
            if refused(child.name) is not None or not child.name.endswith(TRAJECTORY):
                continue
            try:
                _, st = self._inside(child, child.name)
            except (RunNotFound, AccessDenied):
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((child.name, st))
        return out

    def files(self, run: str) -> list[dict[str, Any]]:
        """The trajectories of a run directory, newest first (at most :data:`MAX_FILES`)."""
        path, is_dir = self.run(run)
        if not is_dir:
            st = path.stat()
            return [{"name": run, "size": st.st_size, "modified": st.st_mtime}]
        found = [{"name": n, "size": s.st_size, "modified": s.st_mtime} for n, s in self._scan(path)]
        found.sort(key=lambda f: (-f["modified"], f["name"]))
        return found[:MAX_FILES]

    def summary(self, run: str) -> dict[str, Any] | None:
        """An ``ace run`` directory's ``summary.json`` (None where there is none; a note where it is not JSON)."""
        path, is_dir = self.run(run)
        if not is_dir or not (path / "summary.json").exists():
            return None
        file, st = self._inside(path / "summary.json", f"{run}/summary.json")
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CONSOLE_BYTES:
            return {"problem": "summary.json is not a file the console reads"}
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return {"problem": f"summary.json is not JSON ({e})"}
        return data if isinstance(data, dict) else {"problem": "summary.json is not a JSON object"}

    # -- a trajectory, read and verified ----------------------------------------------------------------------
    def load(self, path: Path) -> Trajectory | str:
        """The trajectory at ``path`` verified (:func:`ace.runs.trajectory.load`), or why it cannot be shown; kept
        while the file's size and time stay the same."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if (held := self._loaded.get(key)) is not None:
                self._loaded.move_to_end(key)
                return held
        if st.st_size > MAX_CONSOLE_BYTES:
            found: Trajectory | str = (f"{st.st_size:,} bytes: over the {MAX_CONSOLE_BYTES:,} bytes the console reads "
                                       "(ace report reads it)")  # fmt: skip
        else:
            try:
                found = load(path)
            except InputFileError as e:  # TrajectoryError is one: the line that does not verify
                found = f"it does not verify: {e}".replace(str(self._base()), "runs")
        with self._lock:
            self._loaded[key] = found
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        return found

    # -- the report -------------------------------------------------------------------------------------------
    def report_page(self, run: str) -> str:
        """``ace report``'s HTML page of run ``run``, rendered by :attr:`report` once per state of the run's files,
        from copies of the files checked here (a run directory's trajectories that stay inside the runs directory
        and its ``summary.json``; never the directory itself, whose links the report would follow), at most
        :data:`MAX_REPORT_FILES` of them and :data:`MAX_CONSOLE_BYTES` together."""
        if self.report is None:
            raise RunNotFound("this server renders no report (ace serve and ace ui do): run ace report RUN")
        path, is_dir = self.run(run)
        files = [(f["name"], self.trajectory(run, f["name"] if is_dir else None)) for f in self.files(run)]
        if is_dir and (path / "summary.json").exists():
            summary, st = self._inside(path / "summary.json", f"{run}/summary.json")
            if stat.S_ISREG(st.st_mode):
                files.append(("summary.json", summary))
        if not files:
            raise RunNotFound(f"{run!r} has no trajectory and no summary.json: nothing to report")
        sizes = [(n, f, f.stat()) for n, f in files if f is not None]
        if len(sizes) > MAX_REPORT_FILES or sum(st.st_size for *_, st in sizes) > MAX_CONSOLE_BYTES:
            raise TooMuchWork(f"{run!r} is too large for a report here ({len(sizes):,} files, "
                              f"{sum(st.st_size for *_, st in sizes):,} bytes): run ace report on it")  # fmt: skip
        key = (str(path), tuple((n, st.st_size, st.st_mtime_ns) for n, _, st in sizes))
        with self._lock:
            if (held := self._reports.get(key)) is not None:
                return held
        with self._render_lock, tempfile.TemporaryDirectory(prefix="ace-console-run-") as staged:
            target = Path(staged) / run
            if is_dir:
                target.mkdir()
            for name, source, _ in sizes:
                _copy(source, target / name if is_dir else target)
            page = self.report(target)  # plots are drawn one at a time: matplotlib's state is global
            page = page.replace(staged, "runs")
        with self._lock:
            self._reports[key] = page
            while len(self._reports) > self.keep:
                self._reports.popitem(last=False)
        return page


def _copy(source: Path, target: Path) -> None:
    """Copy the regular file ``source`` (no link followed at its last step, never a FIFO) to ``target``."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RunNotFound(f"{source.name!r} is not a regular file")
        with target.open("wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)


# -- the step table -----------------------------------------------------------------------------------------------
def steps_view(t: Trajectory, *, page: int) -> dict[str, Any]:
    """A page of the step table (task → answer → outcome → reflection → delta → version, tokens) and the run's
    tokens per role."""
    roles: dict[str, Usage] = {}
    calls: dict[str, int] = {}
    judged = right = 0
    for step in t.steps:
        if isinstance(step.get("correct"), bool):
            judged += 1
            right += step["correct"]
        for call in step.get("calls") or []:
            u = call.get("usage") or {}
            usage = Usage(_int(u.get("input_tokens")), _int(u.get("output_tokens")), _int(u.get("cached_tokens")))
            role = str(call.get("role", "?"))
            roles[role] = roles.get(role, Usage()) + usage
            calls[role] = calls.get(role, 0) + 1
    pages = max(1, -(-len(t.steps) // PAGE_STEPS))
    page = min(max(page, 1), pages)
    rows = [_step(s) for s in t.steps[(page - 1) * PAGE_STEPS : page * PAGE_STEPS]]
    header = t.header
    return {
        "format": str(header.get("format", "")),
        "namespace": header.get("namespace"),
        "playbook": header.get("playbook"),
        "start": header.get("version"),
        "end": next((s.get("version") for s in reversed(t.steps) if s.get("version") is not None), None),
        "notes": t.notes,
        "rows": rows,
        "total": len(t.steps),
        "page": page,
        "pages": pages,
        "accuracy": None if not judged else right / judged,
        "judged": judged,
        "roles": [(r, calls[r], roles[r]) for r in sorted(roles)],
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _step(step: dict[str, Any]) -> dict[str, Any]:
    calls = [c for c in step.get("calls") or [] if isinstance(c, dict)]
    task = step.get("task") if isinstance(step.get("task"), dict) else {}
    delta = step.get("delta") if isinstance(step.get("delta"), dict) else None
    ops = []
    for op in (delta or {}).get("operations") or []:
        if isinstance(op, dict):
            target = op.get("id") or ", ".join(str(i) for i in op.get("ids") or [])
            ops.append({"type": str(op.get("type", "?")), "target": target, "section": op.get("section"),
                        "text": op.get("content") or op.get("tag") or ""})  # fmt: skip
    tokens = sum(_int((c.get("usage") or {}).get(k)) for c in calls for k in ("input_tokens", "output_tokens"))
    index = step.get("index")
    return {
        "n": None if not isinstance(index, int) else index + 1,
        "task_id": step.get("task_id"),
        "input": (task or {}).get("input"),
        "target": (task or {}).get("target"),
        "answer": reply_field(calls, "generator", "final_answer"),
        "correct": step.get("correct") if isinstance(step.get("correct"), bool) else None,
        "error": step.get("error"),
        "reflection": reply_field(calls, "reflector", "key_insight") or reply_field(calls, "reflector", "reasoning"),
        "ops": ops,
        "version": step.get("version"),
        "tokens": tokens,
        "calls": len(calls),
    }


# -- the pages ----------------------------------------------------------------------------------------------------
def listing(runs: RunsDir, grant: Grant) -> dict[str, Any]:
    """The runs page: every run the server can read, newest first."""
    may_read_runs(grant)
    return {"entries": runs.entries(), "root": str(runs.root), "exists": runs.root.is_dir(),
            "reports": runs.report is not None}  # fmt: skip


def run_page(runs: RunsDir, grant: Grant, run: str, *, file: str | None = None, page: int = 1) -> dict[str, Any]:
    """A run: its trajectories, its summary (``ace run``), and the step table of one trajectory (``file``, or the
    newest), a page at a time; a trajectory that does not verify is shown with why."""
    may_read_runs(grant)
    _, is_dir = runs.run(run)
    path = runs.trajectory(run, file)
    found = None if path is None else runs.load(path)
    problem = found if isinstance(found, str) else None
    steps = steps_view(found, page=page) if found is not None and not isinstance(found, str) else None
    return {
        "run": run,
        "is_dir": is_dir,
        "files": runs.files(run) if is_dir else [],
        "file": None if path is None else path.name,
        "summary": _summary(runs.summary(run)),
        "steps": steps,
        "problem": problem,
        "reports": runs.report is not None,
    }


def _summary(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """An ``ace run`` summary's methods: accuracy, tasks and cost of each."""
    if data is None or "problem" in data:
        return data
    rows = []
    for row in data.get("rows") or []:
        if not isinstance(row, dict):
            continue
        outcomes = [o for o in row.get("outcomes") or [] if isinstance(o, bool)]
        cost = row.get("cost_usd")
        cost = cost if isinstance(cost, int | float) and not isinstance(cost, bool) else None
        rows.append({"method": str(row.get("method", "?")), "tasks": len(row.get("outcomes") or []),
                     "accuracy": None if not outcomes else sum(outcomes) / len(outcomes), "cost": cost})  # fmt: skip
    return {"problem": None, "rows": rows}
