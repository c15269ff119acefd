"""``ace report``'s HTML: one self-contained page (plots embedded as base64 PNG, a stylesheet inline, no script, no
link out) with what a run's records hold: how far each trajectory could be checked, the collapse detectors' alerts,
the step table (task, answer, outcome, reflection, delta, version), tokens and cost per role, and the most used
bullets with their text. Every value is escaped (a trajectory is a file anyone may have written), its invisible and
direction-changing characters shown as codes."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ace.runs.trajectory import reply_field
from ace.visible import html_text

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;background:#f6f7f9;
max-width:1180px;margin:0 auto;padding:10px 22px 40px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:14px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:12.5px}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0 12px}
td,th{border:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-size:12px}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:10px 14px;margin:10px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px}.cards .card{flex:1;min-width:150px;margin:0}
.big{font-size:20px;font-weight:700}.label{color:#667085;font-size:12px;text-transform:uppercase}
.sev{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;background:#e7ebf2}
.critical{background:#fde2e1;color:#b42318;font-weight:700}.warning{background:#fdf0d5;color:#b54708}
.ok{color:#137a3f}.bad{color:#b42318}.note{background:#fff7e0;border-left:4px solid #f0b429;padding:8px 12px}
.problem{background:#fde2e1;border-left:4px solid #b42318;padding:8px 12px}
img{max-width:100%;background:#fff;border:1px solid #e3e6eb;border-radius:6px}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
details summary{cursor:pointer;color:#2f5fd0}
"""
STEP_TEXT = 240  # characters of a task, an answer or a reflection in the step table


def e(value: object) -> str:
    """``value`` escaped, its invisible and direction-changing characters shown as ``⟨U+XXXX⟩`` (as the console's
    pages show them: :mod:`ace.visible`)."""
    return html_text(value)


def cut(value: object, limit: int = STEP_TEXT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more)"


@dataclass
class RunPage:
    """One trajectory as the page shows it."""

    name: str
    format: str
    check: str  # how far it was checked, in words
    ok: bool
    notes: list[str]
    steps: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    accuracy: str
    versions: str
    top: list[tuple[str, int, int, str]]  # (id, helpful, harmful, text) of the most used bullets at the head


