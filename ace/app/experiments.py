"""Experiments (``ace run CONFIG``): a TOML file names the model, the tasks, the agent and the paper's experiment
protocols; this runs them and prints the ACE paper's table layout (method, labels, accuracy, tokens, cost,
adaptation time).

Protocols (each on its own copy of the starting playbook, so they do not influence one another):

- ``base``: the generator with an empty playbook; no learning.
- ``icl``: the first ``icl_shots`` train examples with their answers, as a playbook section; no learning.
- ``offline``: :func:`ace.runners.offline` on the train split (validated on ``val``), then the test split is
  evaluated with the ``best`` version.
- ``online``: :func:`ace.runners.online` over the test split (each window evaluated before it is learned from).

``labels = [true, false]`` runs the learning protocols with ground truth and with execution feedback only.
Everything lands under ``<data dir>/runs/<run id>/``: each learning run's checkpoints and trajectory (replayable
with ``ace replay``), per-task results of evaluations, the LLM call cassette and ``summary.json``. Running the
same config with the same ``--run-id`` resumes and skips finished work.

Relative paths in the file are relative to the file; ``$VARS`` and ``~`` are expanded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.console import Console
from rich.table import Table

from ace.app.console import add_row, line
from ace.errors import ConfigError, read_input
from ace.llm import LLM, Sampling, get_provider
from ace.llm.cassette import Cassette
from ace.loop import Generator, LoopConfig, StepRecord
from ace.loop.refine import EmbeddingIndex, Refiner
from ace.names import check_name
from ace.playbook import AddOp, ApplyPolicy, Delta, DeltaError, Playbook, apply
from ace.playbook.focus import fact, relevant
from ace.playbook.formats import loads
from ace.playbook.query import focused
from ace.playbook.render import approx_tokens
from ace.runs.factory import RunSetup
from ace.runs.runners import (
    Evaluation,
    FactsHeld,
    Learner,
    Spend,
    curation,
    curation_summary,
    evaluate,
    facts_held,
    offline,
    online,
)
from ace.runs.workspace import runs_dir
from ace.store import PlaybookStore, default_url
from ace.tasks import EVALUATORS, Evaluator, Task, exact, load_finance, load_tasks, numeric, share_correct, share_of
from ace.tasks.conventions import conventions, conventions_stream

ExperimentProtocol = Literal["base", "icl", "retrieval", "nearest", "offline", "online"]
_DEFAULT_PROTOCOLS: tuple[ExperimentProtocol, ...] = ("base", "offline", "online")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConventionsData(_Strict):
    """A generated stream of the conventions family (:mod:`ace.tasks.conventions`) as the test split."""

    seed: int = 0
    facts: int = 30
    questions: int = 120


class DataConfig(_Strict):
    conventions: ConventionsData | None = None  # the test split is this generated stream
    train: str | None = None
    val: str | None = None
    test: str | None = None
    kind: Literal["formula", "finer", "jsonl"] | None = None  # default: from the file name
    limit_train: int | None = None
    limit_val: int | None = None
    limit_test: int | None = None
    offset_train: int = 0  # skip the first N lines (e.g. to take val and test slices from one file)
    offset_val: int = 0
    offset_test: int = 0


@dataclass
class LoopSection(LoopConfig):
    """The ``[loop]`` table: every :class:`~ace.config.LoopConfig` option under its own name (validated straight
    into it: this class lists none of them), and the experiment's settings that sit beside them. ``ground_truth``
    is set per learning run by ``run.labels``."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # an unknown key is an error naming it

    max_tokens: int = 512  # per LLM call
    refine: bool = False  # embedding dedup + pruning after each delta
    dedup_threshold: float = 0.9

    def config(self) -> LoopConfig:
        """The loop's options alone."""
        return LoopConfig(**{f.name: getattr(self, f.name) for f in fields(LoopConfig)})


