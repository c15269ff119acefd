"""``ace report RUN`` for a run directory (``ace demo``, ``ace run``, ``ace learn``, TextWorld, re-execution): a
Markdown report and an HTML page with the same content, and PNG plots.

Everything comes from the run's own records, verified as they are read: each ``*.trajectory.jsonl`` is replayed
(its hash chain and every version's digest checked; a file that does not verify is reported, not plotted), and an
``ace run`` directory's ``summary.json`` adds the methods' per-task outcomes (Base, ICL, ACE).

Plots: ``accuracy.png`` (rolling accuracy over steps, one line per learning run and per method, the first half's
accuracy dotted as a baseline), ``playbook.png`` (bullets and estimated tokens per version, the collapse detectors'
alerts marked on the versions they are about), ``roles.png`` (tokens in and out per role), ``counters.png``
(helpful / harmful counts of the most used bullets at the head). Cost per method is in the Methods table when the
run has a ``summary.json`` (``ace run``); trajectories record tokens, not their model: ``price`` names a model of
:data:`ace.llm.PRICES` to price them at, per role.

``report.html`` is one self-contained page (:mod:`ace.app.report_page`: the plots embedded, the alerts, the step
table, tokens and cost per role, the most used bullets with their text); a trajectory in the first format is shown
with what it cannot prove (no hash chain), never as verified. A history exported from a store (``ace playbook
trajectory``) has versions and no outcomes: it gets no accuracy plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ace.app import report_page
from ace.collapse import Detectors
from ace.errors import ConfigError, InputFileError
from ace.llm import PRICES, Usage, cost_usd
from ace.playbook import REPLAY_POLICY, Delta, Playbook, apply, approx_tokens, render
from ace.playbook.formats import from_json_data
from ace.runs.trajectory import load, replay
from ace.visible import markdown_text


@dataclass
class RunTrace:
    """One trajectory, replayed: per step its verdict; per version the playbook's size."""

    name: str
    outcomes: list[bool | None]
    versions: list[int]
    bullets: list[int]
    tokens: list[int]
    roles: dict[str, Usage]
    head: Playbook | None
    problem: str | None = None
    steps: int = 0
    notes: list[str] = field(default_factory=list)
    curated: int = 0  # steps whose curator delta was applied or refused (as ace.runs.runners.curation counts)
    refused: int = 0  # steps whose curator delta the playbook's rules refused at first
    repaired: int = 0  # of those, steps whose delta the curator repaired
    format: str = ""  # the trajectory's format (ace-trajectory/2, or /1: no hash chain)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the collapse detectors' on each step (ace replay's)
    records: list[dict[str, Any]] = field(default_factory=list)  # the step lines as recorded
    calls: dict[str, int] = field(default_factory=dict)  # LLM calls per role


def trace(path: Path) -> RunTrace:
    """Replay ``path`` (verifying it) and collect what the plots need."""
    name = path.name.removesuffix(".trajectory.jsonl")
    checked = replay(path, detectors=Detectors())
    empty = RunTrace(name, [], [], [], [], {}, None, checked.problem, checked.steps, checked.notes)
    if not checked.ok:
        return empty
    t = load(path)
    pb = from_json_data(t.header["state"])
    version = int(t.header["version"])
    tr = RunTrace(name, [], [version], [len(pb)], [_tokens(pb)], {}, pb, None, len(t.steps), t.notes)
    tr.format, tr.records = str(t.header.get("format", "")), t.steps
    tr.alerts = [a.to_dict() for a in checked.alerts]
    for step in t.steps:
        tr.outcomes.append(step.get("correct"))
        tr.curated += bool(step.get("refused") or step.get("delta") is not None)
        if step.get("refused"):
            tr.refused += 1
            tr.repaired += bool(step.get("repaired"))
        for call in step.get("calls") or []:
            u = call.get("usage") or {}
            usage = Usage(int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0)), int(u.get("cached_tokens", 0)))
            role = str(call.get("role", "?"))
            tr.roles[role] = tr.roles.get(role, Usage()) + usage
            tr.calls[role] = tr.calls.get(role, 0) + 1
        if step.get("delta") is not None:
            pb = apply(pb, Delta.model_validate(step["delta"]), policy=REPLAY_POLICY).playbook
            version += 1
            tr.versions.append(version)
            tr.bullets.append(len(pb))
            tr.tokens.append(_tokens(pb))
    tr.head = pb
    return tr


