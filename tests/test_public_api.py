"""The public surface (issue #23): ``import ace`` gives the names a user needs, no more, each one resolvable; the
package ships ``py.typed``; ``import ace`` stays cheap (the store and the loop load on first use)."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import ace

DOCUMENTED = {
    # the playbook (pure)
    "Playbook", "Bullet", "Source", "Delta", "apply", "render", "loads", "dumps", "QualityRules",
    # the store
    "PlaybookStore", "StaleVersionError",
    # models
    "LLM", "Budget", "Ledger", "Sampling",
    # running
    "LoopConfig", "RunSetup", "start",
    # collapse and memory
    "Detectors", "CollapseGuard", "Memory",
    # errors
    "AceError", "DeltaError",
    "__version__",
}  # fmt: skip


def test_all_is_the_documented_list() -> None:
    assert set(ace.__all__) == DOCUMENTED
    assert len(ace.__all__) == len(set(ace.__all__))
    assert 15 <= len(DOCUMENTED - {"__version__"}) <= 25


def test_every_name_resolves_to_the_object_its_subpackage_exports() -> None:
    from ace.collapse import CollapseGuard
    from ace.llm import LLM
    from ace.playbook import Delta
    from ace.runs import start
    from ace.store import PlaybookStore

    assert ace.PlaybookStore is PlaybookStore and ace.LLM is LLM and ace.Delta is Delta
    assert ace.start is start and ace.CollapseGuard is CollapseGuard
    for name in ace.__all__:
        assert getattr(ace, name) is not None, name
    assert set(ace.__all__) <= set(dir(ace))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        ace.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("ace.NoSuchThing resolved")


def test_the_package_ships_py_typed() -> None:
    assert (importlib.resources.files("ace") / "py.typed").is_file()


def test_import_ace_does_not_load_the_store_or_the_loop() -> None:
    code = "import sys, ace; print(sorted(m for m in ('sqlalchemy', 'langgraph', 'chromadb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_first_readme_example_imports_from_ace_alone() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    first = readme.split("```python", 1)[1].split("```", 1)[0]
    imports = [line for line in first.splitlines() if line.startswith(("from ", "import "))]
    assert imports and all(line.startswith(("from ace import", "import ace")) for line in imports), imports
