"""``ace report RUN``: plots (PNG) and a Markdown report for a collapse-benchmark result
(``benchmarks/collapse/bench_collapse.py --out RUN.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ace.errors import InputFileError, read_input


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def write_report(run: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``retention.png``, ``context_size.png`` and ``report.md`` next to ``run`` (or in ``out_dir``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    src = Path(run)
    try:
        data: dict[str, Any] = json.loads(read_input(src, what="report source"))
        traces = data["traces"]
        scores = data["scores"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputFileError(f"{src}: not a collapse-benchmark result ({e})") from None
    out = Path(out_dir) if out_dir else src.with_suffix("")
    out.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for tr in traces:
        ax.plot(range(1, len(tr["retention"]) + 1), tr["retention"], label=tr["policy"], linewidth=1.2)
    ax.set(xlabel="step", ylabel="share of learned probe facts retained", ylim=(-0.02, 1.02), title="Retention")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "retention.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for tr in traces:
        ax.plot(range(1, len(tr["tokens"]) + 1), tr["tokens"], label=tr["policy"], linewidth=1.2)
    ax.set(xlabel="step", ylabel="context tokens (4 chars/token estimate)", title="Context size", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "context_size.png", dpi=120)
    plt.close(fig)

    lines = [
        f"# Collapse benchmark: {src.name}",
        "",
        "![retention](retention.png)",
        "",
        "![context size](context_size.png)",
        "",
        "## Policies",
        "",
        "| policy | final retention | min retention | final tokens | bullets | collapse events | alerts | "
        "rejected by guard | LLM calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tr in traces:
        lines.append(
            f"| {tr['policy']} | {_fmt(tr['retention'][-1], True)} | {_fmt(min(tr['retention']), True)} | "
            f"{tr['tokens'][-1]} | {tr['bullets'][-1]} | {len(tr['events'])} | {len(tr['alerts'])} | "
            f"{len(tr['rejected'])} | {tr['llm_calls']} |"
        )
    for sev, table in scores.items():
        lines += [
            "",
            f"## Detectors (an alert of at least {sev} counts)",
            "",
            "| detector | precision | recall | F1 | mean delay (steps) | events | false alarms on ACE steps |",
            "|---|---|---|---|---|---|---|",
        ]
        for det, m in table.items():
            lines.append(
                f"| {det} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | "
                f"{_fmt(m['mean_delay'])} | {m['events']} | {_fmt(m['false_alarm_rate_ace'], True)} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


__all__ = ["write_report"]
