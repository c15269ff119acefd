"""``ace playbook ...``: import, inspect, change and version playbooks in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ace.app.console import add_row, line, table
from ace.cli.options import (
    MAX_INT,
    AuthorOpt,
    BudgetOpt,
    ChannelOpt,
    DbOpt,
    JsonOpt,
    LimitOpt,
    MessageOpt,
    NsOpt,
    VersionOpt,
)
from ace.cli.output import (
    AceTyper,
    err,
    fail,
    open_store,
    ops_summary,
    out,
    print_diff,
    print_json,
    print_text,
    read_input,
)
from ace.cli.sync import AGENT_FORMATS, agent_import, export_agent_file
from ace.errors import AceError
from ace.playbook import ApplyPolicy, Delta, apply, render
from ace.playbook.formats import FORMATS, dumps, loads, to_ace
from ace.runs.workspace import sqlite_file, write_atomically
from ace.store import DEFAULT_NAMESPACE, SERVING, PlaybookStore, StaleVersionError, VersionNotFound

app = AceTyper(help="Import, inspect, change and version playbooks.", no_args_is_help=True)


@app.command("import")
def import_(
    first: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The name to store it under (the file, in the old FILE --name NAME)."),
    ],
    second: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE", help="Playbook file (ACE text, JSON, Markdown or kayba skillbook).", show_default=False
        ),
    ] = None,
    name_opt: Annotated[
        str | None, typer.Option("--name", help="The name, as earlier releases took it: FILE --name NAME.")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help=f"One of {', '.join([*FORMATS, *AGENT_FORMATS])}; guessed if absent."),
    ] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
    message: MessageOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Import even if bullets or section names fail the quality gate (an injection, hidden characters), "
            "or a skill or agent file's playbook was edited by hand since ace wrote it; the version records who "
            "forced it (--author, else your user name).",
        ),
    ] = False,
) -> None:
    """Import a playbook file as version 1 of a new playbook: `ace playbook import NAME FILE`, NAME first like every
    playbook command. It is judged like a delta: a bullet or a section name that fails the quality gate refuses the
    import, unless --force. FILE may be a skill folder or SKILL.md, or a file with an ace block (AGENTS.md), as
    export --format skill|agents-md and ace sync write them: one edited by hand is refused unless --force."""
    name, file = _name_and_file(first, second, name_opt)
    pb, said = agent_import(file, fmt, name, force=force)  # a skill, or a block in AGENTS.md
    if pb is None:
        pb = loads(read_input(file, what="playbook file"), fmt, filename=file.name)
    msg = message or said or f"import {file.name}"
    if force and author is None:
        author = f"user:{_user()}"
    info = open_store(db).create(name, pb, namespace=namespace, author=author, message=msg, force=force)
    out.print(
        line(
            "imported ",
            (name, "bold"),
            f" v{info.version}: {len(pb)} bullets in {len(pb.sections)} sections (digest {info.digest[:12]})",
        )
    )


def _name_and_file(first: str, second: Path | None, name_opt: str | None) -> tuple[str, Path]:
    """``NAME FILE``, or ``FILE --name NAME`` (the form of earlier releases, still taken)."""
    if second is not None and name_opt is None:
        return first, second
    if second is None and name_opt is not None:
        return name_opt, Path(first)
    if second is None:
        raise typer.BadParameter("give the name and the file: ace playbook import NAME FILE", param_hint="NAME FILE")
    raise typer.BadParameter("give the name once: ace playbook import NAME FILE (or FILE --name NAME)",
                             param_hint="--name")  # fmt: skip


@app.command()
def show(
    name: str,
    version: VersionOpt = None,
    channel: ChannelOpt = None,
    budget: BudgetOpt = None,
    counters: Annotated[bool, typer.Option(help="Print helpful/harmful counters.")] = True,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Print a playbook as prompt text: what agents read (its serving channel), or --version / --channel."""
    if version is None and channel is None:
        channel = SERVING
    pb = open_store(db).load(name, version, namespace=namespace, channel=channel)
    print_text(render(pb, counters=counters, budget=budget))


