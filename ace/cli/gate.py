"""``ace playbook lane`` and ``ace playbook trial``: the evaluation lane a playbook's candidate is tried on, and the
matched trial of the candidate against the serving version (:mod:`ace.governance`). Under the ``gated`` policy a
trial that finds the candidate better serves it; under ``gated+review`` it passes it to a reviewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ace.app.console import add_row, line, table
from ace.cli.options import MAX_INT, AuthorOpt, DbOpt, JsonOpt, NsOpt
from ace.cli.output import out, print_json
from ace.cli.review import _service
from ace.store import DEFAULT_NAMESPACE


def show_gate(found: dict[str, Any], name: str) -> None:
    """The gate as ``ace playbook lane`` prints it: policy, lane, test, campaign, watch, the latest trials."""
    lane = found.get("lane")
    where = "no lane" if lane is None else f"lane {lane['tasks']} ({lane['n']} tasks, evaluator {lane['evaluator']})"
    out.print(line((name, "bold"), f": policy {found['policy']}; {where}"))
    out.print(f"test: {found['test']}, alpha {found['alpha']:g} per campaign ({found['spending']}, "
              f"{found['looks']} looks), minimum effect {found['min_effect']:g}")  # fmt: skip
    if (c := found.get("campaign")) is not None:
        against = "no look yet" if c["serving"] is None else f"against v{c['serving']}"
        promoted = f", promoted v{c['promoted']}" if c["promoted"] is not None else ""
        out.print(f"campaign {c['number']}: {against}, {len(c['spent'])} look(s), alpha spent "
                  f"{c['spent_total']:.4g} of {c['alpha']:g}{promoted}")  # fmt: skip
    w = found["watch"]
    out.print(f"watch: {'on' if w['on'] else 'off'} (window {w['window']}, alpha {w['alpha']:g})")
    if found.get("trials"):
        show_trials(found["trials"])


def show_trials(trials: list[dict[str, Any]]) -> None:
    t = table("trial", "candidate", "serving", "status", "look (alpha)", "p", "effect", "tokens", "note")
    for tr in trials:
        d = (tr.get("decision") or {}).get("decision") or {}
        p = "" if d.get("p_value") is None else f"{d['p_value']:.3g}"
        effect = "" if d.get("effect") is None else f"{d['effect']:+.3f}"
        look = f"{tr['campaign']}.{tr['look']} ({tr['alpha']:.3g})"
        add_row(t, tr["trial"], f"v{tr['candidate']}", f"v{tr['serving']}", tr["status"], look, p, effect,
                tr["tokens"], tr["note"] or "")  # fmt: skip
    out.print(t)


def lane(
    name: str,
    tasks: Annotated[
        Path | None, typer.Option("--tasks", help="The lane's task file (JSONL: input and target per line).")
    ] = None,
    evaluator: Annotated[
        str | None,
        typer.Option("--evaluator", help='How answers are scored: exact, numeric, tags, conventions or {"name": ..}.'),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", min=1e-9, max=0.5, help="The campaign's false-promotion budget.")
    ] = None,
    min_effect: Annotated[
        float | None,
        typer.Option("--min-effect", min=0.0, max=1.0, help="The smallest gain in accuracy that promotes."),
    ] = None,
    test: Annotated[str | None, typer.Option("--test", help="auto, mcnemar or bootstrap.")] = None,
    spending: Annotated[
        str | None, typer.Option("--spending", help="How the campaign spends alpha: bonferroni or series.")
    ] = None,
    looks: Annotated[
        int | None, typer.Option("--looks", min=1, max=1000, help="Looks per campaign (bonferroni).")
    ] = None,
    new_campaign: Annotated[
        bool, typer.Option("--new-campaign", help="Start a new campaign (a fresh alpha budget) now.")
    ] = False,
    as_json: JsonOpt = False,
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Show or set the playbook's evaluation lane (a task file and its evaluator) and the test that gates
    promotion; a change of lane or test starts a new campaign."""
    svc, grant = _service(db, namespace, author)
    settings: dict[str, Any] = {k: v for k, v in (("alpha", alpha), ("min_effect", min_effect), ("test", test),
                                ("spending", spending), ("looks", looks)) if v is not None}  # fmt: skip
    if tasks is not None or evaluator is not None:
        settings.update(tasks=tasks, evaluator=evaluator)
    if new_campaign:
        settings["new_campaign"] = True
    found = svc.set_lane(grant, namespace, name, **settings) if settings else svc.gate(grant, namespace, name)
    if as_json:
        print_json(found)
        return
    show_gate(found, name)


def trial(
    name: str,
    provider: Annotated[
        str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]' (the same for both arms).")
    ] = "local",
    budget_tokens: Annotated[
        int | None,
        typer.Option("--budget-tokens", min=1, max=MAX_INT, help="Stop after this many tokens (run again to go on)."),
    ] = None,
    as_json: JsonOpt = False,
    author: AuthorOpt = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Try the candidate (the head) against the serving version on the lane's tasks, with the same provider and
    sampling, and decide with a paired test; under the gated policy a better candidate is served. A trial that
    stopped (its budget, a provider, a kill) goes on where it was."""
    from ace.llm import LLM

    svc, grant = _service(db, namespace, author)
    report = svc.trial(grant, namespace, name, LLM(provider), budget_tokens=budget_tokens, provider=provider)
    if as_json:
        print_json(report)
        return
    n = report["lane"]["n"]
    resumed = " (resumed)" if report["resumed"] else ""
    out.print(line((name, "bold"), f": trial #{report['trial']}{resumed}: v{report['candidate']} against "
                   f"v{report['serving']} on {n} tasks: {report['status']}"))  # fmt: skip
    answered = report["answered"]
    out.print(f"answered {answered.get('candidate', 0)}/{n} (candidate), {answered.get('serving', 0)}/{n} "
              f"(serving); {report['answered_now']} now, {report['tokens_now']} tokens now, {report['tokens']} in "
              "all")  # fmt: skip
    if report["note"]:
        out.print(report["note"])
    if report["moved"]:
        out.print(line(("serving ", "bold green"), f"now v{report['candidate']}"))


__all__ = ["lane", "show_gate", "show_trials", "trial"]
