"""The commands that run the loop or its records: ``ace demo``, ``ace run``, ``ace learn``, ``ace replay``,
``ace report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ace.app.console import line
from ace.cli.options import MAX_REPLY_TOKENS, DbOpt, LoopOptions, NsOpt, ReplyTokensOpt, loop_options
from ace.cli.output import AceTyper, fail, open_store, out, print_step
from ace.names import check_name
from ace.store import DEFAULT_NAMESPACE

app = AceTyper()


@app.command()
def demo(
    family: Annotated[
        str,
        typer.Option(
            help="'conventions': house rules of a fictional cooperative, learnable only from feedback (learning "
            "shows); 'finance': Formula-style questions with the paper's free-text roles (the machinery only)."
        ),
    ] = "conventions",
    tasks: Annotated[
        int | None,
        typer.Option(help="How many tasks (conventions: 4-400, default 24; finance: 1-6, default 4).", min=1, max=400),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the conventions stream.")] = 0,
    provider: Annotated[str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")] = "local",
    rounds: Annotated[
        int | None,
        typer.Option(help="Answer attempts per task (default 1 for conventions, 2 for finance).", min=1, max=5),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Token limit of each LLM reply.", min=16, max=MAX_REPLY_TOKENS)
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    memory: Annotated[
        bool, typer.Option("--memory", help="Switch on the memory tiers: short-term, episodic (Chroma), graph.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Run the ACE loop end to end on the embedded default: local model, SQLite, no API key."""
    from ace.app.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            tasks=tasks,
            family=family,
            seed=seed,
            provider=provider,
            db=db,
            max_rounds=rounds,
            max_tokens=max_tokens,
            run_id=run_id,
            memory=memory,
        ),
        out,
    )


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A trajectory (ace-trajectory/2 or /1), from any run.")],
    detectors: Annotated[bool, typer.Option(help="Re-run the collapse detectors on every step.")] = True,
    provider: Annotated[
        str | None,
        typer.Option(
            help="Re-execute the run's tasks through the loop: 'recorded' (the trajectory's own responses: every "
            "version hash must come out the same), 'local', 'openai:MODEL[@URL]', 'anthropic:MODEL'."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--as", help="Playbook name of the re-executed run.")] = None,
    db: DbOpt = None,
) -> None:
    """Rebuild a run's playbook history from its trajectory with no model, verifying every version hash; with
    --provider, then re-execute its tasks and compare."""
    from ace.collapse import Detectors
    from ace.runs.trajectory import replay as replay_file

    report = replay_file(file, detectors=Detectors() if detectors else None)
    if report.versions:
        out.print(
            f"{report.steps} steps, {report.calls} LLM calls recorded; versions "
            f"v{report.versions[0]}..v{report.versions[-1]} rebuilt and verified"
        )
    for a in report.alerts:
        out.print(f"  alert {a.shown()} {a.detector} ({a.severity}): {a.message}")
    for note in report.notes:
        out.print(line(("note", "yellow"), f": {note}"))
    if not report.ok:
        fail(report.problem, label="rejected")
        raise typer.Exit(1)
    chain = "" if report.notes else "; every line's chain verifies"
    out.print(line(("ok", "green"), f": every version hash matches{chain}"))
    if provider:
        _rerun(file, provider, name, db)


def _rerun(file: Path, provider: str, name: str | None, db: str | None) -> None:
    from ace.collapse import CollapseGuard
    from ace.llm import LLM
    from ace.runs.reexecute import RecordedProvider, plan, rerun

    _, _, info = plan(file)  # a trajectory that cannot be re-executed says why before any model is loaded
    store = open_store(db)
    llm = LLM(RecordedProvider(file) if provider == "recorded" else provider)
    out.rule(f"re-executing with {provider}")
    # the built-in guard (the collapse detectors at their defaults, as ace demo runs them) when the run had one
    guard = CollapseGuard() if info.get("guard") else None
    r = rerun(file, llm, store, name=name, guard=guard)
    mark = {True: "✓", False: "✗", None: "?"}
    for s in r.steps:
        same = "same version hash" if s.same_digest else "different version"
        tail = f" · failed: {s.live_error[:100]}" if s.live_error else ""
        out.print(
            f"  {s.task_id}: recorded {mark[s.recorded_correct]} v{s.recorded_version} · "
            f"now {mark[s.live_correct]} v{s.live_version} · {same}{tail}",
        )
    acc = [f"{a:.0%}" if a is not None else "-" for a in (r.recorded_accuracy, r.live_accuracy)]
    out.print(
        f"{r.reproduced} of {len(r.steps)} versions reproduced; accuracy recorded {acc[0]}, now {acc[1]}; "
        f"playbook {r.playbook!r}, trajectory {r.trajectory}",
    )
    for note in r.notes:
        out.print(f"note: {note}")
    if provider == "recorded" and r.reproduced < len(r.steps):
        fail("the recorded responses no longer give the recorded versions", label="not reproduced")
        raise typer.Exit(1)


@app.command()
@loop_options(
    "batch_size", "playbook_budget", "curation", "curator_content", "curator_repairs", "layout", "ground_truth"
)
def learn(
    logs: Annotated[
        list[Path],
        typer.Argument(
            help="Agent logs: JSONL of OpenAI-style chat messages with tool calls; with --format, coding-agent "
            "session files or directories of them (~/.claude/projects/..., ~/.codex/sessions)."
        ),
    ],
    log_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="'chat' (OpenAI-style chat logs), 'claude-code' (Claude Code transcripts) or 'codex' (Codex CLI "
            "rollouts): each user request of a session becomes an episode, judged by the session itself.",
        ),
    ] = "chat",
    playbook: Annotated[str | None, typer.Option("--playbook", "-p", help="Playbook to learn into.")] = None,
    provider: Annotated[
        str,
        typer.Option(
            help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]', or 'scripted:valid' / 'scripted:FILE.json' (a "
            "test double, no model: ace.llm.testing)."
        ),
    ] = "local",
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: named after the file).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Learn from the first N conversations only.")] = None,
    max_tokens: ReplyTokensOpt = 512,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    *,
    loop: LoopOptions,
) -> None:
    """Learn a playbook offline from logs you already have: reflect on each logged episode and curate a delta."""
    from ace.llm import LLM, Sampling
    from ace.runs.factory import RunFiles
    from ace.runs.from_logs import learn as learn_logs
    from ace.runs.from_logs import load_logs
    from ace.runs.runners import curation_summary, learning_summary
    from ace.runs.workspace import runs_dir

    config = loop.config()
    # a malformed log is reported before any model is loaded
    if log_format == "chat":
        if len(logs) > 1:
            fail("chat logs are learned one file at a time (--format claude-code|codex takes several paths)")
            raise typer.Exit(2)
        tasks = load_logs(logs[0], limit=limit)
    else:
        from ace.runs.sessions import check_format, load_sessions

        tasks, report = load_sessions(logs, check_format(log_format), limit=limit)
        out.print(f"{log_format}: {report.summary()}")
        for note in report.notes[:5]:
            out.print(line(("note", "yellow"), f": {note}"))
    name = check_name(playbook or (logs[0].stem if log_format == "chat" else log_format), "playbook name")
    # the same files into the same playbook resumes
    more = f"+{len(logs) - 1}" if len(logs) > 1 else ""
    rid = check_name(run_id or f"learn-{name}-{logs[0].stem[:60]}{more}-{len(tasks)}", "run id")
    store = open_store(db)
    llm = LLM(provider, sampling=Sampling(max_tokens=max_tokens))
    what = "logged" if log_format == "chat" else f"{log_format} session"
    out.rule(f"learning {name!r} from {len(tasks)} {what} episodes · run {rid} · provider {provider}")

    result = learn_logs(
        tasks, llm, store, name, run_id=rid, workdir=runs_dir(), namespace=namespace, config=config,
        on_step=print_step,
    )  # fmt: skip
    head = store.head(name, namespace=namespace)
    out.print(
        f"{name} is at v{head.version} ({head.n_bullets} bullets); {len(result.failed)} of {len(tasks)} steps "
        f"failed; trajectory {RunFiles(runs_dir(), rid).trajectory}",
    )
    # steps that could not reflect or curate (the provider away, say) did not learn: say how many and why; the same
    # command again tries only them
    if refused := curation_summary(result.results):
        out.print(line(("curation", "bold"), f": {refused}"))
    missed = learning_summary(result.results)
    if missed:
        again = f"; run the same command again (run {rid}) to retry them"
        out.print(line(("not learned", "bold yellow"), f": {missed}{again}"))
        if all(r.could_not_learn for r in result.results):
            fail("nothing was learned: no step could reflect and curate", label="failed")
            raise typer.Exit(1)