@app.command()
def channels(
    name: str,
    log: Annotated[bool, typer.Option("--log", help="Every move of the channels instead, oldest first.")] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Where the playbook's channels point: candidate (the head, where learning commits), serving (what agents read:
    the head until it is moved) and any other; --log for who moved them, when and why."""
    store = open_store(db)
    if log:
        moves = store.channel_log(name, namespace=namespace)
        if as_json:
            print_json([m.to_dict() for m in moves])
            return
        t = table("channel", "to", "from", "author", "reason", "when (UTC)")
        for m in moves:
            to = f"v{m.version}" if m.version is not None else "the head"
            before = f"v{m.previous}" if m.previous is not None else "the head"
            add_row(t, m.channel, to, before, m.author or "", m.reason or "", m.created_at.strftime("%Y-%m-%d %H:%M"))
        out.print(t)
        return
    found = store.channels(name, namespace=namespace)
    if as_json:
        print_json([c.to_dict() for c in found])
        return
    t = table("channel", "version", "follows the head")
    for c in found:
        add_row(t, c.name, c.version, "yes" if c.follows_head else "no")
    out.print(t)
    from ace.governance import gate  # the trials' decisions (gated promotion), when the playbook has any

    if trials := gate.list_trials(store, name, namespace=namespace, limit=5):
        out.print(f"policy {store.promotion(name, namespace=namespace)}; latest trials (ace playbook lane {name}):")
        for tr in trials:
            out.print(f"  #{tr.id} v{tr.candidate} against v{tr.serving}: {tr.status}" + (f": {tr.note}" if tr.note
                                                                                         else ""))  # fmt: skip


@app.command()
def promote(
    name: str,
    version: Annotated[
        int | None, typer.Argument(min=1, max=MAX_INT, help="The version to serve; none with --follow-head.")
    ] = None,
    channel: Annotated[str, typer.Option("--channel", help="The channel to move.")] = SERVING,
    follow_head: Annotated[
        bool, typer.Option("--follow-head", help="Let the channel follow the head again (no VERSION).")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the channel's log).")] = None,
    expected: Annotated[
        int | None,
        typer.Option("--expected", min=1, max=MAX_INT, help="The version the channel must point at now."),
    ] = None,
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Point a channel (serving: what agents read) at VERSION, or let it follow the head again (--follow-head).
    The move is logged with its author and reason (ace playbook channels NAME --log)."""
    if (version is None) != follow_head:
        raise typer.BadParameter("give a VERSION, or --follow-head (not both)", param_hint="VERSION")
    who = author or f"user:{_user()}"
    store = open_store(db)
    info = store.move_channel(name, channel, version, namespace=namespace, author=who, reason=reason, expected=expected)
    where = "follows the head" if info.follows_head else f"points at v{info.version}"
    out.print(line((name, "bold"), f": {channel} {where}"))