class RunSection(_Strict):
    protocols: list[ExperimentProtocol] = Field(default_factory=lambda: list(_DEFAULT_PROTOCOLS))
    labels: list[bool] = Field(default_factory=lambda: [True])
    epochs: int = 1
    eval_every: int | None = None
    window: int = 1
    concurrency: int = 1
    # examples ICL shows; "fit": as many as fit the playbook's token budget (loop.playbook_budget: what ACE gets)
    icl_shots: int | Literal["fit"] = 3
    # "train": the first icl_shots train examples; "previous": the icl_shots test examples just before each
    # question, with their answers (an online ICL baseline on the same stream ACE online learns from)
    icl_source: Literal["train", "previous"] = "train"
    # the roles' settings: "auto" (the built-in generator on the embedded model gets EMBEDDED_LOOP, the settings
    # measured to learn with it, for each of them the [loop] table does not set; other providers, and your own
    # agent, the paper's roles, whose curator chooses its bullet on the embedded model), "paper", "embedded"
    roles: Literal["auto", "paper", "embedded"] = "auto"


class RunConfig(_Strict):
    name: str
    provider: str = "local"
    db: str | None = None
    namespace: str = "runs"
    playbook: str | None = None  # the starting playbook (any format ace.playbook.loads reads); empty if unset
    evaluator: Literal["formula", "finer", "exact", "numeric", "conventions"] | None = None
    agent: str | None = None  # "path/to/agent.py:build" -> build(llm, budget) returns a Generator
    data: DataConfig = Field(default_factory=DataConfig)
    loop: LoopSection = Field(default_factory=LoopSection)  # pydantic validates the dataclass (types, bounds)
    run: RunSection = Field(default_factory=RunSection)
    base_dir: Path = Field(default=Path("."), exclude=True)
    loop_set: list[str] = Field(default_factory=list, exclude=True)  # the [loop] keys the file sets itself

    @model_validator(mode="before")
    @classmethod
    def _roles(cls, data: Any) -> Any:
        """The roles' settings per provider (``run.roles``): what the [loop] table leaves unset is filled in."""
        if not isinstance(data, dict):
            return data
        loop = dict(data.get("loop") or {}) if isinstance(data.get("loop") or {}, dict) else data.get("loop")
        if not isinstance(loop, dict):
            return data
        run: dict[str, Any] = data["run"] if isinstance(data.get("run"), dict) else {}
        given = [k for k in loop if k in ROLE_KEYS]
        if "loop_set" not in data:
            data = {**data, "loop_set": given}
        roles, provider = str(run.get("roles", "auto")), str(data.get("provider", "local"))
        wanted = role_settings(roles, provider, bool(data.get("agent")))
        loop = {**{k: v for k, v in wanted.items() if k not in data["loop_set"]}, **loop}
        return {**data, "loop": loop}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if " " in v:
            raise ValueError("name must be without spaces")
        return check_name(v, "name")

    @model_validator(mode="after")
    def _labels(self) -> RunConfig:
        _check_labels(self.loop, self.run)
        return self

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        try:
            raw = tomllib.loads(read_input(p, what="run config", limit=16 << 20))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        try:
            return cls.model_validate({**raw, "base_dir": p.resolve().parent})
        except ValidationError as e:
            raise ConfigError(f"{p}: {e}") from None

    def overridden(
        self,
        *,
        provider: str | None = None,
        db: str | None = None,
        limit: int | None = None,
        loop: LoopSection | None = None,
        given: Collection[str] = (),
    ) -> RunConfig:
        """A copy with another provider or database, every split capped at ``limit`` tasks (a quick try), and
        other loop options (``given``: the ones a command line set, which a switch of provider keeps)."""
        data = self.data
        if limit is not None:
            caps = {
                f"limit_{split}": min(limit, current) if (current := getattr(data, f"limit_{split}")) else limit
                for split in ("train", "val", "test")
            }
            data = data.model_copy(update=caps)
        if loop is not None:
            _check_labels(loop, self.run)
        new_loop = loop or self.loop
        if provider is not None and provider != self.provider and not self.agent:  # the roles follow the provider
            # ... for the options neither the file nor the command line (``loop``, where it differs) set
            chosen = {*given, *(k for k in ROLE_KEYS if loop is not None and getattr(loop, k) != getattr(self.loop, k))}
            wanted = role_settings(self.run.roles, provider, False)
            new_loop = replace(new_loop, **{k: v for k, v in wanted.items() if k not in {*self.loop_set, *chosen}})
        update = {"provider": provider or self.provider, "db": db or self.db, "data": data, "loop": new_loop}
        return self.model_copy(update=update)

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(os.path.expandvars(value)))
        return p if p.is_absolute() else (self.base_dir / p).resolve()


