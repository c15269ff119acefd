"""The main job: run the ACE loop on the embedded default (local model, SQLite, no key) over a bundled task
stream, show each step and delta as it lands, and summarize: accuracy over steps, versions, tokens, storage.

The bundled stream (``examples/finance/tasks.jsonl``) is six Formula-style questions in the format of the paper's
finance benchmark, written for this demo. The model is a 270M base model: the demo proves the machinery (answers,
reflections, deltas, versions, provenance, replay), not learning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ace.llm import LLM, Sampling, get_provider
from ace.llm.cassette import Cassette
from ace.loop import LoopConfig, RunResult, StepRecord
from ace.names import check_name
from ace.playbook import Delta
from ace.playbook.formats import loads
from ace.runs.console import add_row, line
from ace.runs.factory import RunFiles, RunSetup, start
from ace.runs.workspace import bundled, data_dir, runs_dir
from ace.store import PlaybookStore, default_url
from ace.tasks import EVALUATORS, load_finance


def describe(delta: Delta) -> list[str]:
    lines = []
    for op in delta.operations:
        if op.type == "TAG":
            lines.append(f"TAG {op.id} {op.tag}")
        elif op.type == "ADD":
            lines.append(f"ADD [{op.section}] {op.content[:70]}")
        elif op.type == "UPDATE":
            lines.append(f"UPDATE {op.id} → {op.content[:60]}")
        elif op.type == "REMOVE":
            lines.append(f"REMOVE {op.id}")
        else:
            lines.append(f"MERGE {', '.join(op.ids)}")
    return lines


@dataclass
class DemoOptions:
    tasks: int = 4
    provider: str = "local"
    db: str | None = None
    max_rounds: int = 2
    max_tokens: int = 256
    run_id: str | None = None
    memory: bool = False  # tiered memory: short-term buffer, episodic store (Chroma), knowledge graph


def run_demo(opts: DemoOptions, console: Console) -> RunResult:
    run_id = check_name(opts.run_id or time.strftime("demo-%Y%m%d-%H%M%S"), "run id")
    provider = get_provider(opts.provider)  # a provider that cannot start says so before anything is written
    db = opts.db or default_url()
    store = PlaybookStore(db)
    name, namespace = f"finance-{run_id}", "demo"
    store.ensure(
        name,
        loads(bundled("playbooks/finance.txt").read_text(encoding="utf-8")),
        namespace=namespace,
        author="ace demo",
        message="import playbooks/finance.txt",
    )
    tasks = load_finance(bundled("examples/finance/tasks.jsonl"), "formula", limit=opts.tasks)
    files = RunFiles(runs_dir(), run_id)
    files.workdir.mkdir(parents=True, exist_ok=True)
    tape = files.calls
    llm = LLM(Cassette(tape, provider, mode="auto"), sampling=Sampling(max_tokens=opts.max_tokens))

    console.rule(line(f"ACE demo · run {run_id} · {len(tasks)} tasks · provider {opts.provider}"))
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    bar = progress.add_task("tasks", total=len(tasks))

    def on_step(record: StepRecord) -> None:
        mark = {True: ("✓", "green"), False: ("✗", "red"), None: ("?", "yellow")}[record.correct]
        console.print(line(mark, f" task {record.index + 1} ({record.task_id}) · rounds {record.rounds}"))
        if record.error:
            console.print(line((f"    step failed, playbook untouched: {record.error[:160]}", "red")))
        elif record.delta:
            console.print(line((f"    v{record.version}:", "cyan")))
            for change in describe(record.delta):
                console.print(line(f"      {change}"))
        progress.advance(bar)

    memory = None
    if opts.memory:
        from ace.memory import Memory

        memory = Memory.local(store, data_dir() / "chroma", namespace=namespace)
        console.print(
            line(f"memory tiers on: short-term buffer, episodes in {data_dir() / 'chroma'}, graph in the store")
        )
    setup = RunSetup(
        llm=llm,
        store=store,
        playbook=name,
        namespace=namespace,
        evaluator=EVALUATORS["formula"],
        config=LoopConfig(max_rounds=opts.max_rounds, playbook_budget=400),
        on_step=on_step,
        memory=memory,
    )
    with progress:
        result = start(setup, tasks, run_id=run_id, workdir=files.workdir)
    summarize(result, store, name, namespace, llm, db, tape, files.trajectory, console)
    return result


def summarize(
    result: RunResult,
    store: PlaybookStore,
    name: str,
    namespace: str,
    llm: LLM,
    db: str,
    tape: Path,
    trajectory: Path,
    console: Console,
) -> None:
    console.rule(line("summary"))
    marks = "".join("✓" if r.correct else "✗" if r.correct is False else "?" for r in result.results)
    running: list[str] = []
    hits = judged = 0
    for r in result.results:
        if r.correct is not None:
            judged += 1
            hits += bool(r.correct)
        running.append(f"{hits / judged:.2f}" if judged else "-")
    t = Table(show_header=False, box=None)

    def add(label: str, value: str) -> None:
        add_row(t, label, value)

    acc = result.accuracy
    add("accuracy (first answers)", f"{marks}  →  {acc:.0%}" if acc is not None else marks)
    add("accuracy over steps", " ".join(running))
    history = store.history(name, namespace=namespace)
    add("versions committed", f"{len(history) - 1} (head v{history[-1].version}, {history[-1].n_bullets} bullets)")
    add("failed steps", str(len(result.failed)))
    u = llm.ledger
    roles = ", ".join(f"{role} {us.total_tokens}" for role, us in u.by_role.items())
    add("tokens", f"{u.usage.total_tokens} ({u.usage.input_tokens} in, {u.usage.output_tokens} out; {roles})")
    add("stored in", f"{db}  (namespace {namespace!r}, playbook {name!r})")
    add("replayable calls", str(tape))
    add("trajectory", f"{trajectory}  (ace replay FILE verifies it without a model)")
    console.print(t)
    console.print(line(f"Inspect: ace playbook history {name} -n {namespace} --db {db}"))