@app.command()
def history(
    name: str,
    since: Annotated[int, typer.Option("--since", min=1, max=MAX_INT, help="First version to list.")] = 1,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """List the versions, oldest first (from --since, at most --limit of them)."""
    versions = open_store(db).history(name, namespace=namespace, since=since, limit=limit)
    if as_json:
        print_json([h.to_dict() for h in versions])
        return
    t = table("v", "change", "bullets", "author", "message", "when (UTC)", "digest")
    for h in versions:
        change = ops_summary(h) if h.kind == "delta" else h.kind
        when = h.created_at.strftime("%Y-%m-%d %H:%M")
        add_row(t, h.version, change, h.n_bullets, h.author or "", h.message or "", when, h.digest[:8])
    out.print(t)


@app.command("diff")
def diff_(
    name: str,
    v1: Annotated[int, typer.Argument(min=1, max=MAX_INT)],
    v2: Annotated[int, typer.Argument(min=1, max=MAX_INT)],
    db: DbOpt = None,
    as_json: JsonOpt = False,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Show bullets added, removed and changed from version V1 to V2."""
    d = open_store(db).diff(name, v1, v2, namespace=namespace)
    if as_json:
        print_json(d.to_dict())
    else:
        print_diff(d)


@app.command("apply")
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
    force: Annotated[
        bool, typer.Option("--force", help="Commit even when the collapse detectors raise a critical alert.")
    ] = False,
    no_quality: Annotated[
        bool,
        typer.Option(
            "--no-quality", help="Let in text the quality gate rejects (fragments, numbers alone, injections)."
        ),
    ] = False,
) -> None:
    """Apply a delta as a new version (all operations or none), judged first as the loop's guard judges: a
    critical alert (a collapse, erased meaning, an injection) refuses it unless --force."""
    from ace.collapse import Detectors

    delta = Delta.parse(read_input(delta_file, what="delta file"))
    store = open_store(db, policy=ApplyPolicy(quality=None) if no_quality else None)
    base = store.head_version(name, namespace=namespace)
    if expected_version is not None and expected_version != base:
        raise StaleVersionError(name, expected_version, base)
    before = store.load(name, base, namespace=namespace)
    after = apply(before, delta, policy=store.policy).playbook  # a bad delta is refused here, nothing written
    alerts = Detectors().check(before, after, versions=(base, base + 1))
    for a in alerts:
        out.print(
            line((f"  {a.severity}", "red" if a.severity == "critical" else "yellow"), f" {a.detector}: {a.message}")
        )
    if any(a.severity == "critical" for a in alerts) and not force:
        fail("refused: the delta raises a critical alert (above); nothing was written. Use --force to commit anyway")
        raise typer.Exit(1)
    info = store.commit(
        name,
        delta,
        namespace=namespace,
        expected_version=base,  # what was judged is what lands: a head that moved since is a stale-version error
        author=author,
        message=message or delta.reasoning,
    )
    out.print(
        line(
            (name, "bold"),
            f" v{info.version}: {ops_summary(info)} → {info.n_bullets} bullets (digest {info.digest[:12]})",
        )
    )


@app.command()
def rollback(
    name: str,
    version: Annotated[int, typer.Argument(min=1, max=MAX_INT)],
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
    message: MessageOpt = None,
) -> None:
    """Make an old version the head again, as a new version (history is kept)."""
    store = open_store(db)
    before = store.head_version(name, namespace=namespace)
    info = store.rollback(name, version, namespace=namespace, author=author, message=message)
    if info.version == before:
        out.print(line((name, "bold"), f" v{info.version} has the state of v{version} already: nothing to roll back"))
        return
    out.print(
        line((name, "bold"), f" v{info.version}: rolled back to the state of v{version} ({info.n_bullets} bullets)")
    )
    serving = store.resolve(name, SERVING, namespace=namespace)
    if serving != info.version:  # the head moved, what agents read did not: say so
        serve = f"ace playbook promote {name} {info.version}"
        out.print(f"serving (what agents read) stays at v{serving}: {serve} serves this state")


@app.command()
def export(
    name: str,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"One of {', '.join([*FORMATS, *AGENT_FORMATS])}.")
    ] = "ace",
    version: VersionOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", "--out", help="Write here instead of stdout ('-': stdout); for skill, the skill's folder."
        ),
    ] = None,
    counters: Annotated[bool, typer.Option(help="Write helpful/harmful counters (ace format).")] = True,
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="Channel to read (default: the head; serving for skill and agents-md)."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="The skill's description (skill; default: says what it is).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="skill, agents-md: replace an existing SKILL.md or --out file.")
    ] = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Export a playbook as ACE text, JSON (lossless), Markdown, a kayba skillbook, an Agent Skills folder (skill:
    SKILL.md with the version and digest in its front matter) or a block for AGENTS.md / CLAUDE.md (agents-md)."""
    store = open_store(db)
    if fmt in AGENT_FORMATS:
        export_agent_file(store, name, fmt, namespace=namespace, version=version, channel=channel, output=output,
                          description=description, force=force)  # fmt: skip
        return
    if version is not None and channel is not None:
        raise typer.BadParameter("give --version or --channel, not both", param_hint="--version")
    if channel is not None:
        version = store.resolve(name, channel, namespace=namespace)
    pb = store.load(name, version, namespace=namespace)
    text = to_ace(pb, counters=False) if fmt == "ace" and not counters else dumps(pb, fmt)
    if output and str(output) != "-":
        write_atomically(output, text, protect=sqlite_file(store.url))
        err.print(f"wrote {output}")
    else:
        print_text(text)


@app.command()
def blame(
    name: str, bullet_id: str, as_json: JsonOpt = False, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE
) -> None:
    """List the versions that touched a bullet, with their provenance."""
    entries = open_store(db).blame(name, bullet_id, namespace=namespace)
    if not entries:
        raise AceError(f"no version of {name!r} touched a bullet with id {bullet_id!r}")
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    t = table("v", "op", "provenance", "author", "message", "when (UTC)")
    for e in entries:
        s = e.source
        fields = () if s is None else (("task", s.task_id), ("step", s.step), ("run", s.run_id))
        where = [f"{k} {v}" for k, v in fields if v is not None]
        provenance = " · ".join([*where, *([s.role] if s and s.role else [])])
        when = e.created_at.strftime("%Y-%m-%d %H:%M")
        add_row(t, e.version, e.op, provenance, e.author or "", e.message or "", when)
    out.print(t)


@app.command("list")
def list_(
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
) -> None:
    """List stored playbooks."""
    found = open_store(db).list(namespace)
    if as_json:
        print_json([p.to_dict() for p in found])
        return
    t = table("namespace", "name", "head", "created (UTC)")
    for p in found:
        add_row(t, p.namespace, p.name, str(p.head), p.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    out.print(t)


@app.command()
def verify(
    name: str,
    since: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_INT,
            help="Start at the nearest snapshot at or below this version (what was not checked yet).",
        ),
    ] = 1,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Rebuild every version from the log and check each against its recorded digest."""
    n = open_store(db).verify(name, namespace=namespace, since=since)
    if as_json:
        print_json({"ok": True, "versions": n})
        return
    out.print(line(("ok", "green"), f": {n} versions of {name!r} rebuild to their recorded digests"))


@app.command()
def dedup(
    name: str,
    threshold: Annotated[
        float,
        typer.Option(min=-1.0, max=1.0, help="Cosine similarity at or above which bullets are duplicates."),
    ] = 0.9,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the pairs and groups; write nothing.")] = False,
    show: Annotated[int, typer.Option(min=0, help="How many of the most similar pairs to list.")] = 20,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    author: AuthorOpt = None,
) -> None:
    """Merge near-duplicate bullets (by embedding) into their most useful one, as a new version."""
    from ace.llm.embeddings import MiniLMEmbedder  # onnxruntime loads only for this command
    from ace.loop.refine import EmbeddingIndex, plan_dedup

    st = open_store(db)
    head = st.head(name, namespace=namespace)
    pb = st.load(name, head.version, namespace=namespace)
    plan = plan_dedup(pb, EmbeddingIndex(MiniLMEmbedder()), threshold)
    t = table("cosine", "id", "content", "id", "content")
    for p in plan.pairs[:show]:
        add_row(t, f"{p.similarity:.3f}", p.a, pb[p.a].content[:60], p.b, pb[p.b].content[:60])
    if plan.pairs:
        out.print(t)
    out.print(
        f"{len(plan.pairs)} pairs at cosine >= {threshold} in {len(plan.groups)} groups; merging them takes "
        f"{name} v{head.version} from {plan.before} to {plan.after} bullets"
    )
    if dry_run or not plan.groups:
        out.print("dry run: nothing written" if dry_run else "nothing to merge")
        return
    info = st.commit(
        name,
        plan.delta,
        namespace=namespace,
        expected_version=head.version,
        author=author or "ace dedup",
        message=f"merge near-duplicates (cosine >= {threshold})",
    )
    out.print(line((name, "bold"), f" v{info.version}: {ops_summary(info)} → {info.n_bullets} bullets"))


@app.command()
def check(
    name: str,
    since: Annotated[
        int, typer.Option("--since", "--from", min=1, max=MAX_INT, help="First version to check (--from: old name).")
    ] = 1,
    probes: Annotated[
        Path | None, typer.Option(help="A text file of probe facts, one per line, that must stay known.")
    ] = None,
    embeddings: Annotated[bool, typer.Option(help="Match rewritten bullets by embedding (slower).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 2 if any alert is critical.")] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Run the collapse detectors over a playbook's history and list the alerts."""
    from ace.collapse import Detectors

    st = open_store(db)
    history = st.history(name, namespace=namespace, since=_at_most_head(st, name, since, namespace))
    lines = read_input(probes, what="probes file").splitlines() if probes else []
    detectors = Detectors(probes=[p.strip() for p in lines if p.strip()])
    if embeddings:
        from ace.llm.embeddings import MiniLMEmbedder
        from ace.loop.refine import EmbeddingIndex

        detectors.similar = EmbeddingIndex(MiniLMEmbedder()).similarity
    alerts = detectors.scan([(h.version, st.load(name, h.version, namespace=namespace)) for h in history])
    critical = any(a.severity == "critical" for a in alerts)
    if as_json:
        print_json({"versions": [history[0].version, history[-1].version], "alerts": [a.to_dict() for a in alerts]})
        if strict and critical:
            raise typer.Exit(2)
        return
    if not alerts:
        out.print(line(("ok", "green"), f": no alerts over versions {since}..{history[-1].version} of {name!r}"))
        return
    t = table("versions", "detector", "severity", "message")
    for a in alerts:
        style = "red" if a.severity == "critical" else "yellow"
        add_row(t, a.shown(), a.detector, line((a.severity, style)), a.message)
    out.print(t)
    if strict and any(a.severity == "critical" for a in alerts):
        raise typer.Exit(2)


@app.command()
def trajectory(
    name: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="The trajectory file to write.")],
    since: Annotated[
        int, typer.Option(min=1, max=MAX_INT, help="First version (the trajectory's starting state).")
    ] = 1,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Write a stored history as a trajectory file (ace-trajectory/2) that `ace replay` verifies."""
    from ace.runs.trajectory import export

    st = open_store(db)
    n = export(st, name, output, namespace=namespace, since=_at_most_head(st, name, since, namespace))
    out.print(f"wrote {n} steps to {output}")


@app.command("branch")
def branch_(
    name: str,
    branch: Annotated[
        str, typer.Argument(metavar="BRANCH", help="The branch's name: a new playbook in the same namespace.")
    ],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Branch from this version, channel (serving) or tag (default: the head)."),
    ] = None,
    author: AuthorOpt = None,
    message: MessageOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Branch a playbook: BRANCH is a new playbook whose version 1 is NAME at --from. Learn on it by its name (ace
    learn --playbook BRANCH, workers, the service); ace playbook merge BRANCH --into NAME brings it back."""
    store = open_store(db)
    version = store.resolve(name, from_, namespace=namespace) if from_ is not None else None
    who = author or f"user:{_user()}"
    info = store.branch(name, branch, from_version=version, namespace=namespace, author=who, message=message)
    if as_json:
        print_json(info.to_dict())
        return
    out.print(line((branch, "bold"), f": branched from {name}@v{info.fork_version}; merge it back with "
                   f"ace playbook merge {branch} --into {name}"))  # fmt: skip


@app.command()
def branches(name: str, as_json: JsonOpt = False, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """List the branches of a playbook, with the version each was branched from and how far it was merged back."""
    found = open_store(db).branches(name, namespace=namespace)
    if as_json:
        print_json([b.to_dict() for b in found])
        return
    t = table("branch", "from", "head", "merged", "into", "left out", "created (UTC)")
    for b in found:
        merged = f"v{b.merged}" if b.merged is not None else ""
        into = f"v{b.merged_into}" if b.merged_into is not None else ""
        add_row(t, b.name, f"v{b.fork_version}", f"v{b.head}", merged, into, str(b.pending) if b.pending else "",
                b.created_at.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    out.print(t)


@app.command()
def merge(
    branch: Annotated[str, typer.Argument(metavar="BRANCH", help="The branch to merge.")],
    into: Annotated[str, typer.Option("--into", help="The playbook BRANCH was branched from.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="What a conflict gets: report (left out and listed; the next merge looks again), ours (the "
            "target's side), theirs (the branch's).",
        ),
    ] = "report",
    embeddings: Annotated[
        bool, typer.Option(help="Find duplicate ADDs by embedding (cosine at --threshold, the same numbers).")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=-1.0, max=1.0, help="Cosine at or above which ADDs are duplicates (--embeddings).")
    ] = 0.9,
    author: AuthorOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Merge what BRANCH learned since its fork (or its last merge) into the playbook it was branched from, as one
    version: three-way by delta, counters add, duplicate ADDs merged, id clashes remapped, conflicts listed."""
    from ace.playbook.merge import STRATEGIES

    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"one of {', '.join(STRATEGIES)}, not {strategy!r}", param_hint="--strategy")
    store, similar = open_store(db), None
    if embeddings:
        from ace.llm.embeddings import MiniLMEmbedder  # onnxruntime loads only for this
        from ace.loop.refine import EmbeddingIndex

        index = EmbeddingIndex(MiniLMEmbedder())
        index.vectors([b.content for b in store.load(into, namespace=namespace)])  # now, not under the write lock
        similar = index.similarity
    who = author or f"user:{_user()}"
    r = store.merge(branch, into=into, namespace=namespace, author=who, strategy=strategy, similar=similar,
                    threshold=threshold)  # fmt: skip
    if as_json:
        print_json(r.to_dict())
        return
    made = f"v{r.version}" if r.version is not None else "no new version"
    out.print(line((into, "bold"), f" {made}: {r.message}"))
    moved = [x for x in r.taken if x.branch_id and x.target_id and x.branch_id != x.target_id and x.op == "ADD"]
    for x in moved:
        out.print(f"  remapped: {x.branch_id} of {branch} is {x.target_id} on {into} (an id the target uses)")
    for d in r.duplicates:
        out.print(f"  duplicate: {d.branch_id} of {branch} merged into {d.into}: {d.content[:80]}")
    if r.conflicts:
        t = table("conflict", "branch", "bullet", "resolution", "why")
        for c in r.conflicts:
            bullet = c.target_id or c.branch_id or ""
            add_row(t, c.kind, f"v{c.version} {c.op}", bullet, c.resolution, c.reason)
        out.print(t)
    if r.pending:
        out.print(f"{len(r.pending)} operation(s) left out: the next merge of {branch} looks at them again "
                  "(--strategy ours or theirs resolves them)")  # fmt: skip


def _at_most_head(store: PlaybookStore, name: str, version: int, namespace: str) -> int:
    """``version``, if the playbook has it (a range that starts past the head is empty: say so, by name)."""
    head = store.head_version(name, namespace=namespace)
    if version > head:
        raise VersionNotFound(name, version, head)
    return version


def _user() -> str:
    """The OS user running the command, as recorded for a forced import (``unknown`` if it cannot be told)."""
    import getpass

    from ace.names import InvalidName, check_name

    try:
        return check_name(getpass.getuser(), "user")
    except (OSError, KeyError, InvalidName):
        return "unknown"
