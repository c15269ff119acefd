"""``ace review list|show|approve|reject`` and ``ace review policy``: what learning added since the version agents
read (the ``serving`` channel), approved or rejected by a person. Under the ``review`` policy, ``serving`` stays
where it is while learning commits to ``candidate`` (the head); under ``immediate`` (the default) it follows the
head and nothing waits. Run from a shell, the CLI acts as its user (recorded as ``user:<login>``, or ``--author``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ace.app.console import add_row, line, table
from ace.cli.options import MAX_INT, AuthorOpt, DbOpt, JsonOpt, NsOpt
from ace.cli.output import AceTyper, open_store, out, print_json, read_input
from ace.store import DEFAULT_NAMESPACE

if TYPE_CHECKING:  # the service layer loads when a review command runs, not with the CLI
    from ace.service.auth import Grant
    from ace.service.core import Service

app = AceTyper(
    help="Review what learning added before agents read it (the review policy): list, show, approve, reject.",
    no_args_is_help=True,
)


def _service(db: str | None, namespace: str, author: str | None) -> tuple[Service, Grant]:
    from ace.cli.playbook import _user
    from ace.service.auth import Grant
    from ace.service.core import Service

    return Service(open_store(db)), Grant.local(author or f"user:{_user()}", [namespace], role="admin")


def _show(pending: dict[str, Any], name: str) -> None:
    waiting = pending["candidate"] - pending["serving"]
    out.print(
        line((name, "bold"), f": policy {pending['policy']}; agents read v{pending['serving']}, learning is at "
             f"v{pending['candidate']}" + (f"; {waiting} version(s) wait for review" if waiting else "; nothing waits"))
    )  # fmt: skip
    if pending["versions"]:
        t = table("v", "author", "message", "from (task · step · run)")
        for v in pending["versions"]:
            src = (v.get("delta") or {}).get("source") or {}
            origin = " · ".join(str(src[k]) for k in ("task_id", "step", "run_id") if src.get(k) is not None)
            add_row(t, v["version"], v["author"] or "", v["message"] or "", origin)
        out.print(t)
    diff = pending.get("diff") or {}
    for b in diff.get("added", []):
        out.print(line(("+ ", "bold green"), f"[{b['id']}] {b['content']}"))
    for b in diff.get("removed", []):
        out.print(line(("- ", "bold red"), f"[{b['id']}] {b['content']}"))
    for c in diff.get("changed", []):
        after = c["after"]
        counters = f" (helpful={after.get('helpful', 0)} harmful={after.get('harmful', 0)})"
        out.print(line(("~ ", "bold"), f"[{c['id']}] {', '.join(c['fields'])}{counters}: {after['content']}"))
    for a in pending["alerts"]:
        out.print(line((f"{a['severity']} ", "bold red"), f"{a['detector']}: {a['message']}"))
    if (gate := pending.get("gate")) is not None:
        out.print(line(("trial ", "bold"), f"#{gate['trial']} of v{pending['candidate']}: {gate['status']}"
                       + (f" ({gate['note']})" if gate["note"] else "")))  # fmt: skip


@app.command("list")
def list_(as_json: JsonOpt = False, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """The namespace's playbooks with versions waiting for review (serving behind the candidate head)."""
    svc, grant = _service(db, namespace, None)
    waiting = []
    for p in svc.list_playbooks(grant, namespace):
        serving = svc.store.resolve(p["name"], "serving", namespace=namespace)
        if serving != p["head"]:
            policy = svc.store.promotion(p["name"], namespace=namespace)
            waiting.append({"name": p["name"], "policy": policy, "serving": serving, "candidate": p["head"],
                            "waiting": p["head"] - serving})  # fmt: skip
    if as_json:
        print_json(waiting)
        return
    t = table("playbook", "policy", "serving", "candidate", "waiting")
    for w in waiting:
        add_row(t, w["name"], w["policy"], w["serving"], w["candidate"], w["candidate"] - w["serving"])
    out.print(t if waiting else "nothing waits for review")


@app.command()
def show(name: str, as_json: JsonOpt = False, db: DbOpt = None, namespace: NsOpt = DEFAULT_NAMESPACE) -> None:
    """What waits for review: each version since serving with where it came from, the diff, the detectors'
    alerts on the change."""
    svc, grant = _service(db, namespace, None)
    pending = svc.pending(grant, namespace, name)
    if as_json:
        print_json(pending)
        return
    _show(pending, name)


@app.command()
def approve(
    name: str,
    version: Annotated[
        int, typer.Argument(min=1, max=MAX_INT, help="The candidate version you reviewed (ace review show): served.")
    ],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the serving channel's log).")] = None,
    only: Annotated[
        list[int] | None,
        typer.Option(
            "--only",
            min=1,
            max=MAX_INT,
            help="Keep only this waiting version (repeat the option); the rest are turned down, with --reason.",
        ),
    ] = None,
    edit: Annotated[
        Path | None,
        typer.Option(
            "--edit", help="A delta you wrote (JSON, as a curator writes it), applied on top before it is served."
        ),
    ] = None,
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Serve VERSION, the candidate version you reviewed (not whatever learning committed after you looked):
    logged as approved, with the versions reviewed. With --only or --edit, a new head is made of what agents read
    now, the versions kept and your edit, and served; the versions left out are turned down (the curator is shown
    them and does not propose them again)."""
    svc, grant = _service(db, namespace, author)
    text = None if edit is None else read_input(edit, what="edit")
    _show(svc.approve(grant, namespace, name, to=version, reason=reason, only=only, edit=text), name)


@app.command()
def reject(
    name: str,
    version: Annotated[
        int,
        typer.Argument(min=1, max=MAX_INT, help="The candidate version you reviewed (refused if learning moved on)."),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the rollback's message).")],
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Turn down what learning added: the head rolls back to what agents read (a new version; the rejected ones
    stay in history with the reason)."""
    svc, grant = _service(db, namespace, author)
    _show(svc.reject(grant, namespace, name, candidate=version, reason=reason), name)


@app.command()
def policy(
    name: str,
    to: Annotated[
        str | None,
        typer.Argument(help="immediate (serving follows the head), review, gated (trials serve) or gated+review."),
    ] = None,
    watch: Annotated[
        bool | None,
        typer.Option("--watch/--no-watch", help="Demote serving when reported outcomes drop after a promotion."),
    ] = None,
    watch_window: Annotated[
        int | None, typer.Option("--watch-window", min=5, max=10_000, help="Outcomes the watch compares.")
    ] = None,
    watch_alpha: Annotated[
        float | None, typer.Option("--watch-alpha", min=1e-9, max=0.5, help="The watch's significance level.")
    ] = None,
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Show or set the playbook's promotion policy: immediate (what learning commits, agents read), review
    (serving waits for a reviewer's approval), gated (a matched trial on the lane serves a better candidate:
    ace playbook lane, ace playbook trial) or gated+review; --watch demotes serving on a drop after a promotion."""
    svc, grant = _service(db, namespace, author)
    if watch is not None or watch_window is not None or watch_alpha is not None:
        on = watch if watch is not None else bool(svc.gate(grant, namespace, name)["watch"]["on"])
        w = svc.set_watch(grant, namespace, name, on=on, window=watch_window, alpha=watch_alpha)["watch"]
        out.print(line((name, "bold"), f": watch {'on' if w['on'] else 'off'} (window {w['window']}, "
                       f"alpha {w['alpha']:g})"))  # fmt: skip
    if to is None:
        out.print(line((name, "bold"), f": policy {svc.store.promotion(name, namespace=namespace)}"))
        return
    _show(svc.set_promotion(grant, namespace, name, to), name)
