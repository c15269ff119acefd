"""`ace report`'s HTML (ace.app.report_page): one self-contained page with the alerts `ace replay` finds, the step
table and tokens and cost per role; a first-format trajectory labelled with what it cannot prove; an exported history
without an empty accuracy plot; every recorded text escaped."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ace.app.run_report import UnknownPrice, write_run_report
from ace.collapse import Detectors
from ace.llm import PRICES, Usage, cost_usd
from ace.playbook import Delta, parse_ace
from ace.runs.trajectory import export, replay
from ace.store import PlaybookStore

FIXTURE = Path(__file__).parent / "fixtures" / "demo-before-redesign.trajectory.jsonl"


def _self_contained(page: str) -> None:
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_the_fixtures_report_shows_the_three_critical_alerts_replay_finds(tmp_path: Path) -> None:
    found = replay(FIXTURE, detectors=Detectors()).alerts
    critical = [a for a in found if a.severity == "critical"]
    assert len(critical) == 3
    where, files = write_run_report(FIXTURE, tmp_path / "report")
    page = (where / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert page.count('<span class="sev critical">critical</span>') == 3 and "3 critical" in page
    for a in critical:
        assert a.message.replace("'", "&#x27;") in page
    # the first format has no hash chain: said, and never called verified
    assert "not verified as a whole" in page and "has no hash chain" in page and "verified (hash chain" not in page
    # the step table: each task, its answer, outcome, reflection, delta and version
    steps = page.split("<h2>Steps: demo-before-redesign</h2>")[1]
    assert steps.count("<tr><td") == 3 and "tasks:1" in steps and "expected 1.5" in steps and "✗ wrong" in steps
    assert "<b>ADD</b>" in steps and "[S]" in steps and "v4" in steps
    # tokens per role, unpriced without --price
    assert "Tokens and cost per role" in page and "ace report --price MODEL" in page
    assert len(files) >= 5 and (where / "report.md").read_text().count("(critical)") == 3


def test_cost_per_role_at_a_models_list_prices(tmp_path: Path) -> None:
    where, _ = write_run_report(FIXTURE, tmp_path / "priced", price="gpt-4o-mini")
    page = (where / "report.html").read_text(encoding="utf-8")
    expected = cost_usd("gpt-4o-mini", Usage(3315, 646, 0))  # the generator's recorded tokens
    assert expected is not None and f"${expected:.4f}" in page and "all roles" in page
    done = subprocess.run(
        [sys.executable, "-m", "ace.cli", "report", str(FIXTURE), "--out", str(tmp_path / "cli"), "--price", "local"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "$0.0000" in (tmp_path / "cli" / "report.html").read_text()


def test_an_exported_history_gets_no_empty_accuracy_plot_and_its_texts_are_escaped(tmp_path: Path) -> None:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'h.db'}")
    store.create("h", parse_ace("## RULES\n[rul-00001] Read the whole ticket before answering it.\n"))
    hostile = "Escape <img src=x onerror=alert(1)> and </td></table> in the report."
    for i, content in enumerate([hostile, "Quote the order number in every reply to billing."]):
        op = {"type": "ADD", "section": "RULES", "content": content}
        store.commit("h", Delta.parse(json.dumps({"operations": [op], "source": {"task_id": f"t{i}"}})))
    path = tmp_path / "h.trajectory.jsonl"
    assert export(store, "h", path) == 2
    where, files = write_run_report(path, tmp_path / "out")
    assert "accuracy.png" not in {f.name for f in files} and "playbook.png" in {f.name for f in files}
    page = (where / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert "&lt;img src=x onerror=alert(1)&gt; and &lt;/td&gt;&lt;/table&gt;" in page and "<img src=x" not in page
    assert "verified (hash chain and every version&#x27;s digest)" in page and "—" in page
    store.close()


def test_an_unknown_price_is_a_usage_error_naming_the_known_ones_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(UnknownPrice, match=r"no list price is known for 'no-such-model'; known: .*gpt-4o-mini"):
        write_run_report(FIXTURE, tmp_path / "unknown", price="no-such-model")
    assert not (tmp_path / "unknown").exists()
    done = subprocess.run(
        [sys.executable, "-m", "ace.cli", "report", str(FIXTURE), "--out", str(tmp_path / "cli"), "--price", "nosuch"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)
    said = " ".join(done.stderr.split())
    assert "no list price is known for 'nosuch'" in said and all(name in said for name in ("gpt-4o-mini", "local"))
    assert not (tmp_path / "cli").exists() and len(PRICES) > 2


HOSTILE = "<script>alert('r')</script>\"><img src=x onerror=alert(1)> \u202eRTL\u202c zero\u200bwidth | *em* [l](x)"


def _hostile_run(root: Path) -> Path:
    """The fixture in a run directory whose name, trajectory file name, roles and task ids hold markup, a table's
    "|", Markdown and direction-changing characters."""
    run = root / 'xss"><img src=x onerror=alert(7)>|pipe'
    run.mkdir(parents=True)
    lines = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for call in record.get("calls") or []:
            call["role"] = HOSTILE + call["role"]
        if isinstance(record.get("task"), dict):
            record["task"]["id"] = HOSTILE + str(record["task"].get("id"))
        lines.append(json.dumps(record))
    (run / '"><svg onload=alert(8)>\u202e- x.trajectory.jsonl').write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def test_the_markdown_report_writes_every_value_as_text(tmp_path: Path) -> None:
    where, _ = write_run_report(_hostile_run(tmp_path / "runs"), tmp_path / "out")
    md = (where / "report.md").read_text(encoding="utf-8")
    # no tag, no raw direction-changing or invisible character: entities and codes, as the console shows them
    for raw in ("<script", "<img", "<svg", "\u202e", "\u202c", "\u200b"):
        assert raw not in md, raw
    assert "# ACE run report: xss&quot;&gt;&lt;img src=x onerror=alert(7)&gt;\\|pipe" in md
    assert "&quot;&gt;&lt;svg onload=alert(8)&gt;⟨U+202E⟩- x" in md
    assert "⟨U+202E⟩RTL⟨U+202C⟩ zero⟨U+200B⟩width \\| \\*em\\* \\[l\\](x)curator" in md
    # every table row keeps its columns: a "|" in a value is escaped
    for section in md.split("\n## ")[1:]:
        rows = [r for r in section.splitlines() if r.startswith("|")]
        if rows:
            assert {len(re.split(r"(?<!\\)\|", r)) for r in rows} == {len(re.split(r"(?<!\\)\|", rows[0]))}, rows
    # tokens per role once, with the cost column
    assert md.count("## Tokens") == 1 and "| role | calls | input tokens |" in md
    page = (where / "report.html").read_text(encoding="utf-8")
    assert page.count("Tokens and cost per role") == 1 and "<h2>Tokens per role</h2>" not in page


def test_the_html_report_shows_hidden_characters_as_codes(tmp_path: Path) -> None:
    where, _ = write_run_report(_hostile_run(tmp_path / "runs"), tmp_path / "out")
    page = (where / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert not any(ch in page for ch in "\u202e\u202c\u200b\u2028")
    assert "⟨U+202E⟩RTL⟨U+202C⟩ zero⟨U+200B⟩width" in page and "<img src=x" not in page


def test_a_dollar_sign_in_a_runs_names_is_text_in_the_plots(tmp_path: Path) -> None:
    """Matplotlib reads "$...$" in a label as mathtext; a role named "$\\frac{$" would stop the report. Labels are
    plain text."""
    run = tmp_path / "runs" / "price $\\frac{a$ run"
    run.mkdir(parents=True)
    lines = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for call in record.get("calls") or []:
            call["role"] = "$\\frac{$" + call["role"]
        lines.append(json.dumps(record))
    (run / "a $\\x$ b.trajectory.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    where, written = write_run_report(run, tmp_path / "out")
    assert [p for p in written if p.suffix == ".png"] and (where / "report.html").exists()
