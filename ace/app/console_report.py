"""``ace report``'s page for the console's runs (:mod:`ace.service.console.runs`): the console is in the service
layer, below this one, so ``ace serve`` and ``ace ui`` hand it this renderer."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ace.app.run_report import write_run_report


def report_html(path: Path) -> str:
    """The self-contained HTML page ``ace report`` writes for the run directory or trajectory at ``path``, made in a
    temporary directory (the run's own directory is only read) and returned."""
    with tempfile.TemporaryDirectory(prefix="ace-console-report-") as out:
        write_run_report(path, out)
        return (Path(out) / "report.html").read_text(encoding="utf-8")


__all__ = ["report_html"]
