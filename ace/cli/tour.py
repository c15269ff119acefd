"""``ace tour``: the versioned store walked through on a bundled playbook, in a second."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ace.app.console import line
from ace.cli.output import ops_summary, out, print_diff, print_text
from ace.cli.playbook import history
from ace.playbook import Delta, DeltaError, render
from ace.playbook.formats import loads
from ace.runs.workspace import bundled
from ace.store import DEFAULT_NAMESPACE, PlaybookStore, StaleVersionError

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


def tour(
    db: Annotated[
        str | None, typer.Option("--db", help="Store to use (default: a new SQLite file in a temp dir).")
    ] = None,
) -> None:
    """Walk through the playbook store on a bundled playbook: import, delta, bad delta, stale writer, diff, rollback."""
    if db is None:
        db = f"sqlite:///{Path(tempfile.mkdtemp(prefix='ace-tour-')) / 'ace.db'}"
    store = PlaybookStore(db)
    name = "finance"
    out.rule("1. import the bundled starter playbook (version 1)")
    pb = loads(bundled("playbooks/finance.txt").read_text(encoding="utf-8"))
    store.create(name, pb, author="tour", message="import playbooks/finance.txt")
    print_text(render(pb, budget=120))
    out.print(f"(shown under a 120-token budget; the whole playbook has {len(pb)} bullets)", style="dim")

    out.rule("2. a curator's delta lands as version 2")
    delta = Delta.parse(json.dumps(TOUR_DELTA))
    out.print_json(json.dumps(TOUR_DELTA))
    info = store.commit(name, delta, expected_version=1, author="tour")
    out.print(f"v{info.version}: {ops_summary(info)}")

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
        out.print(f"rejected: {e}", style="red")
    out.print(f"head is still v{store.head(name).version}")

    out.rule("4. a stale writer gets a specific error")
    try:
        store.commit(
            name,
            Delta.parse({"operations": [{"type": "TAG", "id": "calc-00001", "tag": "helpful"}]}),
            expected_version=1,
        )
    except StaleVersionError as e:
        out.print(f"rejected: {e}", style="red")

    out.rule("5. diff v1 → v2, blame, rollback")
    print_diff(store.diff(name, 1, 2))
    for entry in store.blame(name, "calc-00002"):
        task = entry.source.task_id if entry.source else "-"
        out.print(
            f"calc-00002 touched in v{entry.version} by {entry.op} (task {task})",
        )
    rb = store.rollback(name, 1, author="tour")
    out.print(f"v{rb.version}: rolled back to v1 (same digest as v1: {rb.digest == store.version(name, 1).digest})")
    store.verify(name)
    out.rule("history")
    history(name, db=db, namespace=DEFAULT_NAMESPACE)
    out.print(
        line(
            "\nStored in ", (db, "bold"), ". Explore it: ", (f"ace playbook show {name} --version 2 --db {db}", "cyan")
        ),
        soft_wrap=True,
    )