def _curated(t: RunTrace) -> str:
    """The share of curated steps whose delta was refused, and of those repaired ("0 % refused of 47")."""
    if not t.curated:
        return "none curated"
    still = t.refused - t.repaired
    return (f"{t.refused / t.curated:.0%} refused of {t.curated} ({t.refused}), {t.repaired} repaired, "
            f"{still / t.curated:.0%} still refused")  # fmt: skip


def _tokens(pb: Playbook) -> int:
    return approx_tokens(render(pb)) if len(pb) else 0


def rolling(outcomes: list[bool | None], window: int) -> list[float | None]:
    """Accuracy over the last ``window`` judged outcomes at each step (None until one is judged)."""
    out: list[float | None] = []
    for i in range(len(outcomes)):
        judged = [o for o in outcomes[max(0, i - window + 1) : i + 1] if o is not None]
        out.append(sum(judged) / len(judged) if judged else None)
    return out


def _share(outcomes: list[bool | None]) -> float | None:
    judged = [o for o in outcomes if o is not None]
    return sum(judged) / len(judged) if judged else None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


class UnknownPrice(ConfigError):
    """``--price`` names no model of :data:`ace.llm.PRICES` (nothing is written)."""


def check_price(price: str | None) -> None:
    """``price`` if :data:`ace.llm.PRICES` prices it (a name, or a name that starts with one of them), else
    :class:`UnknownPrice` with the names known."""
    if price is not None and cost_usd(price, Usage()) is None:
        raise UnknownPrice(f"no list price is known for {price!r}; known: {', '.join(sorted(PRICES))}")


