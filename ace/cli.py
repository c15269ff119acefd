"""The ``ace`` command (Typer + Rich).

Every store command takes ``--db URL`` (default: ``$ACE_DB``, else SQLite at ``~/.local/share/ace/ace.db``) and
``--namespace``. Errors are one line on stderr and exit status 1; never a traceback.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from ace.playbook import AceError, Delta, DeltaError, Source, render
from ace.playbook.diff import PlaybookDiff
from ace.playbook.formats import FORMATS, dumps, loads
from ace.store import DEFAULT_NAMESPACE, PlaybookStore, StaleVersionError, VersionInfo

app = typer.Typer(
    help="ACE: playbooks that evolve by small, versioned deltas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
playbook_app = typer.Typer(help="Import, inspect, change and version playbooks.", no_args_is_help=True)
app.add_typer(playbook_app, name="playbook")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="ACE_DB",
        show_envvar=True,
        help="SQLAlchemy URL of the store (default: SQLite under ~/.local/share/ace).",
    ),
]
NsOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace (agent or tenant) of the playbook.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", help="Who makes this change (recorded in history).")]
MessageOpt = Annotated[str | None, typer.Option("--message", "-m", help="Why (recorded in history).")]


@contextmanager
def _errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and exit status 1."""
    try:
        yield
    except AceError as e:
        err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (OSError, UnicodeDecodeError) as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as e:
        err.print(f"[bold red]error:[/] database: {str(e).splitlines()[0]}", soft_wrap=True)
        raise typer.Exit(1) from None
    except ValueError as e:  # bad configuration or arguments (pydantic's ValidationError included)
        err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _store(db: str | None) -> PlaybookStore:
    return PlaybookStore(db)


def _print_step(r: dict[str, Any], *, rounds: bool = False, feedback: bool = False) -> None:
    """One line per finished loop step: outcome, task, (rounds, what the environment said), version or failure."""
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]?[/]"}[r["correct"]]
    tail = f" · failed: {r['error'][:100]}" if r["error"] else f" · v{r['version']}" if r["committed"] else ""
    said = f" · rounds {r['rounds']}" if rounds else ""
    said += f" · {r['feedback']}" if feedback and r.get("feedback") else ""
    out.print(f"  {mark} {r['task_id']}{said}{tail}", highlight=False)


def _ops_summary(info: VersionInfo) -> str:
    if info.delta is None:
        return info.kind
    counts = Counter(op.type for op in info.delta.operations)
    return " ".join(f"{k}×{v}" for k, v in counts.items()) or "(empty)"


def _print_text(text: str) -> None:
    # Playbook text holds [ids] that Rich would read as markup: print it verbatim.
    typer.echo(text, nl=not text.endswith("\n"))


@playbook_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Playbook file (ACE text, JSON, Markdown or kayba skillbook).")],
    name: Annotated[str, typer.Option("--name", help="Name to store it under.")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}; guessed if absent.")
    ] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
    message: MessageOpt = None,
) -> None:
    """Import a playbook file as version 1 of a new playbook."""
    with _errors():
        pb = loads(file.read_text(encoding="utf-8"), fmt, filename=file.name)
        info = _store(db).create(name, pb, namespace=namespace, author=author, message=message or f"import {file.name}")
        out.print(
            f"imported [bold]{name}[/] v{info.version}: {len(pb)} bullets in {len(pb.sections)} sections "
            f"(digest {info.digest[:12]})"
        )


