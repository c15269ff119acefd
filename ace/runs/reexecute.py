"""Re-execute a recorded run: the same tasks, from the same starting playbook, with the same loop settings,
through a live model (``ace replay FILE --provider X``) or through the responses the trajectory recorded.

``ace replay FILE`` alone rebuilds a history from its deltas (:func:`ace.runs.trajectory.replay`): it proves the
deltas give the recorded versions. Re-execution runs the *loop* again — generator, evaluator, reflector, curator,
refiner, commit — so it answers different questions:

- with :class:`RecordedProvider` (``--provider recorded``), every LLM request is answered with the response the
  trajectory holds for the same request hash, and the run must reproduce every version digest: the trajectory is
  complete and today's code still does what the recorded run did (a request the code makes differently misses,
  with the call named);
- with a live provider, the same tasks go to another model (or the same one again) and the report sets the new
  outcomes and versions beside the recorded ones.

The re-executed run is a new playbook in the given store (the header's state imported under a new name) with its
own trajectory, so it can itself be replayed and compared.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace.errors import ConfigError
from ace.llm import LLM, CassetteMiss, Completion, Request, Sampling, Usage
from ace.llm.cassette import request_hash
from ace.loop import Generator, Guard, LoopConfig, RunResult
from ace.loop.refine import EmbeddingIndex, Refiner
from ace.loop.registry import evaluator_from_spec, generator_from_spec
from ace.playbook import ApplyPolicy
from ace.playbook.formats import from_json_data
from ace.runs.factory import RunFiles, RunSetup, start
from ace.runs.trajectory import read
from ace.runs.workspace import file_stem
from ace.store import PlaybookStore
from ace.tasks import Task, share_of


class RecordedProvider:
    """A provider that answers each request with the response a trajectory recorded for the same request hash
    (identical requests get their responses in recorded order); an unknown request raises :class:`CassetteMiss`."""

    name = "recorded"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.model = "recorded"
        self._tape: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for step in read(path)[1]:
            for call in step.get("calls") or []:
                self._tape[call["hash"]].append(call)

    def complete(self, request: Request) -> Completion:
        queue = self._tape.get(request_hash(request))
        if not queue:
            last = request.messages[-1].content.replace("\n", " ")[-80:] if request.messages else ""
            raise CassetteMiss(
                f"{self.path} recorded no response for this {request.schema_name or 'text'} call ending {last!r} "
                f"(request hash {request_hash(request)[:12]}): the run asked something the recorded run did not"
            )
        call = queue.popleft()
        u = call.get("usage") or {}
        return Completion(
            call["text"],
            Usage(u.get("input_tokens", 0), u.get("output_tokens", 0), u.get("cached_tokens", 0)),
            self.model,
            "stop",
        )

    async def acomplete(self, request: Request) -> Completion:
        return self.complete(request)


@dataclass
class StepComparison:
    index: int
    task_id: str
    recorded_correct: bool | None
    live_correct: bool | None
    recorded_version: int | None
    live_version: int | None
    same_digest: bool
    live_error: str | None = None


@dataclass
class RerunReport:
    playbook: str  # the re-executed playbook's name in the store
    trajectory: Path  # its trajectory
    result: RunResult
    steps: list[StepComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where the re-execution is not set up as the recorded run was

    @property
    def reproduced(self) -> int:
        """Steps whose resulting version has the recorded digest."""
        return sum(s.same_digest for s in self.steps)

    @property
    def recorded_accuracy(self) -> float | None:
        return share_of(s.recorded_correct for s in self.steps)

    @property
    def live_accuracy(self) -> float | None:
        return share_of(s.live_correct for s in self.steps)


# what a recorded run's config means by the options it does not name (they did not exist when it was recorded)
RECORDED_BEFORE = {
    "layout": "sections",
    "curator_repairs": 0,
    "roles_version": 1,
    "supersede": False,
    "relevance": "words",
    "wordings": 1,
    "facts_version": 1,
}


def plan(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The header, steps and run description of a trajectory that can be re-executed, or a ConfigError saying
    what it lacks."""
    header, steps = read(path)
    info = header.get("run")
    if not info:
        raise ConfigError(
            f"{path} does not describe its run (no 'run' line: an exported history, or written before re-execution "
            "existed); it can be replayed, not re-executed"
        )
    missing = [s["index"] for s in steps if not s.get("task")]
    if missing:
        raise ConfigError(f"{path}: steps {missing[:5]} do not record their task; cannot re-execute")
    if info.get("memory"):
        raise ConfigError(
            f"{path}: the run used memory tiers, whose state a trajectory does not hold; cannot re-execute"
        )
    if not info.get("evaluator"):
        raise ConfigError(f"{path}: the run scored answers with your own evaluator; pass it to rerun(evaluator=...)")
    return header, steps, info