# the loop settings measured to learn with the embedded model (docs/loop.md): the three bullets most relevant to a
# question shown beside it, answers copied from them, lessons copied from the question and the feedback
EMBEDDED_LOOP: dict[str, Any] = {"focus": 3, "answers": "copy", "curation": "facts"}


# the paper's roles on the embedded model: its reflector and curator, the curator choosing its bullet among
# statements built by code (it cannot write one: the quality gate refused 92 % of its free-text deltas)
PAPER_LOCAL_LOOP: dict[str, Any] = {"curator_content": "grounded"}
ROLE_KEYS = (*EMBEDDED_LOOP, *PAPER_LOCAL_LOOP)  # the [loop] options the roles' settings fill in where unset


def _embedded_roles(roles: str, provider: str) -> bool:
    """Whether a run with ``roles`` on ``provider`` uses :data:`EMBEDDED_LOOP`."""
    return roles == "embedded" or (roles == "auto" and _local(provider))


def _local(provider: str) -> bool:
    return provider.split(":", 1)[0] == "local"


def role_settings(roles: str, provider: str, agent: bool) -> dict[str, Any]:
    """The [loop] options (:data:`ROLE_KEYS`) that ``roles`` gives a run on ``provider`` where its [loop] table
    leaves them unset: :data:`EMBEDDED_LOOP` for the embedded roles (the built-in generator on the embedded model,
    or ``roles = "embedded"``; not with your own ``agent``); else the paper's roles, whose curator chooses its
    content (:data:`PAPER_LOCAL_LOOP`) on the embedded model, and writes it elsewhere."""
    paper = LoopSection()
    found = {k: getattr(paper, k) for k in ROLE_KEYS}
    if not agent and _embedded_roles(roles, provider):
        return {**found, **EMBEDDED_LOOP}
    return {**found, **PAPER_LOCAL_LOOP} if _local(provider) else found


def _check_labels(loop: LoopSection, run: RunSection) -> None:
    """The learning runs' ground truth is ``run.labels``: a loop without it cannot run with labels."""
    if not loop.ground_truth and True in run.labels:
        raise ConfigError("loop.ground_truth = false: set run.labels = [false] (the labels pick it per run)")


def load_split(cfg: RunConfig, which: Literal["train", "val", "test"]) -> list[Task]:
    conv = cfg.data.conventions
    if conv is not None and which == "test":
        try:
            tasks = conventions_stream(conv.seed, facts=conv.facts, questions=conv.questions)
        except ValueError as e:
            raise ConfigError(f"data.conventions: {e}") from None
        return tasks[: cfg.data.limit_test] if cfg.data.limit_test else tasks
    value = getattr(cfg.data, which)
    if not value:
        return []
    limit, offset = getattr(cfg.data, f"limit_{which}"), getattr(cfg.data, f"offset_{which}")
    upto = None if limit is None else offset + limit
    if cfg.data.kind == "jsonl":
        return load_tasks(cfg.path(value), limit=upto)[offset:]
    return load_finance(cfg.path(value), cfg.data.kind, limit=upto)[offset:]


def evaluator_for(cfg: RunConfig, tasks: list[Task]) -> Evaluator:
    name = cfg.evaluator or (tasks[0].metadata.get("kind") if tasks else None) or "exact"
    known: dict[str, Evaluator] = {"exact": exact, "numeric": numeric(), "conventions": conventions, **EVALUATORS}
    if name not in known:
        raise ConfigError(f"unknown evaluator {name!r}; one of {', '.join(known)}")
    return known[name]