@playbook_app.command()
def show(
    name: str,
    version: Annotated[int | None, typer.Option("--version", "-v", help="Version to show (default: head).")] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Token budget: keep the most useful bullets.")] = None,
    counters: Annotated[bool, typer.Option(help="Print helpful/harmful counters.")] = True,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Print a playbook as prompt text."""
    with _errors():
        pb = _store(db).load(name, version, namespace=namespace)
        _print_text(render(pb, counters=counters, budget=budget))


@playbook_app.command()
def history(name: str, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """List every version, oldest first."""
    with _errors():
        table = Table("version", "parent", "kind", "ops", "bullets", "author", "message", "when (UTC)", "digest")
        for h in _store(db).history(name, namespace=namespace):
            table.add_row(
                str(h.version),
                str(h.parent or ""),
                h.kind,
                _ops_summary(h),
                str(h.n_bullets),
                h.author or "",
                h.message or "",
                h.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                h.digest[:12],
            )
        out.print(table)


def _print_diff(d: PlaybookDiff) -> None:
    if d.empty:
        out.print("no differences")
        return
    for b in d.added:
        out.print(f"+ [{b.id}] ({b.section}) {b.content}", style="green", markup=False)
    for b in d.removed:
        out.print(f"- [{b.id}] ({b.section}) {b.content}", style="red", markup=False)
    for c in d.changed:
        parts = []
        for f in c.fields:
            before, after = getattr(c.before, f), getattr(c.after, f)
            parts.append(f"{f}: {before!r} → {after!r}" if f in ("content", "section") else f"{f} {before}→{after}")
        out.print(f"~ [{c.after.id}] " + "; ".join(parts), style="yellow", markup=False)
    out.print(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")


@playbook_app.command("diff")
def diff_(name: str, v1: int, v2: int, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """Show bullets added, removed and changed from version V1 to V2."""
    with _errors():
        _print_diff(_store(db).diff(name, v1, v2, namespace=namespace))


@playbook_app.command("apply")
def apply_(
    name: str,
    delta_file: Annotated[Path, typer.Argument(metavar="DELTA.json", help='Delta JSON: {"operations": [...]}.')],
    expected_version: Annotated[
        int | None, typer.Option("--expected-version", help="Fail if the head moved past this.")
    ] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
    message: MessageOpt = None,
) -> None:
    """Apply a delta as a new version (all operations or none)."""
    with _errors():
        delta = Delta.parse(delta_file.read_text(encoding="utf-8"))
        info = _store(db).commit(
            name,
            delta,
            namespace=namespace,
            expected_version=expected_version,
            author=author,
            message=message or delta.reasoning,
        )
        out.print(
            f"[bold]{name}[/] v{info.version}: {_ops_summary(info)} → {info.n_bullets} bullets "
            f"(digest {info.digest[:12]})"
        )


@playbook_app.command()
def rollback(
    name: str,
    version: int,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
    message: MessageOpt = None,
) -> None:
    """Make an old version the head again, as a new version (history is kept)."""
    with _errors():
        info = _store(db).rollback(name, version, namespace=namespace, author=author, message=message)
        out.print(f"[bold]{name}[/] v{info.version}: rolled back to the state of v{version} ({info.n_bullets} bullets)")


@playbook_app.command()
def export(
    name: str,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "ace",
    version: Annotated[int | None, typer.Option("--version", "-v", help="Version to export (default: head).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Export a playbook as ACE text, JSON (lossless), Markdown or a kayba skillbook."""
    with _errors():
        text = dumps(_store(db).load(name, version, namespace=namespace), fmt)
        if output:
            output.write_text(text, encoding="utf-8")
            err.print(f"wrote {output}")
        else:
            _print_text(text)


@playbook_app.command()
def blame(name: str, bullet_id: str, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """List the versions that touched a bullet, with their provenance."""
    with _errors():
        entries = _store(db).blame(name, bullet_id, namespace=namespace)
        if not entries:
            raise AceError(f"no version of {name!r} touched a bullet with id {bullet_id!r}")
        table = Table("version", "op", "task", "step", "run", "role", "author", "message", "when (UTC)")
        for e in entries:
            s = e.source
            table.add_row(
                str(e.version),
                e.op,
                (s and s.task_id) or "",
                str(s.step) if s and s.step is not None else "",
                (s and s.run_id) or "",
                (s and s.role) or "",
                e.author or "",
                e.message or "",
                e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
        out.print(table)


@playbook_app.command("list")
def list_(db: DbOpt = None, namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None) -> None:
    """List stored playbooks."""
    with _errors():
        table = Table("namespace", "name", "head", "created (UTC)")
        for p in _store(db).list(namespace):
            table.add_row(p.namespace, p.name, str(p.head), p.created_at.strftime("%Y-%m-%d %H:%M:%S"))
        out.print(table)


@playbook_app.command()
def verify(name: str, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """Rebuild every version from the log and check each against its recorded digest."""
    with _errors():
        n = _store(db).verify(name, namespace=namespace)
        out.print(f"[green]ok[/]: {n} versions of {name!r} rebuild to their recorded digests")


@playbook_app.command()
def dedup(
    name: str,
    threshold: Annotated[float, typer.Option(help="Cosine similarity at or above which bullets are duplicates.")] = 0.9,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the pairs and groups; write nothing.")] = False,
    show: Annotated[int, typer.Option(help="How many of the most similar pairs to list.")] = 20,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
) -> None:
    """Merge near-duplicate bullets (by embedding) into their most useful one, as a new version."""
    with _errors():
        from ace.llm.embeddings import MiniLMEmbedder  # onnxruntime loads only for this command
        from ace.refine import EmbeddingIndex, dedup_delta, duplicate_groups, similar_pairs

        store = _store(db)
        head = store.head(name, namespace=namespace)
        pb = store.load(name, head.version, namespace=namespace)
        pairs = similar_pairs(pb, EmbeddingIndex(MiniLMEmbedder()), threshold)
        groups = duplicate_groups(pb, pairs)
        table = Table("cosine", "id", "content", "id", "content")
        for p in pairs[:show]:
            table.add_row(f"{p.similarity:.3f}", p.a, pb[p.a].content[:60], p.b, pb[p.b].content[:60])
        if pairs:
            out.print(table)
        merged_away = sum(len(g) - 1 for g in groups)
        out.print(
            f"{len(pairs)} pairs at cosine >= {threshold} in {len(groups)} groups; merging them takes "
            f"{name} v{head.version} from {len(pb)} to {len(pb) - merged_away} bullets"
        )
        if dry_run or not groups:
            out.print("dry run: nothing written" if dry_run else "nothing to merge")
            return
        delta = dedup_delta(pb, groups, source=Source(role="refine", note=f"dedup at cosine >= {threshold}"))
        info = store.commit(
            name,
            delta,
            namespace=namespace,
            expected_version=head.version,
            author=author or "ace dedup",
            message=f"merge near-duplicates (cosine >= {threshold})",
        )
        out.print(f"[bold]{name}[/] v{info.version}: {_ops_summary(info)} → {info.n_bullets} bullets")


@playbook_app.command()
def check(
    name: str,
    since: Annotated[int, typer.Option("--from", help="First version to check from.")] = 1,
    probes: Annotated[
        Path | None, typer.Option(help="A text file of probe facts, one per line, that must stay known.")
    ] = None,
    embeddings: Annotated[bool, typer.Option(help="Match rewritten bullets by embedding (slower).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 2 if any alert is critical.")] = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Run the collapse detectors over a playbook's history and list the alerts."""
    with _errors():
        from ace.collapse import Detectors

        store = _store(db)
        history = store.history(name, namespace=namespace, since=since)
        detectors = Detectors(
            probes=[p.strip() for p in probes.read_text().splitlines() if p.strip()] if probes else []
        )
        if embeddings:
            from ace.llm.embeddings import MiniLMEmbedder
            from ace.refine import EmbeddingIndex

            detectors.similar = EmbeddingIndex(MiniLMEmbedder()).similarity
        alerts = detectors.scan([(h.version, store.load(name, h.version, namespace=namespace)) for h in history])
        if not alerts:
            out.print(f"[green]ok[/]: no alerts over versions {since}..{history[-1].version} of {name!r}")
            return
        table = Table("versions", "detector", "severity", "message")
        for a in alerts:
            style = "red" if a.severity == "critical" else "yellow"
            table.add_row(f"v{a.versions[0]} → v{a.versions[1]}", a.detector, f"[{style}]{a.severity}[/]", a.message)
        out.print(table)
        if strict and any(a.severity == "critical" for a in alerts):
            raise typer.Exit(2)


@playbook_app.command()
def trajectory(
    name: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="The trajectory file to write.")],
    since: Annotated[int, typer.Option(help="First version (the trajectory's starting state).")] = 1,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Write a stored history as a trajectory file (ace-trajectory/1) that `ace replay` verifies."""
    with _errors():
        from ace.trajectory import export

        n = export(_store(db), name, output, namespace=namespace, since=since)
        out.print(f"wrote {n} steps to {output}")


TOUR_DELTA = {
    "reasoning": "The answer used the wrong base year; record the rule and credit the bullet that helped.",
    "operations": [
        {
            "type": "ADD",
            "section": "FORMULAS AND CALCULATIONS",
            "content": "For growth over N years use (end / start) ** (1 / N) - 1, "
            "with N the number of periods, not of years listed.",
        },
        {"type": "TAG", "id": "calc-00002", "tag": "helpful"},
        {"type": "TAG", "id": "calc-00002", "tag": "helpful"},
        {"type": "TAG", "id": "mis-00006", "tag": "harmful"},
    ],
    "source": {"task_id": "formula-17", "step": 1, "run_id": "tour", "role": "curator"},
}


@app.command()
def tour(
    db: Annotated[
        str | None, typer.Option("--db", help="Store to use (default: a new SQLite file in a temp dir).")
    ] = None,
) -> None:
    """Walk through the playbook store on a bundled playbook: import, delta, bad delta, stale writer, diff, rollback."""
    with _errors():
        if db is None:
            db = f"sqlite:///{Path(tempfile.mkdtemp(prefix='ace-tour-')) / 'ace.db'}"
        store = PlaybookStore(db)
        name = "finance"
        out.rule("1. import the bundled starter playbook (version 1)")
        from ace.demo import bundled

        pb = loads(bundled("playbooks/finance.txt").read_text(encoding="utf-8"))
        store.create(name, pb, author="tour", message="import playbooks/finance.txt")
        _print_text(render(pb, budget=120))
        out.print(f"(shown under a 120-token budget; the whole playbook has {len(pb)} bullets)", style="dim")

        out.rule("2. a curator's delta lands as version 2")
        delta = Delta.parse(json.dumps(TOUR_DELTA))
        out.print_json(json.dumps(TOUR_DELTA))
        info = store.commit(name, delta, expected_version=1, author="tour")
        out.print(f"v{info.version}: {_ops_summary(info)}")

        out.rule("3. a malformed delta is rejected whole; the playbook is unchanged")
        bad = {
            "operations": [
                {"type": "TAG", "id": "calc-00002", "tag": "helpful"},
                {"type": "UPDATE", "id": "calc-99999", "content": "no such bullet"},
            ]
        }
        try:
            store.commit(name, Delta.parse(json.dumps(bad)), expected_version=2)
        except DeltaError as e:
            out.print(f"rejected: {e}", style="red", markup=False)
        out.print(f"head is still v{store.head(name).version}")

        out.rule("4. a stale writer gets a specific error")
        try:
            store.commit(
                name,
                Delta.parse({"operations": [{"type": "TAG", "id": "calc-00001", "tag": "helpful"}]}),
                expected_version=1,
            )
        except StaleVersionError as e:
            out.print(f"rejected: {e}", style="red", markup=False)

        out.rule("5. diff v1 → v2, blame, rollback")
        _print_diff(store.diff(name, 1, 2))
        for e in store.blame(name, "calc-00002"):
            out.print(
                f"calc-00002 touched in v{e.version} by {e.op} (task {e.source.task_id if e.source else '-'})",
                markup=False,
            )
        rb = store.rollback(name, 1, author="tour")
        out.print(f"v{rb.version}: rolled back to v1 (same digest as v1: {rb.digest == store.version(name, 1).digest})")
        store.verify(name)
        out.rule("history")
        history(name, db=db, namespace=DEFAULT_NAMESPACE)
        out.print(
            f"\nStored in [bold]{db}[/]. Explore it: [cyan]ace playbook show {name} --version 2 --db {db}[/]",
            soft_wrap=True,
        )


@app.command()
def demo(
    tasks: Annotated[int, typer.Option(help="How many of the bundled tasks to run (1-6).", min=1, max=6)] = 4,
    provider: Annotated[str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")] = "local",
    rounds: Annotated[
        int, typer.Option(help="Answer attempts per task (a wrong one is reflected on and retried).")
    ] = 2,
    max_tokens: Annotated[int, typer.Option(help="Token limit of each LLM reply.")] = 256,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    memory: Annotated[
        bool, typer.Option("--memory", help="Switch on the memory tiers: short-term, episodic (Chroma), graph.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Run the ACE loop end to end on the embedded default: local model, SQLite, no API key."""
    with _errors():
        from ace.demo import DemoOptions, run_demo

        run_demo(
            DemoOptions(
                tasks=tasks,
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
    file: Annotated[Path, typer.Argument(help="A trajectory (ace-trajectory/1), e.g. from ace demo or ace run.")],
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
    with _errors():
        from ace.collapse import Detectors
        from ace.trajectory import replay as replay_file

        report = replay_file(file, detectors=Detectors() if detectors else None)
        if report.versions:
            out.print(
                f"{report.steps} steps, {report.calls} LLM calls recorded; versions "
                f"v{report.versions[0]}..v{report.versions[-1]} rebuilt and verified"
            )
        for a in report.alerts:
            out.print(f"  alert v{a.versions[0]} → v{a.versions[1]} {a.detector} ({a.severity}): {a.message}")
        if not report.ok:
            err.print(f"[bold red]rejected:[/] {report.problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        out.print("[green]ok[/]: every version hash matches")
        if provider:
            _rerun(file, provider, name, db)


def _rerun(file: Path, provider: str, name: str | None, db: str | None) -> None:
    from ace.llm import LLM
    from ace.rerun import RecordedProvider, plan, rerun

    plan(file)  # a trajectory that cannot be re-executed says why before any model is loaded
    store = _store(db)
    llm = LLM(RecordedProvider(file) if provider == "recorded" else provider)
    out.rule(f"re-executing with {provider}")
    r = rerun(file, llm, store, name=name)
    mark = {True: "✓", False: "✗", None: "?"}
    for s in r.steps:
        same = "same version hash" if s.same_digest else "different version"
        tail = f" · failed: {s.live_error[:100]}" if s.live_error else ""
        out.print(
            f"  {s.task_id}: recorded {mark[s.recorded_correct]} v{s.recorded_version} · "
            f"now {mark[s.live_correct]} v{s.live_version} · {same}{tail}",
            markup=False,
            highlight=False,
        )
    acc = [f"{a:.0%}" if a is not None else "-" for a in (r.recorded_accuracy, r.live_accuracy)]
    out.print(
        f"{r.reproduced} of {len(r.steps)} versions reproduced; accuracy recorded {acc[0]}, now {acc[1]}; "
        f"playbook {r.playbook!r}, trajectory {r.trajectory}",
        markup=False,
        highlight=False,
    )
    for note in r.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    if provider == "recorded" and r.reproduced < len(r.steps):
        err.print("[bold red]not reproduced:[/] the recorded responses no longer give the recorded versions")
        raise typer.Exit(1)


@app.command()
def learn(
    logs: Annotated[Path, typer.Argument(help="Agent logs: JSONL of OpenAI-style chat messages with tool calls.")],
    playbook: Annotated[str | None, typer.Option("--playbook", "-p", help="Playbook to learn into.")] = None,
    provider: Annotated[str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")] = "local",
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: named after the file).")] = None,
    limit: Annotated[int | None, typer.Option(help="Learn from the first N conversations only.")] = None,
    batch_size: Annotated[int, typer.Option(help="Conversations curated against one version and merged.")] = 1,
    max_tokens: Annotated[int, typer.Option(help="Token limit of each LLM reply.")] = 512,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Learn a playbook offline from logs you already have: reflect on each logged episode and curate a delta."""
    with _errors():
        from ace.demo import data_dir
        from ace.llm import LLM, Sampling
        from ace.logs import learn as learn_logs
        from ace.logs import load_logs

        tasks = load_logs(logs, limit=limit)  # a malformed log is reported before any model is loaded
        name = playbook or logs.stem
        rid = run_id or f"learn-{name}-{logs.stem}-{len(tasks)}"  # the same file into the same playbook resumes
        store = _store(db)
        llm = LLM(provider, sampling=Sampling(max_tokens=max_tokens))
        out.rule(f"learning {name!r} from {len(tasks)} logged episodes · run {rid} · provider {provider}")

        work = data_dir() / "runs"
        result = learn_logs(
            tasks, llm, store, name, run_id=rid, workdir=work, namespace=namespace, batch_size=batch_size,
            on_step=_print_step,
        )  # fmt: skip
        head = store.head(name, namespace=namespace)
        out.print(
            f"{name} is at v{head.version} ({head.n_bullets} bullets); {len(result.failed)} of {len(tasks)} steps "
            f"failed; trajectory {work / f'{rid}.trajectory.jsonl'}",
            markup=False,
            highlight=False,
        )


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A collapse-benchmark result (bench_collapse.py --out FILE).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (default: beside RUN).")] = None,
) -> None:
    """Write the plots (PNG) and a Markdown report for a collapse-benchmark run."""
    with _errors():
        from ace.report import write_report

        where = write_report(run, out_dir)
        out.print(f"wrote {where / 'report.md'}, {where / 'retention.png'}, {where / 'context_size.png'}")


@app.command("run")
def run_(
    config: Annotated[Path, typer.Argument(help="A run config (TOML); see examples/*/ace.toml.")],
    provider: Annotated[str | None, typer.Option(help="Override the config's provider.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    db: DbOpt = None,
    limit: Annotated[int | None, typer.Option(help="Cap every split at N tasks (a quick try).")] = None,
) -> None:
    """Run a config's protocols (base / icl / offline / online) and print the results table."""
    with _errors():
        from ace.protocols import RunConfig, run_config

        cfg = RunConfig.load(config)
        if provider:
            cfg.provider = provider
        if db:
            cfg.db = db
        if limit is not None:
            for split in ("train", "val", "test"):
                current = getattr(cfg.data, f"limit_{split}")
                setattr(cfg.data, f"limit_{split}", min(limit, current) if current else limit)

        run_config(cfg, out, run_id=run_id, on_step=lambda r: _print_step(r, rounds=True))


textworld_app = typer.Typer(
    help="TextWorld cooking games (the textworld extra): generate, play with the ACE loop, export logs.",
    no_args_is_help=True,
)
app.add_typer(textworld_app, name="textworld")
SeedsOpt = Annotated[str, typer.Option("--seeds", help="Game seeds: '1-5' or '1,4,9'.")]
GoOpt = Annotated[int, typer.Option("--go", help="Rooms: 1, 6, 9 or 12.")]
RecipeOpt = Annotated[int, typer.Option(help="Ingredients in the recipe.")]
TakeOpt = Annotated[int, typer.Option(help="Ingredients to find.")]
GamesDirOpt = Annotated[Path | None, typer.Option("--dir", help="Where games are (made) (default: the data dir).")]


def _seeds(spec: str) -> list[int]:
    seeds: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise typer.BadParameter(f"seeds must look like '1-5' or '1,4,9', not {spec!r}") from None
    return seeds


def _games(seeds: str, recipe: int, take: int, go: int, games_dir: Path | None) -> list[Path]:
    from ace.demo import data_dir
    from ace.envs.textworld import CookingSettings, generate

    if go not in (1, 6, 9, 12):
        raise typer.BadParameter("--go must be 1, 6, 9 or 12")
    settings = CookingSettings(recipe=recipe, take=min(take, recipe), go=go)  # type: ignore[arg-type]
    return generate(games_dir or data_dir() / "textworld", _seeds(seeds), settings)


@textworld_app.command("make")
def tw_make(
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
) -> None:
    """Generate tw-cooking games with fixed seeds (reused when already there)."""
    with _errors():
        from ace.envs.textworld import Game

        for path in _games(seeds, recipe, take, go, games_dir):
            with Game(path) as g:
                g.reset()
                out.print(f"{path}  ({len(g.walkthrough)}-step walkthrough, {g.max_score} points)", markup=False)


@textworld_app.command("play")
def tw_play(
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
    playbook: Annotated[str, typer.Option("--playbook", "-p", help="Playbook the agent uses and learns into.")] = (
        "textworld"
    ),
    provider: Annotated[str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")] = "local",
    max_moves: Annotated[int, typer.Option(help="Moves per game before it counts as unfinished.")] = 30,
    learn: Annotated[bool, typer.Option(help="Reflect and curate after each game (--no-learn: a baseline).")] = True,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Play games with the ACE loop as the agent, learning from each game before the next."""
    with _errors():
        import time

        from ace.demo import data_dir
        from ace.envs.textworld import play_series
        from ace.llm import LLM, Sampling

        games = _games(seeds, recipe, take, go, games_dir)
        rid = run_id or time.strftime("textworld-%Y%m%d-%H%M%S")
        store = _store(db)
        llm = LLM(provider, sampling=Sampling(max_tokens=256))
        out.rule(f"{len(games)} games · run {rid} · provider {provider} · {'learning' if learn else 'fixed playbook'}")

        work = data_dir() / "runs"
        res = play_series(
            games, llm, store, playbook, run_id=rid, workdir=work, namespace=namespace, max_moves=max_moves,
            learn=learn, on_step=lambda r: _print_step(r, feedback=True),
        )  # fmt: skip
        scores = [g["score"] for g in res.games if g["score"] is not None]
        mean = sum(scores) / len(scores) if scores else 0.0
        out.print(
            f"won {res.won} of {len(res.games)} games; mean score {mean:.0%}; {playbook} at "
            f"v{store.head(playbook, namespace=namespace).version}; {llm.ledger.usage.total_tokens} tokens; "
            f"trajectory {work / f'{rid}.trajectory.jsonl'}",
            markup=False,
            highlight=False,
        )


@textworld_app.command("export")
def tw_export(
    output: Annotated[Path, typer.Option("--out", "-o", help="The log file to write (JSONL).")],
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
    perturbed: Annotated[int, typer.Option(help="Failing perturbed runs per game.")] = 1,
    gold_only: Annotated[bool, typer.Option("--gold-only", help="Only the walkthroughs.")] = False,
) -> None:
    """Export the games' gold walkthroughs and perturbed failing runs as chat logs (for ace learn)."""
    with _errors():
        from ace.envs.textworld import export_logs

        games = _games(seeds, recipe, take, go, games_dir)
        counts = export_logs(games, output, perturbed=0 if gold_only else perturbed)
        out.print(f"wrote {output}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())), markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