def _fresh_workdir(given: str | Path | None, parent: Path, name: str) -> Path:
    """An empty directory of this re-execution's own: ``given`` if it is new or empty, else a fresh one."""
    if given is None:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{file_stem(name)}-", dir=parent))
    path = Path(given)
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path} is not empty: a re-execution runs in a directory of its own, never reusing files")
    path.mkdir(parents=True, exist_ok=True)
    return path


def rerun(
    path: str | Path,
    llm: LLM,
    store: PlaybookStore,
    *,
    name: str | None = None,
    workdir: str | Path | None = None,
    generator: Generator | None = None,
    guard: Guard | None = None,
) -> RerunReport:
    """Re-execute the run in trajectory ``path`` with ``llm`` into a new playbook ``name`` of ``store`` (default:
    ``<playbook>-rerun-<k>``); the new run's files (its trajectory and checkpoints, named after the recorded run
    id) go to ``workdir``: a new, empty directory (default: a fresh one under ``replays/`` beside ``path``), so a
    re-execution never resumes from checkpoints some earlier run left behind.

    ``generator``: your agent, when the recorded run used one (a recorded spec such as TextWorld's is rebuilt).
    ``guard``: the guard, when the recorded run had one (a callable is not in the file; without it the report
    notes the difference).
    ``llm`` is given the recorded sampling (temperature, max tokens...): the runs differ only by their model, and
    with :class:`RecordedProvider` request hashes only match under the recorded sampling.
    """
    header, steps, info = plan(path)
    namespace = header.get("namespace") or "default"
    if name is None:
        taken = {p.name for p in store.list(namespace)}
        k = 1
        while f"{header['playbook']}-rerun-{k}" in taken:
            k += 1
        name = f"{header['playbook']}-rerun-{k}"
    store.create(name, from_json_data(header["state"]), namespace=namespace, author="ace replay")
    workdir = _fresh_workdir(workdir, Path(path).parent / "replays", name)
    if info.get("sampling"):
        llm.sampling = Sampling(**{**info["sampling"], "stop": tuple(info["sampling"].get("stop") or ())})
    spec = info.get("generator")
    if generator is None and spec and spec.get("name") != "llm":
        generator = generator_from_spec(spec, llm)
    elif generator is None and not spec:
        raise ConfigError(f"{path}: the run used your own agent as the generator; pass it to rerun(generator=...)")
    refiner = None
    if info.get("refiner"):
        from ace.llm.embeddings import MiniLMEmbedder  # onnxruntime loads only for a run that refined

        refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), **info["refiner"])
    tasks = [Task.model_validate(s["task"]) for s in steps]
    # deltas are held to the rules of the recorded run (files from before the quality gate: no gate)
    recorded_policy = ApplyPolicy.from_dict(info["policy"]) if info.get("policy") else ApplyPolicy(quality=None)
    setup = RunSetup(
        llm=llm,
        store=PlaybookStore(store.url, engine=store.engine, policy=recorded_policy),
        playbook=name,
        namespace=namespace,
        evaluator=evaluator_from_spec(info["evaluator"]),
        # a run recorded before the stable layout existed laid the playbook out in sections, one recorded before
        # curator repairs and roles version 2 existed never asked the curator again, with the first prompt and schema,
        # and one recorded before supersession kept every ADD an ADD
        config=LoopConfig(**{**RECORDED_BEFORE, **info.get("config", {})}),
        refiner=refiner,
        guard=guard,
        generator=generator,
    )
    # the recorded run id: bullets' provenance (part of every digest) names it, so versions can match
    result = start(setup, tasks, run_id=str(info.get("run_id")), workdir=workdir)
    out = RunFiles(workdir, str(info.get("run_id"))).trajectory
    report = RerunReport(name, out, result)
    if info.get("guard") and guard is None:
        report.notes.append("the recorded run had a guard; this one ran without (pass rerun(guard=...))")
    # compare what was re-executed here: the live run's own records and the versions it left in the store
    live = {r.index: r for r in result.results}
    digests = {r.index: store.version(name, r.version, namespace=namespace).digest for r in result.results}
    for s in steps:
        r = live.get(s["index"])
        report.steps.append(
            StepComparison(
                index=s["index"],
                task_id=s.get("task_id") or "",
                recorded_correct=s.get("correct"),
                live_correct=r.correct if r else None,
                recorded_version=s.get("version"),
                live_version=r.version if r else None,
                same_digest=digests.get(s["index"]) == s.get("digest"),
                live_error=(r.error if r else "not re-executed"),
            )
        )
    return report


__all__ = ["RecordedProvider", "RerunReport", "StepComparison", "plan", "rerun"]
