"""The main job: run the ACE loop on the embedded default (local model, SQLite, no key) over a task stream, show
each step and delta as it lands (and which role is running inside a step), and summarize: accuracy over steps and
by halves of the stream, what the run changed in the playbook (its diff), the quality gate's and the collapse
detectors' verdicts, versions, tokens and where everything is stored. It says plainly when nothing improved.

Two families:

- ``conventions`` (the default): questions about the house rules of a fictional cooperative
  (:mod:`ace.tasks.conventions`); the answers exist only in the feedback of earlier questions, so what the second
  half of the stream gets right is what the playbook learned. Copy-friendly curation, focused bullets and
  copied answers (see :class:`~ace.loop.LoopConfig`) make that within a 270M base model's reach.
- ``finance``: six Formula-style questions in the format of the paper's finance benchmark with the paper's free
  text roles. The 270M base model cannot do their arithmetic: this proves the machinery, not learning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ace.app.console import add_row, line
from ace.collapse import CollapseGuard
from ace.errors import ConfigError
from ace.llm import LLM, Completion, Request, Sampling, get_provider
from ace.llm.cassette import Cassette
from ace.llm.injection_probe import with_probe
from ace.loop import LoopConfig, RunResult, StepRecord
from ace.names import check_name
from ace.playbook import Delta, Playbook
from ace.playbook.formats import loads
from ace.runs.factory import RunFiles, RunSetup, start
from ace.runs.runners import facts_held
from ace.runs.workspace import bundled, data_dir, runs_dir
from ace.store import PlaybookStore, default_url
from ace.tasks import EVALUATORS, Evaluator, Task, load_finance, share_correct
from ace.tasks.conventions import conventions, conventions_stream


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
    tasks: int | None = None  # default: 24 questions (conventions), 4 (finance)
    family: str = "conventions"  # or "finance"
    seed: int = 0
    provider: str = "local"
    db: str | None = None
    max_rounds: int | None = None  # default: 1 (conventions: the first answer is scored), 2 (finance)
    max_tokens: int | None = None  # default: 128 (conventions), 256 (finance)
    run_id: str | None = None
    memory: bool = False  # tiered memory: short-term buffer, episodic store (Chroma), knowledge graph


def _family(opts: DemoOptions) -> tuple[list[Task], Evaluator, Playbook, LoopConfig, int]:
    """The demo's tasks, evaluator, starting playbook, loop settings and max tokens per call."""
    if opts.family == "conventions":
        n = max(4, opts.tasks or 24)
        tasks = conventions_stream(opts.seed, facts=max(1, n // 4), questions=n)
        config = LoopConfig(
            max_rounds=opts.max_rounds or 1, playbook_budget=1000, focus=3, answers="copy", curation="facts"
        )
        return tasks, conventions, Playbook.empty(), config, opts.max_tokens or 128
    if opts.family == "finance":
        if opts.tasks is not None and opts.tasks > 6:
            raise ConfigError("the finance demo has 6 tasks")
        tasks = load_finance(bundled("examples/finance/tasks.jsonl"), "formula", limit=opts.tasks or 4)
        start = loads(bundled("playbooks/finance.txt").read_text(encoding="utf-8"))
        config = LoopConfig(max_rounds=opts.max_rounds or 2, playbook_budget=400)
        return tasks, EVALUATORS["formula"], start, config, opts.max_tokens or 256
    raise ConfigError(f"unknown demo family {opts.family!r}: 'conventions' or 'finance'")


def run_demo(opts: DemoOptions, console: Console) -> RunResult:
    run_id = check_name(opts.run_id or time.strftime("demo-%Y%m%d-%H%M%S"), "run id")
    provider = get_provider(opts.provider)  # a provider that cannot start says so before anything is written
    db = opts.db or default_url()
    store = PlaybookStore(db, policy=with_probe())
    tasks, evaluator, first, config, max_tokens = _family(opts)
    name, namespace = f"{opts.family}-{run_id}", "demo"
    start_version = store.ensure(
        name, first, namespace=namespace, author="ace demo", message=f"starting playbook ({opts.family})"
    ).version
    files = RunFiles(runs_dir(), run_id)
    files.workdir.mkdir(parents=True, exist_ok=True)
    tape = files.calls
    llm = LLM(Cassette(tape, provider, mode="auto"), sampling=Sampling(max_tokens=max_tokens))

    console.rule(line(f"ACE demo · {opts.family} · run {run_id} · {len(tasks)} tasks · provider {opts.provider}"))
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    bar = progress.add_task("task 1: generator", total=len(tasks))
    done = {"steps": 0}

    def on_call(role: str, request: Request, completion: Completion) -> None:
        # inside a step: which role answered, and what it cost (the bar no longer sits still for minutes)
        step = done["steps"] + 1
        out = completion.usage.output_tokens
        progress.update(bar, description=f"task {step}: {role} done ({out} tokens)")

    llm.observers.append(on_call)

    def on_step(record: StepRecord) -> None:
        mark = {True: ("✓", "green"), False: ("✗", "red"), None: ("?", "yellow")}[record.correct]
        console.print(line(mark, f" task {record.index + 1} ({record.task_id}) · rounds {record.rounds}"))
        if record.error:
            console.print(line((f"    step failed, playbook untouched: {record.error[:160]}", "red")))
        elif record.delta:
            console.print(line((f"    v{record.version}:", "cyan")))
            for change in describe(record.delta):
                console.print(line(f"      {change}"))
        done["steps"] += 1
        progress.update(bar, advance=1, description=f"task {done['steps'] + 1}: generator")

    memory = None
    if opts.memory:
        from ace.memory import Memory

        memory = Memory.local(store, data_dir() / "chroma", namespace=namespace)
        console.print(
            line(f"memory tiers on: short-term buffer, episodes in {data_dir() / 'chroma'}, graph in the store")
        )
    guard = CollapseGuard()
    setup = RunSetup(
        llm=llm,
        store=store,
        playbook=name,
        namespace=namespace,
        evaluator=evaluator,
        config=config,
        on_step=on_step,
        memory=memory,
        guard=guard,
    )
    with progress:
        result = start(setup, tasks, run_id=run_id, workdir=files.workdir)
    summarize(result, store, name, namespace, llm, db, tape, files.trajectory, console, since=start_version,
              guard=guard, tasks=tasks)  # fmt: skip
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
    *,
    since: int | None = None,
    guard: CollapseGuard | None = None,
    tasks: list[Task] | None = None,
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
    first, second = halves(result.results)
    add("first half → second half", f"{_pct(first)} → {_pct(second)}")
    history = store.history(name, namespace=namespace)
    add("versions committed", f"{len(history) - 1} (head v{history[-1].version}, {history[-1].n_bullets} bullets)")
    held = facts_held(store.load(name, namespace=namespace), tasks or [])
    if held.facts:
        add("bullets per fact", str(held))
    add("failed steps", str(len(result.failed)))
    u = llm.ledger
    roles = ", ".join(f"{role} {us.total_tokens}" for role, us in u.by_role.items())
    add("tokens", f"{u.usage.total_tokens} ({u.usage.input_tokens} in, {u.usage.output_tokens} out; {roles})")
    add("stored in", f"{db}  (namespace {namespace!r}, playbook {name!r})")
    add("replayable calls", str(tape))
    add("trajectory", f"{trajectory}  (ace replay FILE verifies it without a model)")
    rejected = [r for r in result.results if r.error]
    gate = sum(1 for r in rejected if "needs at least" in (r.error or "") or "quality" in (r.error or ""))
    add("quality gate", f"{gate} delta(s) refused" if gate else "every committed bullet passed")
    if guard is not None:
        crit = [a for a in guard.alerts if a.at_least("critical")]
        warn = [a for a in guard.alerts if a.severity == "warning"]
        verdict = f"{len(crit)} critical (blocked), {len(warn)} warning(s)" if guard.alerts else "no alert"
        add("collapse detectors", verdict)
    console.print(t)
    head = history[-1].version
    if since is not None and head > since:
        console.rule(line(f"what this run changed: v{since} → v{head}"))
        for text in diff_lines(store, name, namespace, since, head):
            console.print(line(text))
    console.print(line(verdict_line(first, second, head > (since or 0))))
    console.print(line(f"Inspect: ace playbook history {name} -n {namespace} --db {db}"))
    console.print(line(f"Report (plots, Markdown, HTML): ace report {trajectory}"))


def halves(results: list[StepRecord]) -> tuple[float | None, float | None]:
    """Accuracy over the first and the second half of a stream."""
    mid = len(results) // 2
    return share_correct(results[:mid]), share_correct(results[mid:])


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def verdict_line(first: float | None, second: float | None, changed: bool) -> str:
    if first is None or second is None:
        return "Nothing was judged: no verdict on learning."
    if second > first:
        return f"Learning shows: the second half scored {second:.0%} against {first:.0%} for the first."
    if not changed:
        return "Nothing improved, and the playbook did not change."
    return f"Nothing improved: the second half scored {second:.0%} against {first:.0%} for the first."


def diff_lines(store: PlaybookStore, name: str, namespace: str, v1: int, v2: int, *, limit: int = 30) -> list[str]:
    """The run's diff, one line per bullet added, removed or rewritten (counter-only changes summed)."""
    d = store.diff(name, v1, v2, namespace=namespace)
    out = [f"+ [{b.id}] {b.content}" for b in d.added]
    out += [f"- [{b.id}] {b.content}" for b in d.removed]
    out += [f"~ [{c.after.id}] {c.after.content}" for c in d.changed if "content" in c.fields]
    counters = sum(1 for c in d.changed if "content" not in c.fields)
    if len(out) > limit:
        out = [*out[:limit], f"... and {len(out) - limit} more (ace playbook diff {name} {v1} {v2})"]
    if counters:
        out.append(f"({counters} bullet(s) had only their helpful/harmful counters changed)")
    return out or ["(no change)"]
