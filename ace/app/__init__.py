"""The application under the ``ace`` command, apart from the library: the demo (``ace demo``), experiments from a
TOML config (``ace run``), the reports (``ace report``: :mod:`ace.app.run_report` for a run directory,
:mod:`ace.app.collapse_report` for a collapse-benchmark result) and the console every command prints through.

Nothing in the library imports this package; it builds on :mod:`ace.runs` (the run factory and runners) and below.
"""