def load_agent(cfg: RunConfig, llm: LLM) -> Generator | None:
    """The config's ``agent = "file.py:function"``: ``function(llm, budget)`` returns the generator."""
    if not cfg.agent:
        return None
    file, _, func = cfg.agent.partition(":")
    path = cfg.path(file)
    spec = importlib.util.spec_from_file_location(f"ace_agent_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"agent file {path} not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints (LangGraph state schemas) resolves names through it
    if str(path.parent) not in sys.path:  # an agent file may import the modules beside it, as a script would
        sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    build = getattr(module, func or "build", None)
    if build is None:
        raise ConfigError(f"{path} has no function {func or 'build'!r}")
    return build(llm, cfg.loop.playbook_budget)  # type: ignore[no-any-return]


def similar(
    earlier: list[Task], question: str, k: int | None = None, relevance: Literal["words", "bm25"] = "bm25"
) -> list[Task]:
    """The earlier tasks whose questions are most like ``question``, ranked as the loop ranks its focused bullets
    (``relevance``: "bm25", :func:`ace.playbook.query.focused`; "words", :func:`ace.playbook.focus.relevant`), most
    similar first; at most ``k``."""
    loose = ApplyPolicy(quality=None)
    solved = [t for t in earlier if t.target is not None and _takes(AddOp(section="episodes", content=t.input), loose)]
    if not solved:
        return []
    ops = [AddOp(section="episodes", content=t.input) for t in solved]
    pb = apply(Playbook.empty(), Delta(operations=ops), policy=loose).playbook
    by_bullet = {b.id: t for b, t in zip(pb, solved, strict=True)}
    n = k if k is not None else len(solved)
    found = [b for b, _ in focused(pb, question, n)] if relevance == "bm25" else relevant(pb, question, n)
    return [by_bullet[b.id] for b in found]


def icl_playbook(train: list[Task], shots: int, *, facts: bool = False) -> Playbook:
    """The ICL baseline's context: ``shots`` solved train examples, as bullets of an ``examples`` section
    (``facts``: written as fact bullets, ``question → answer``, the form copy-friendly curation writes, so that
    copied answers treat ICL and ACE alike)."""
    ops = [
        AddOp(section="worked examples", content=fact(t.input, t.target) if facts else f"Q: {t.input}\nA: {t.target}")
        for t in train[:shots]
        if t.target is not None
    ]
    policy = ApplyPolicy()
    return apply(Playbook.empty(), Delta(operations=[op for op in ops if _takes(op, policy)]), policy=policy).playbook


_TAKEN: dict[tuple[str, str, bool], bool] = {}  # (section, content, quality rules on) -> whether a playbook takes it


def _takes(op: AddOp, policy: ApplyPolicy) -> bool:
    """Whether a playbook under ``policy`` takes ``op`` (a control character, an injection, a fragment: not): a
    baseline leaves out an example the playbook's rules refuse, as ACE's playbook would never hold it, rather than
    stop the whole run (an outside trial: one row with U+202E ended Retrieval and Nearest)."""
    key = (op.section, op.content, policy.quality is not None)
    taken = _TAKEN.get(key)
    if taken is None:
        try:
            apply(Playbook.empty(), Delta(operations=[op]), policy=policy)
            taken = True
        except DeltaError:
            taken = False
        if len(_TAKEN) >= 100_000:  # bounded: a long stream cannot grow it without end
            _TAKEN.clear()
        _TAKEN[key] = taken
    return taken


class ResultRow(BaseModel):
    """One row of the results table: a method, its accuracy on the test split and what it cost."""

    method: str
    labels: bool | None  # ground truth during adaptation (None: no adaptation)
    accuracy: float | None
    n: int
    adapt_tokens: int
    eval_tokens: int
    cost_usd: float
    adapt_seconds: float
    eval_seconds: float
    playbook: str | None = None  # the learning protocols' playbook in the store
    best_version: int | None = None  # offline: the version tagged "best", which the test split was evaluated with
    train_accuracy: float | None = None
    validation: list[dict[str, Any]] | None = None  # offline: (epoch, step, version, accuracy) checkpoints
    versions: int | None = None  # online: the head after the stream
    # per test task, in stream order: was the (first) answer right (None: not judged); the accuracy curve
    outcomes: list[bool | None] | None = None
    # learning protocols: curator deltas refused by the playbook's rules and repaired (ace.runs.runners.Curation)
    curation: dict[str, int] | None = None
    # learning protocols: bullets stating the stream's facts, distinct facts stated (ace.runs.runners.FactsHeld)
    facts: dict[str, Any] | None = None
    examples: float | None = None  # ICL and retrieval from the stream: examples shown per question, on average


class Experiment:
    """One ``ace run``: the config's tasks, model and starting playbook, and a method per protocol, each adding a
    row to the results table. Work is kept under ``workdir`` so the same run id resumes."""

    def __init__(
        self,
        cfg: RunConfig,
        console: Console,
        *,
        run_id: str | None = None,
        data_dir: Path | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.cfg, self.console, self.on_step = cfg, console, on_step
        self.run_id = check_name(run_id or time.strftime(f"{cfg.name}-%Y%m%d-%H%M%S"), "run id")
        self.workdir = (data_dir / "runs" if data_dir else runs_dir()) / self.run_id
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = cfg.db or default_url()
        self.store = PlaybookStore(self.db)
        self.llm = LLM(
            Cassette(self.workdir / "calls.jsonl", get_provider(cfg.provider), mode="auto"),
            sampling=Sampling(max_tokens=cfg.loop.max_tokens),
        )
        self.generator = load_agent(cfg, self.llm)
        self.train, self.val, self.test = (load_split(cfg, "train"), load_split(cfg, "val"), load_split(cfg, "test"))
        if not self.test and not self.train:
            named = [f"data.{k} ({getattr(cfg.data, k)})" for k in ("test", "train") if getattr(cfg.data, k, None)]
            if named:
                raise ConfigError(f"no tasks in {' or '.join(named)}: the file holds no rows")
            raise ConfigError("the config names no tasks: set data.test (and data.train for offline/ICL)")
        self.evaluator = evaluator_for(cfg, self.test or self.train)
        self.start = loads(cfg.path(cfg.playbook).read_text(encoding="utf-8")) if cfg.playbook else Playbook.empty()
        self.refiner = None
        if cfg.loop.refine:
            from ace.llm.embeddings import MiniLMEmbedder  # onnxruntime loads only when refining

            self.refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), threshold=cfg.loop.dedup_threshold)
        self.rows: list[ResultRow] = []
        # per learning run (offline, online): whether none of its steps could reflect and curate (the provider away)
        self.learned_nothing: list[bool] = []

    # -- protocols -------------------------------------------------------------------------------------------
    def base(self) -> None:
        """The model alone: an empty playbook, answers written freely (a copied answer would have nothing to copy
        from, and score 0 by construction)."""
        self._say("Base", f"evaluating {len(self.test)} tasks")
        ev = self._evaluate(self.test, Playbook.empty(), "base", config=replace(self.cfg.loop.config(), answers="free"))
        self._row("Base", None, ev.accuracy, Spend(), ev.spend, outcomes=[p.correct for p in ev.records])

    def icl(self) -> None:
        shots = self.cfg.run.icl_shots
        if self.cfg.run.icl_source == "previous":
            self._previous("ICL", "icl-previous", lambda i, task: self._fit(self.test[:i][::-1], shots)[::-1])
            return
        chosen = self._fit(self.train, shots)
        ev = self._fixed(f"ICL ({len(chosen)} shots)", icl_playbook(chosen, len(chosen)), "icl")
        self._row("ICL", True, ev.accuracy, Spend(), ev.spend, outcomes=[p.correct for p in ev.records])

    def retrieval(self) -> None:
        """Episodic retrieval: before each question, the earlier questions of the stream most like it, with their
        answers (as the feedback gave them), as many as fit the playbook's budget; the same model answers."""
        self._previous("Retrieval", "retrieval", lambda i, task: self._fit(
            similar(self.test[:i], task.input, relevance=self.cfg.loop.relevance), "fit"))  # fmt: skip

    def nearest(self) -> None:
        """No model: each question answered with the answer of the earlier question most like it."""
        self._say("Nearest episode", f"answering {len(self.test)} tasks with no model")
        outcomes: list[bool | None] = []
        for i, task in enumerate(self.test):
            found = similar(self.test[:i], task.input, k=1, relevance=self.cfg.loop.relevance)
            answer = found[0].target if found and found[0].target is not None else ""
            outcomes.append(self.evaluator(task, answer).correct)
        self._row("Nearest episode", True, share_of(outcomes), Spend(), Spend(),
                  outcomes=outcomes)  # fmt: skip

    def _fit(self, examples: list[Task], shots: int | Literal["fit"]) -> list[Task]:
        """The first ``shots`` of ``examples`` (with an answer), or with "fit" as many as the playbook's budget
        holds (what ACE's playbook gets)."""
        solved = [t for t in examples if t.target is not None]
        if shots != "fit":
            return solved[:shots]
        budget, facts, taken, used = self.cfg.loop.playbook_budget, self.cfg.loop.curation == "facts", [], 0
        for t in solved:
            cost = approx_tokens(fact(t.input, t.target or "") if facts else f"Q: {t.input}\nA: {t.target}") + 2
            if budget is not None and used + cost > budget:
                break
            taken.append(t)
            used += cost
        return taken

    def _previous(self, method: str, piece: str, choose: Callable[[int, Task], list[Task]]) -> None:
        """Each question of the stream answered with the examples ``choose(i, task)`` picks from before it."""
        self._say(method, f"evaluating {len(self.test)} tasks, each with examples from before it")
        preds, spend, shown = [], Spend(), 0
        facts = self.cfg.loop.curation == "facts"
        for i, task in enumerate(self.test):
            chosen = choose(i, task)
            shown += len(chosen)
            ev = self._evaluate([task], icl_playbook(chosen, len(chosen), facts=facts), piece)
            preds += ev.records
            spend += ev.spend
        self._row(method, True, share_correct(preds), Spend(), spend, outcomes=[p.correct for p in preds],
                  examples=round(shown / max(1, len(self.test)), 1))  # fmt: skip

    def offline(self, labels: bool) -> None:
        lr = self._learner("offline", labels)
        run = self.cfg.run
        self._say(f"ACE offline{'' if labels else ' (no labels)'}", f"{run.epochs} epoch(s) over {len(self.train)}")
        res = offline(lr, self.train, self.val, epochs=run.epochs, eval_every=run.eval_every)
        self._not_learned(res.not_learned, res.steps)
        ev = lr.evaluate(self.test, res.best_version, f"offline-{_gt(labels)}-test-v{res.best_version}")
        held = self._held(lr, self.train, res.best_version)
        self._row("ACE offline", labels, ev.accuracy, res.spend, ev.spend, playbook=lr.setup.playbook,
                  best_version=res.best_version, train_accuracy=res.train_accuracy,
                  validation=[c.__dict__ for c in res.checkpoints], curation=curation(res.steps).to_dict(),
                  facts=held.to_dict())  # fmt: skip

    def online(self, labels: bool) -> None:
        lr = self._learner("online", labels)
        window = self.cfg.run.window
        self._say(f"ACE online{'' if labels else ' (no labels)'}", f"window {window} over {len(self.test)}")
        res = online(lr, self.test, window=window)
        self._not_learned(res.not_learned, res.steps)
        # the adaptation and the predictions are one pass here: its time and tokens are both
        held = self._held(lr, self.test)
        self._row("ACE online", labels, res.accuracy, res.spend, Spend(), playbook=lr.setup.playbook,
                  versions=lr.head(), outcomes=[p.correct for p in res.predictions],
                  curation=curation(res.steps).to_dict(), facts=held.to_dict())  # fmt: skip

    def run(self) -> dict[str, Any]:
        """Every protocol of the config, in order; returns (and writes) the summary."""
        cfg = self.cfg
        self.console.rule(line(f"ace run {cfg.name} · run {self.run_id} · provider {cfg.provider}"))
        self.console.print(
            line(f"train {len(self.train)} · val {len(self.val)} · test {len(self.test)} · workdir {self.workdir}")
        )
        for protocol in cfg.run.protocols:
            if protocol in ("base", "icl", "retrieval", "nearest"):
                getattr(self, protocol)()
            else:
                for labels in cfg.run.labels:
                    getattr(self, protocol)(labels)
        summary = {
            "run_id": self.run_id,
            "config": cfg.model_dump(mode="json"),
            "db": self.db,
            "workdir": str(self.workdir),
            "rows": [r.model_dump(mode="json") for r in self.rows],
            # every learning run's steps failed to reflect or curate: ace run exits 1 (the table alone looked fine)
            "learned_nothing": bool(self.learned_nothing) and all(self.learned_nothing),
        }
        (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        self.console.print(table(self.rows, unpriced=self.llm.ledger.unpriced_calls > 0))
        return summary

    # -- pieces ----------------------------------------------------------------------------------------------
    def _say(self, label: str, what: str) -> None:
        self.console.print(line((label, "bold"), f": {what}"))

    def _not_learned(self, summary: str | None, steps: list[StepRecord]) -> None:
        """Steps that could not reflect or curate (the provider away, say): how many and why; and the curator deltas
        the playbook's rules refused, and the repairs."""
        records = [s for s in steps if isinstance(s, StepRecord)]
        self.learned_nothing.append(bool(records) and all(r.could_not_learn for r in records))
        if summary:
            self.console.print(line(("not learned", "bold yellow"), f": {summary}"))
        if refused := curation_summary(steps):
            self.console.print(line(("curation", "bold"), f": {refused}"))

    def _held(self, lr: Learner, tasks: list[Task], version: int | None = None) -> FactsHeld:
        """How many bullets of the learned playbook state the facts of ``tasks`` (printed; kept in the row)."""
        pb = lr.setup.store.load(lr.setup.playbook, version, namespace=lr.setup.namespace)
        held = facts_held(pb, tasks)
        if held.facts:
            self.console.print(line(("facts", "bold"), f": {held}"))
        return held

    def _fixed(self, label: str, pb: Playbook, piece: str) -> Evaluation:
        self._say(label, f"evaluating {len(self.test)} tasks")
        return self._evaluate(self.test, pb, piece)

    def _evaluate(self, tasks: list[Task], pb: Playbook, piece: str, config: LoopConfig | None = None) -> Evaluation:
        return evaluate(
            tasks,
            llm=self.llm,
            playbook=pb,
            evaluator=self.evaluator,
            config=config or self.cfg.loop.config(),
            generator=self.generator,
            concurrency=self.cfg.run.concurrency,
            results=self.workdir / f"{piece}.jsonl",
        )

    def _learner(self, protocol: str, labels: bool) -> Learner:
        """A learner on its own copy of the starting playbook (protocols do not influence one another)."""
        cfg = self.cfg
        name = f"{cfg.name}-{self.run_id}-{protocol}{'' if labels else '-nolabels'}"
        self.store.ensure(
            name, self.start, namespace=cfg.namespace, author=f"ace run {self.run_id}", message="starting playbook"
        )
        setup = RunSetup(
            llm=self.llm,
            store=self.store,
            playbook=name,
            evaluator=self.evaluator,
            namespace=cfg.namespace,
            config=replace(cfg.loop.config(), ground_truth=labels),
            refiner=self.refiner,
            generator=self.generator,
            on_step=self.on_step,
        )
        return Learner(setup, self.workdir, f"{self.run_id}:{protocol}:{_gt(labels)}", cfg.run.concurrency)

    def _row(self, method: str, labels: bool | None, acc: float | None, adapt: Spend, ev: Spend, **extra: Any) -> None:
        self.rows.append(
            ResultRow(
                method=method,
                labels=labels,
                accuracy=acc,
                n=len(self.test),
                adapt_tokens=adapt.usage.total_tokens,
                eval_tokens=ev.usage.total_tokens,
                cost_usd=adapt.cost_usd + ev.cost_usd,
                adapt_seconds=round(adapt.seconds, 1),
                eval_seconds=round(ev.seconds, 1),
                **extra,
            )
        )


def _gt(labels: bool) -> str:
    return "gt" if labels else "nogt"


def run_config(
    cfg: RunConfig,
    console: Console,
    *,
    run_id: str | None = None,
    data_dir: Path | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> dict[str, Any]:
    """Run every protocol of ``cfg``; returns (and writes) the summary."""
    return Experiment(cfg, console, run_id=run_id, data_dir=data_dir, on_step=on_step).run()


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def table(rows: list[ResultRow], *, unpriced: bool = False) -> Table:
    """The paper's layout: one row per method, accuracy and what the adaptation cost."""
    t = Table(title="Results (accuracy in %, tokens, cost, seconds)")
    for col in ("Method", "Labels", "Acc", "n", "Adapt tok", "Eval tok", "Cost", "Adapt s", "Eval s"):
        t.add_column(col, justify="left" if col == "Method" else "right", no_wrap=col == "Method")
    for r in rows:
        labels = "—" if r.labels is None else "yes" if r.labels else "no"
        acc = "—" if r.accuracy is None else f"{100 * r.accuracy:.1f}"
        cost = "unpriced" if unpriced and not r.cost_usd else "$0" if not r.cost_usd else f"${r.cost_usd:.3f}"
        add_row(
            t,
            r.method,
            labels,
            acc,
            str(r.n),
            _k(r.adapt_tokens),
            _k(r.eval_tokens),
            cost,
            f"{r.adapt_seconds:.0f}",
            f"{r.eval_seconds:.0f}",
        )
    return t


__all__ = ["Experiment", "ResultRow", "RunConfig", "icl_playbook", "load_agent", "run_config", "table"]