def page(
    title: str,
    source: Path,
    runs: Sequence[RunPage],
    tables: Sequence[tuple[str, list[str], list[list[str]]]],
    plots: Sequence[Path],
    roles: Sequence[list[str]],
    price_note: str,
) -> str:
    """The report as one HTML document."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Source: <code>{e(source)}</code></p>",
    ]
    alerts = [a for r in runs for a in r.alerts]
    counts = {s: sum(a["severity"] == s for a in alerts) for s in ("critical", "warning", "info")}
    out.append('<div class="cards">')
    for r in runs:
        state = '<span class="ok">✓</span>' if r.ok else '<span class="bad">✗</span>'
        out.append(f'<div class="card"><div class="label">{e(r.name)}</div><div class="big">{e(r.accuracy)}</div>'
                   f"{state} {e(r.check)}<br>{len(r.steps)} steps · {e(r.versions)}</div>")  # fmt: skip
    if runs:
        out.append(
            f'<div class="card"><div class="label">alerts</div><div class="big">{len(alerts)}</div>'
            f'<span class="sev critical">{counts["critical"]} critical</span> '
            f'<span class="sev warning">{counts["warning"]} warning</span> '
            f'<span class="sev">{counts["info"]} info</span>'
            "</div>"
        )
    out.append("</div>")
    for r in runs:
        for note in r.notes:
            out.append(f'<p class="note"><b>{e(r.name)}</b> ({e(r.format)}): {e(note)}</p>')
        if not r.ok:
            out.append(f'<p class="problem"><b>{e(r.name)}</b> does not verify: {e(r.check)}</p>')
    for p in plots:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        out.append(f'<p><img src="data:image/png;base64,{data}" alt="{e(p.stem)}"></p>')
    if runs:
        out.append("<h2>Alerts</h2>")
        if alerts:
            out.append("<table><tr><th>run</th><th>versions</th><th>severity</th><th>detector</th><th>message</th>"
                       "<th>bullets</th></tr>")  # fmt: skip
            order = {"critical": 0, "warning": 1, "info": 2}
            for r in runs:
                for a in sorted(r.alerts, key=lambda a: (order.get(a["severity"], 3), a["versions"][1] or 0)):
                    before, after = a["versions"]
                    shown = f"v{after}" if before is None or before == after else f"v{before} → v{after}"
                    out.append(
                        f"<tr><td>{e(r.name)}</td><td>{e(shown)}</td>"
                        f'<td><span class="sev {e(a["severity"])}">{e(a["severity"])}</span></td>'
                        f'<td>{e(a["detector"])}</td><td class="text">{e(cut(a["message"], 600))}</td>'
                        f'<td class="mono">{e(", ".join(a["ids"][:8]))}</td></tr>'
                    )
            out.append("</table>")
        else:
            out.append("<p>No alert: the collapse detectors found nothing in any step.</p>")
    for name, header, rows in tables:
        out.append(f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</table>")
    if roles:
        out.append("<h2>Tokens and cost per role</h2><table><tr><th>role</th><th>calls</th><th>input tokens</th>"
                   "<th>output tokens</th><th>cached input</th><th>cost</th></tr>")  # fmt: skip
        out += ["<tr>" + "".join(f'<td class="n">{e(c)}</td>' if i else f"<td>{e(c)}</td>" for i, c in enumerate(row))
                + "</tr>" for row in roles]  # fmt: skip
        out.append(f"</table><p>{e(price_note)} Latency is not recorded in trajectories.</p>")
    for r in runs:
        if r.top:
            out.append(f"<h2>Most used bullets at the head: {e(r.name)}</h2><table><tr><th>id</th><th>helpful</th>"
                       "<th>harmful</th><th>text</th></tr>")  # fmt: skip
            out += [f'<tr><td class="mono">{e(i)}</td><td class="n">{h}</td><td class="n">{x}</td>'
                    f'<td class="text">{e(cut(t, 400))}</td></tr>' for i, h, x, t in r.top]  # fmt: skip
            out.append("</table>")
    for r in runs:
        if r.steps:
            out.append(f"<h2>Steps: {e(r.name)}</h2>")
            out.append(_steps(r.steps))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _steps(steps: list[dict[str, Any]]) -> str:
    """The step table: task → answer → outcome → reflection → delta → version, with each step's tokens."""
    rows = ["<table><tr><th>#</th><th>task</th><th>answer</th><th>outcome</th><th>reflection</th><th>delta</th>"
            "<th>version</th><th>tokens</th></tr>"]  # fmt: skip
    for step in steps:
        calls = step.get("calls") or []
        task = step.get("task") or {}
        answer = reply_field(calls, "generator", "final_answer")
        reflection = reply_field(calls, "reflector", "key_insight") or reply_field(calls, "reflector", "reasoning")
        correct = step.get("correct")
        outcome = "—" if correct is None else ('<span class="ok">✓ right</span>' if correct else
                                               '<span class="bad">✗ wrong</span>')  # fmt: skip
        target = task.get("target")
        if target is not None:
            outcome += f"<br><small>expected {e(cut(target, 80))}</small>"
        if step.get("error"):
            outcome += f'<br><small class="bad">{e(cut(step["error"], 200))}</small>'
        tokens = sum(int((c.get("usage") or {}).get(k, 0)) for c in calls for k in ("input_tokens", "output_tokens"))
        index = step.get("index")
        rows.append(
            f'<tr><td class="n">{e("" if index is None else int(index) + 1)}</td>'
            f'<td><span class="mono">{e(step.get("task_id"))}</span>'
            f'<div class="text">{e(cut(task.get("input")))}</div></td>'
            f'<td class="text">{e(cut(answer))}</td><td>{outcome}</td><td class="text">{e(cut(reflection))}</td>'
            f'<td>{_delta(step.get("delta"))}</td><td class="n">v{e(step.get("version"))}</td>'
            f'<td class="n">{tokens:,} <small>({len(calls)} calls)</small></td></tr>'
        )
    rows.append("</table>")
    return "\n".join(rows)


def _delta(delta: dict[str, Any] | None) -> str:
    if not delta:
        return "<small>no change</small>"
    parts = []
    for op in delta.get("operations") or []:
        kind = str(op.get("type", "?"))
        target = op.get("id") or ", ".join(op.get("ids") or [])
        what = op.get("content") or op.get("tag") or ""
        where = f" [{op['section']}]" if op.get("section") else ""
        parts.append(f'<div><b>{e(kind)}</b> <span class="mono">{e(target)}</span>{e(where)} {e(cut(what, 160))}</div>')
    return "".join(parts) or "<small>empty</small>"


__all__ = ["RunPage", "page"]