def write_run_report(
    run_dir: str | Path, out_dir: str | Path | None = None, *, price: str | None = None
) -> tuple[Path, list[Path]]:
    """Write ``report.md``, ``report.html`` (self-contained) and the PNG plots for the run in ``run_dir`` (into
    ``out_dir``, default ``<run_dir>/report``), or for one trajectory file (default ``<file stem>.report`` beside
    it); ``price``: the model whose list prices the recorded tokens are priced at. Returns the report directory and
    the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    with matplotlib.rc_context({"text.parse_math": False}):  # a "$" in a run's name is text, not mathtext
        return _write_run_report(run_dir, out_dir, price=price)


def _write_run_report(
    run_dir: str | Path, out_dir: str | Path | None = None, *, price: str | None = None
) -> tuple[Path, list[Path]]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    check_price(price)
    src = Path(run_dir)
    if src.is_file() and src.name.endswith(".trajectory.jsonl"):  # one run's trajectory (the demo's)
        paths, default_out = [src], src.parent / src.name.replace(".trajectory.jsonl", ".report")
    elif src.is_dir():
        paths, default_out = sorted(src.glob("*.trajectory.jsonl")), src / "report"
    else:
        raise InputFileError(f"{src}: not a run directory or a trajectory (*.trajectory.jsonl)")
    summary: dict[str, Any] | None = None
    if src.is_dir() and (src / "summary.json").is_file():
        try:
            summary = json.loads((src / "summary.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputFileError(f"{src / 'summary.json'}: not JSON ({e})") from None
    if not paths and summary is None:
        raise InputFileError(f"{src}: no trajectory (*.trajectory.jsonl) and no summary.json: nothing to report")
    traces = [trace(p) for p in paths]
    good = [t for t in traces if t.problem is None]
    methods: list[tuple[str, list[bool | None], float]] = []
    for row in (summary or {}).get("rows", []):
        if row.get("outcomes"):
            labels = "" if row.get("labels") in (None, True) else " (no labels)"
            methods.append((f"{row['method']}{labels}", row["outcomes"], float(row.get("cost_usd") or 0.0)))
    out = Path(out_dir) if out_dir else default_out
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    # accuracy over steps
    # only what was judged: an exported history (versions, no tasks) has no outcomes to plot
    curves = [(m[0], m[1]) for m in methods] or [(t.name, t.outcomes) for t in good if _share(t.outcomes) is not None]
    if curves:
        n = max(len(o) for _, o in curves)
        window = max(3, n // 10)
        fig, ax = plt.subplots(figsize=(9, 4.2))
        for label, outcomes in curves:
            ys = [float("nan") if y is None else 100 * y for y in rolling(outcomes, window)]
            line = ax.plot(range(1, len(ys) + 1), ys, label=f"{label} ({_pct(_share(outcomes))})", linewidth=1.4)
            start = _share(outcomes[: max(1, len(outcomes) // 2)])
            if start is not None and not methods:  # a learning run's baseline: how it did in its first half
                ax.axhline(100 * start, color=line[0].get_color(), linestyle=":", linewidth=1,
                           label=f"{label}: first half ({_pct(start)}), the baseline")  # fmt: skip
        ax.set(xlabel="step (task of the stream)", ylabel=f"accuracy, last {window} tasks (%)", ylim=(-3, 103))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Accuracy over steps (rolling)")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "accuracy.png")
    # playbook size per version
    if good:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        ax2 = ax.twinx()
        marked: set[str] = set()
        for t in good:
            ax.plot(t.versions, t.bullets, marker=".", label=f"{t.name}: bullets")
            ax2.plot(t.versions, t.tokens, linestyle="--", label=f"{t.name}: tokens")
            for a in t.alerts:  # the detectors' alerts on the versions they are about
                if a["severity"] in ("critical", "warning") and a["versions"][1] is not None:
                    colour = "tab:red" if a["severity"] == "critical" else "tab:orange"
                    legend = None if a["severity"] in marked else f"{a['severity']} alert"
                    marked.add(a["severity"])
                    ax.axvline(a["versions"][1], color=colour, alpha=0.35, linewidth=2, label=legend)
        ax.set(xlabel="version", ylabel="bullets", title="Playbook size per version")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_ylabel("tokens (4 characters per token, estimated)")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        save(fig, "playbook.png")
    # tokens per role
    roles: dict[str, Usage] = {}
    for t in good:
        for role, u in t.roles.items():
            roles[role] = roles.get(role, Usage()) + u
    if roles:
        names = sorted(roles)
        fig, ax = plt.subplots(figsize=(7, 4))
        ins = [roles[r].input_tokens for r in names]
        outs = [roles[r].output_tokens for r in names]
        ax.bar(names, ins, label="input tokens")
        ax.bar(names, outs, bottom=ins, label="output tokens")
        ax.set(ylabel="tokens", title="Tokens per role (learning runs' recorded calls)")
        ax.legend()
        save(fig, "roles.png")
    # counters of the most used bullets at the head
    heads = [t.head for t in good if t.head is not None and len(t.head)]
    if heads:
        used = sorted(
            ((b.helpful, b.harmful, b.id) for head in heads for b in head if b.helpful or b.harmful), reverse=True
        )[:15]
        if used:
            fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(used) + 1)))
            bar_labels = [u[2] for u in used][::-1]
            ax.barh(bar_labels, [u[0] for u in used][::-1], color="tab:green", label="helpful")
            ax.barh(bar_labels, [-u[1] for u in used][::-1], color="tab:red", label="harmful")
            ax.set(xlabel="harmful ← count → helpful", title="Most used bullets at the head")
            ax.axvline(0, color="black", linewidth=0.8)
            ax.legend(fontsize=8)
            save(fig, "counters.png")

    md, body = _content(src, traces, methods, written, price)
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(body, encoding="utf-8")
    return out, [*written, out / "report.md", out / "report.html"]


def _content(
    src: Path,
    traces: list[RunTrace],
    methods: list[tuple[str, list[bool | None], float]],
    plots: list[Path],
    price: str | None = None,
) -> tuple[str, str]:
    """The report as Markdown and as one self-contained HTML page (:mod:`ace.app.report_page`; every value
    escaped)."""
    sections: list[tuple[str, list[str], list[list[str]]]] = []  # (title, table header, rows)
    if methods:
        rows = []
        for label, outcomes, cost in methods:
            mid = len(outcomes) // 2
            rows.append(
                [
                    label,
                    str(len(outcomes)),
                    _pct(_share(outcomes)),
                    _pct(_share(outcomes[:mid])),
                    _pct(_share(outcomes[mid:])),
                    f"${cost:.4f}",
                ]
            )
        sections.append(("Methods", ["method", "tasks", "accuracy", "first half", "second half", "cost"], rows))
    rows = []
    for t in traces:
        if t.problem:
            rows.append([t.name, str(t.steps), "does not verify: " + t.problem, "", "", "", "", ""])
            continue
        mid = len(t.outcomes) // 2
        rows.append(
            [
                t.name,
                str(t.steps),
                _pct(_share(t.outcomes)),
                _pct(_share(t.outcomes[:mid])),
                _pct(_share(t.outcomes[mid:])),
                f"v{t.versions[0]} → v{t.versions[-1]}, {t.bullets[-1]} bullets",
                _curated(t),
                _checked(t),
            ]
        )
    if rows:
        sections.append(
            (
                "Learning runs (trajectories)",
                ["run", "steps", "accuracy", "first half", "second half", "versions", "curator deltas", "checked"],
                rows,
            )
        )
    cost_rows, price_note = _role_rows(traces, price)
    title = f"ACE run report: {src.name}"
    # every value is written as text: HTML-significant characters as entities, what Markdown acts on escaped, hidden
    # characters as codes (a trajectory and the names of its run are files anyone may have written)
    md = [f"# {markdown_text(title)}", "", f"Source: {markdown_text(src)}", ""]
    for p in plots:
        md += [f"![{markdown_text(p.stem)}]({quote(p.name)})", ""]
    tables = [*sections]
    if cost_rows:
        header = ["role", "calls", "input tokens", "output tokens", "cached input tokens", "cost"]
        tables.append(("Tokens and cost per role", header, cost_rows))
    for name, header, rows in tables:
        md += [f"## {markdown_text(name)}", "", "| " + " | ".join(map(markdown_text, header)) + " |"]
        md += ["|" + "---|" * len(header)]
        md += ["| " + " | ".join(markdown_text(c) for c in r) + " |" for r in rows]
        md.append("")
        if name == "Tokens and cost per role":
            md += [markdown_text(price_note + " Latency is not recorded in trajectories."), ""]
    alerts = [(t.name, a) for t in traces for a in t.alerts]
    if traces:
        md += ["## Alerts", ""]
        md += [
            f"- {markdown_text(n)}: {markdown_text(_shown(a))} {markdown_text(a['detector'])} "
            f"({markdown_text(a['severity'])}): {markdown_text(a['message'])}"
            for n, a in alerts
        ] or ["none"]
        md.append("")
    for t in traces:
        for note in t.notes:
            md += [f"Note on {markdown_text(t.name)}: {markdown_text(note)}", ""]
    pages = [_run_page(t) for t in traces]
    body = report_page.page(title, src, pages, sections, plots, cost_rows, price_note)
    return "\n".join(md) + "\n", body


def _shown(alert: dict[str, Any]) -> str:
    before, after = alert["versions"]
    return f"v{after}" if before is None or before == after else f"v{before} → v{after}"


def _checked(t: RunTrace) -> str:
    """How far a trajectory that replayed was checked: the whole chain, or (an older format) its versions only."""
    if t.notes:
        return "versions rebuilt, digests match; not verified as a whole (" + t.format + ": no hash chain)"
    return "verified (hash chain and every version's digest)"


def _run_page(t: RunTrace) -> report_page.RunPage:
    if t.problem:
        return report_page.RunPage(t.name, t.format, t.problem, False, t.notes, [], [], "—", "", [])
    top = sorted(((b.helpful, b.harmful, b.id, b.content) for b in (t.head or []) if b.helpful or b.harmful),
                 reverse=True)[:15]  # fmt: skip
    return report_page.RunPage(
        t.name, t.format, _checked(t), True, t.notes, t.records, t.alerts, _pct(_share(t.outcomes)),
        f"v{t.versions[0]} → v{t.versions[-1]}, {t.bullets[-1]} bullets", [(i, h, x, c) for h, x, i, c in top],
    )  # fmt: skip


def _role_rows(traces: list[RunTrace], price: str | None) -> tuple[list[list[str]], str]:
    """Per role: calls, tokens and the cost at ``price``'s list prices (unpriced without one)."""
    roles: dict[str, Usage] = {}
    calls: dict[str, int] = {}
    for t in traces:
        for role, u in t.roles.items():
            roles[role] = roles.get(role, Usage()) + u
            calls[role] = calls.get(role, 0) + t.calls.get(role, 0)
    rows = []
    total: float | None = 0.0
    for role in sorted(roles):
        u = roles[role]
        cost = cost_usd(price, u) if price else None
        total = None if cost is None or total is None else total + cost
        rows.append([role, f"{calls[role]:,}", f"{u.input_tokens:,}", f"{u.output_tokens:,}", f"{u.cached_tokens:,}",
                     "—" if cost is None else f"${cost:.4f}"])  # fmt: skip
    if rows and total is not None:
        rows.append(["all roles", f"{sum(calls.values()):,}", "", "", "", f"${total:.4f}"])
    if price:
        note = f"Cost at the list prices of {price!r} (ace.llm.PRICES)."
    else:
        note = "Trajectories record tokens, not their model: ace report --price MODEL prices them."
    return rows, note


__all__ = ["RunTrace", "UnknownPrice", "check_price", "rolling", "trace", "write_run_report"]
