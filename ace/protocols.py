"""``ace run CONFIG``: a TOML file names the model, the tasks, the agent and the protocols; this runs them and
prints the ACE paper's table layout (method, labels, accuracy, tokens, cost, adaptation time).

Protocols (each on its own copy of the starting playbook, so they do not influence one another):

- ``base``: the generator with an empty playbook; no learning.
- ``icl``: the first ``icl_shots`` train examples with their answers, as a playbook section; no learning.
- ``offline``: :func:`ace.runners.offline` on the train split (validated on ``val``), then the test split is
  evaluated with the ``best`` version.
- ``online``: :func:`ace.runners.online` over the test split (each window evaluated before it is learned from).

``labels = [true, false]`` runs the learning protocols with ground truth and with execution feedback only.
Everything lands under ``<data dir>/runs/<run id>/``: checkpoints, per-task results, the LLM call cassette and
``summary.json``. Running the same config with the same ``--run-id`` resumes and skips finished work.

Relative paths in the file are relative to the file; ``$VARS`` and ``~`` are expanded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console
from rich.table import Table

from ace.demo import data_dir as default_data_dir
from ace.llm import LLM, Sampling, get_provider
from ace.llm.cassette import Cassette
from ace.loop import Generator, LoopConfig
from ace.playbook import Delta, Playbook, apply
from ace.playbook.formats import loads
from ace.refine import EmbeddingIndex, Refiner
from ace.runners import Evaluation, Learner, Spend, evaluate, offline, online
from ace.store import PlaybookStore, default_url
from ace.tasks import EVALUATORS, Evaluator, Task, exact, load_finance, load_tasks, numeric

Protocol = Literal["base", "icl", "offline", "online"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
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


class LoopSection(_Strict):
    max_rounds: int = 3
    playbook_budget: int | None = 2000
    batch_size: int = 1
    max_tokens: int = 512  # per LLM call
    refine: bool = False  # embedding dedup + pruning after each delta
    dedup_threshold: float = 0.9


class RunSection(_Strict):
    protocols: list[Protocol] = Field(default_factory=lambda: ["base", "offline", "online"])
    labels: list[bool] = Field(default_factory=lambda: [True])
    epochs: int = 1
    eval_every: int | None = None
    window: int = 1
    concurrency: int = 1
    icl_shots: int = 3


class RunConfig(_Strict):
    name: str
    provider: str = "local"
    db: str | None = None
    namespace: str = "runs"
    playbook: str | None = None  # the starting playbook (any format ace.playbook.loads reads); empty if unset
    evaluator: Literal["formula", "finer", "exact", "numeric"] | None = None
    agent: str | None = None  # "path/to/agent.py:build" -> build(llm, budget) returns a Generator
    data: DataConfig = Field(default_factory=DataConfig)
    loop: LoopSection = Field(default_factory=LoopSection)
    run: RunSection = Field(default_factory=RunSection)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError("name must be non-empty, without spaces or slashes")
        return v

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{p}: not valid TOML ({e})") from None
        return cls.model_validate({**raw, "base_dir": p.resolve().parent})

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(os.path.expandvars(value)))
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def load_split(cfg: RunConfig, which: Literal["train", "val", "test"]) -> list[Task]:
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
    return {"exact": exact, "numeric": numeric()}.get(name) or EVALUATORS[name]  # type: ignore[index]


def load_agent(cfg: RunConfig, llm: LLM) -> Generator | None:
    """The config's ``agent = "file.py:function"``: ``function(llm, budget)`` returns the generator."""
    if not cfg.agent:
        return None
    file, _, func = cfg.agent.partition(":")
    path = cfg.path(file)
    spec = importlib.util.spec_from_file_location(f"ace_agent_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ValueError(f"agent file {path} not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints (LangGraph state schemas) resolves names through it
    spec.loader.exec_module(module)
    build = getattr(module, func or "build", None)
    if build is None:
        raise ValueError(f"{path} has no function {func or 'build'!r}")
    return build(llm, cfg.loop.playbook_budget)  # type: ignore[no-any-return]


def icl_playbook(train: list[Task], shots: int) -> Playbook:
    """The ICL baseline's context: ``shots`` solved train examples, as bullets of an ``examples`` section."""
    ops = [
        {"type": "ADD", "section": "worked examples", "content": f"Q: {t.input}\nA: {t.target}"}
        for t in train[:shots]
        if t.target is not None
    ]
    return apply(Playbook.empty(), Delta.parse({"operations": ops})).playbook


def run_config(
    cfg: RunConfig,
    console: Console,
    *,
    run_id: str | None = None,
    data_dir: Path | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every protocol of ``cfg``; returns (and writes) the summary."""
    run_id = run_id or time.strftime(f"{cfg.name}-%Y%m%d-%H%M%S")

    workdir = (data_dir or default_data_dir()) / "runs" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    db = cfg.db or default_url()
    store = PlaybookStore(db)
    llm = LLM(
        Cassette(workdir / "calls.jsonl", get_provider(cfg.provider), mode="auto"),
        sampling=Sampling(max_tokens=cfg.loop.max_tokens),
    )
    generator = load_agent(cfg, llm)
    train, val, test = (load_split(cfg, s) for s in ("train", "val", "test"))  # type: ignore[arg-type]
    if not test and not train:
        raise ValueError("the config names no tasks: set data.test (and data.train for offline/ICL)")
    evaluator = evaluator_for(cfg, test or train)
    start = loads(cfg.path(cfg.playbook).read_text(encoding="utf-8")) if cfg.playbook else Playbook.empty()
    loop = LoopConfig(
        max_rounds=cfg.loop.max_rounds, playbook_budget=cfg.loop.playbook_budget, batch_size=cfg.loop.batch_size
    )
    refiner = None
    if cfg.loop.refine:
        from ace.llm.embeddings import MiniLMEmbedder

        refiner = Refiner(EmbeddingIndex(MiniLMEmbedder()), threshold=cfg.loop.dedup_threshold)
    console.rule(f"ace run {cfg.name} · run {run_id} · provider {cfg.provider}")
    console.print(f"train {len(train)} · val {len(val)} · test {len(test)} · workdir {workdir}", highlight=False)

    def fixed(label: str, pb: Playbook, piece: str) -> Evaluation:
        console.print(f"[bold]{label}[/]: evaluating {len(test)} tasks", highlight=False)
        return evaluate(
            test,
            llm=llm,
            playbook=pb,
            evaluator=evaluator,
            budget=cfg.loop.playbook_budget,
            generator=generator,
            concurrency=cfg.run.concurrency,
            results=workdir / f"{piece}.jsonl",
        )

    def learner(protocol: str, labels: bool) -> Learner:
        name = f"{cfg.name}-{run_id}-{protocol}{'' if labels else '-nolabels'}"
        if name not in {p.name for p in store.list(cfg.namespace)}:
            store.create(name, start, namespace=cfg.namespace, author=f"ace run {run_id}", message="starting playbook")
        return Learner(
            llm=llm,
            store=store,
            playbook=name,
            evaluator=evaluator,
            workdir=workdir,
            run_id=f"{run_id}:{protocol}:{'gt' if labels else 'nogt'}",
            namespace=cfg.namespace,
            config=LoopConfig(**{**loop.__dict__, "ground_truth": labels}),
            refiner=refiner,
            generator=generator,
            concurrency=cfg.run.concurrency,
            on_step=on_step,
        )

    rows: list[dict[str, Any]] = []

    def row(method: str, labels: bool | None, acc: float | None, adapt: Spend, ev: Spend, **extra: Any) -> None:
        rows.append(
            {
                "method": method,
                "labels": labels,
                "accuracy": acc,
                "adapt_tokens": adapt.usage.total_tokens,
                "eval_tokens": ev.usage.total_tokens,
                "cost_usd": adapt.cost_usd + ev.cost_usd,
                "adapt_seconds": round(adapt.seconds, 1),
                "eval_seconds": round(ev.seconds, 1),
                **extra,
            }
        )

    for protocol in cfg.run.protocols:
        if protocol == "base":
            ev = fixed("Base", Playbook.empty(), "base")
            row("Base", None, ev.accuracy, Spend(), ev.spend, n=len(test))
        elif protocol == "icl":
            ev = fixed(f"ICL ({cfg.run.icl_shots} shots)", icl_playbook(train, cfg.run.icl_shots), "icl")
            row("ICL", True, ev.accuracy, Spend(), ev.spend, n=len(test))
        for labels in cfg.run.labels:
            tag = "" if labels else " (no labels)"
            if protocol == "offline":
                lr = learner("offline", labels)
                console.print(
                    f"[bold]ACE offline{tag}[/]: {cfg.run.epochs} epoch(s) over {len(train)}", highlight=False
                )
                res = offline(lr, train, val, epochs=cfg.run.epochs, eval_every=cfg.run.eval_every)
                ev = lr.evaluate(
                    test, res.best_version, f"offline-{'gt' if labels else 'nogt'}-test-v{res.best_version}"
                )
                row("ACE offline", labels, ev.accuracy, res.spend, ev.spend, n=len(test), playbook=lr.playbook,
                    best_version=res.best_version, train_accuracy=res.train_accuracy,
                    validation=[c.__dict__ for c in res.checkpoints])  # fmt: skip
            elif protocol == "online":
                lr = learner("online", labels)
                console.print(f"[bold]ACE online{tag}[/]: window {cfg.run.window} over {len(test)}", highlight=False)
                res_on = online(lr, test, window=cfg.run.window)
                # the adaptation and the predictions are one pass here: its time and tokens are both
                row("ACE online", labels, res_on.accuracy, res_on.spend, Spend(), n=len(test), playbook=lr.playbook,
                    versions=lr.head())  # fmt: skip
    summary = {"run_id": run_id, "config": cfg.model_dump(mode="json"), "db": db, "workdir": str(workdir), "rows": rows}
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    console.print(table(rows, unpriced=llm.ledger.unpriced_calls > 0))
    return summary


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def table(rows: list[dict[str, Any]], *, unpriced: bool = False) -> Table:
    """The paper's layout: one row per method, accuracy and what the adaptation cost."""
    t = Table(title="Results (accuracy in %, tokens, cost, seconds)")
    for col in ("Method", "Labels", "Acc", "n", "Adapt tok", "Eval tok", "Cost", "Adapt s", "Eval s"):
        t.add_column(col, justify="left" if col == "Method" else "right", no_wrap=col == "Method")
    for r in rows:
        labels = "—" if r["labels"] is None else "yes" if r["labels"] else "no"
        acc = "—" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        cost = "unpriced" if unpriced and not r["cost_usd"] else "$0" if not r["cost_usd"] else f"${r['cost_usd']:.3f}"
        t.add_row(
            r["method"],
            labels,
            acc,
            str(r.get("n", "")),
            _k(r["adapt_tokens"]),
            _k(r["eval_tokens"]),
            cost,
            f"{r['adapt_seconds']:.0f}",
            f"{r['eval_seconds']:.0f}",
        )
    return t


__all__ = ["RunConfig", "icl_playbook", "load_agent", "run_config", "table"]