@app.command()
def report(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run directory (ace run, ace learn: <data dir>/runs/<run id>), one run's trajectory "
            "(*.trajectory.jsonl: ace demo, TextWorld), or a collapse-benchmark result (bench_collapse.py --out FILE)."
        ),
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default: RUN/report, or beside a result file).")
    ] = None,
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            help="Price the recorded tokens per role at this model's list prices (e.g. gpt-4o-mini, local; "
            "trajectories record tokens, not their model).",
        ),
    ] = None,
) -> None:
    """Write a Markdown report, one self-contained HTML page and PNG plots for a run (accuracy over steps, playbook
    size per version with the collapse detectors' alerts, the step table, tokens and cost per role, bullet counters
    with their text) or a collapse-benchmark result."""
    if run.is_dir() or run.name.endswith(".trajectory.jsonl"):
        from ace.app.run_report import UnknownPrice, write_run_report

        try:
            _, files = write_run_report(run, out_dir, price=price)
        except UnknownPrice as e:  # a usage error (exit status 2), as an option out of its range is
            raise typer.BadParameter(str(e), param_hint="--price") from None
        for f in files:
            out.print(f"wrote {f}")
        return
    from ace.app.collapse_report import write_report

    where = write_report(run, out_dir)
    out.print(f"wrote {where / 'report.md'}, {where / 'retention.png'}, {where / 'context_size.png'}")


@app.command("run")
@loop_options(override="config")
def run_(
    config: Annotated[Path, typer.Argument(help="A run config (TOML); see examples/*/ace.toml.")],
    provider: Annotated[str | None, typer.Option(help="Override the config's provider.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    db: DbOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Cap every split at N tasks (a quick try).")] = None,
    *,
    loop: LoopOptions,
) -> None:
    """Run a config's protocols (base / icl / offline / online) and print the results table; the loop options
    override those of the config's loop section."""
    from ace.app.experiments import RunConfig, run_config

    cfg = RunConfig.load(config)
    cfg = cfg.overridden(provider=provider, db=db, limit=limit, loop=loop.config(cfg.loop), given=set(loop.given))
    summary = run_config(cfg, out, run_id=run_id, on_step=lambda r: print_step(r, rounds=True))
    if summary.get("learned_nothing"):  # the table prints, but a script must not take the run for a success
        fail("nothing was learned: no step of any learning run could reflect and curate", label="failed")
        raise typer.Exit(1)
