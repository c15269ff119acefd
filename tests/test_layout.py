"""The documented direction of imports (README, Layout), checked on every module of ``ace/``, function-level imports
included: a package imports only from the layers below it (and from itself)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ACE = Path(__file__).resolve().parent.parent / "ace"

# Lowest first. A package may import from any layer below its own, and from itself.
LAYERS: list[set[str]] = [
    {"errors"},
    {"names", "telemetry", "visible"},
    {"playbook"},
    {"store", "llm", "tasks", "collapse", "config"},
    {"memory"},
    {"loop"},
    {"runs", "governance"},
    {"envs"},
    {"service"},
    {"integrations"},
    {"app"},
    {"cli"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, ace module) for every import of a project module in ``path``, at any depth."""
    package = ".".join(path.relative_to(ACE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            found.append((node.lineno, base))
    return [(line, name) for line, name in found if name == "ace" or name.startswith("ace.")]


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_package_is_placed_in_a_layer() -> None:
    packages = {p.stem if p.is_file() else p.name for p in ACE.iterdir() if not p.name.startswith(("_", "."))}
    packages.discard("py")
    assert packages - {"__init__"} <= set(LAYER), f"place these in LAYERS (and the README): {packages - set(LAYER)}"


def test_imports_follow_the_layers_function_level_imports_included() -> None:
    wrong = []
    for path in sorted(ACE.rglob("*.py")):
        mine = path.relative_to(ACE).parts[0].removesuffix(".py")
        if mine == "__init__":
            continue
        for line, module in _imports(path):
            theirs = _top(module)
            if theirs and theirs != mine and LAYER[theirs] >= LAYER[mine]:
                wrong.append(f"{path.relative_to(ACE.parent)}:{line} imports {module} ({mine} -> {theirs})")
    assert not wrong, "\n".join(wrong)


def test_the_pure_core_imports_nothing_but_the_error_root() -> None:
    for path in sorted((ACE / "playbook").rglob("*.py")):
        outside = [m for _, m in _imports(path) if _top(m) not in ("playbook", "errors")]
        assert not outside, f"{path}: {outside}"


def test_only_the_model_touches_a_playbooks_private_derived_state() -> None:
    """Derived values, the parent link and a bullet's digest are reached through the model's public API
    (``Playbook.derived`` / ``peek_derived`` / ``set_derived`` / ``lineage`` / ``link_parent``,
    ``Bullet.digest`` / ``canonical_with_digest``), never through ``_memo``, ``_parent`` or ``_digest``."""
    private = re.compile(r"\._(memo|parent|digest)\b")
    model = ACE / "playbook" / "model.py"
    found = [
        f"{path.relative_to(ACE.parent)}:{n}: {line.strip()}"
        for path in sorted(ACE.rglob("*.py"))
        if path != model
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if private.search(line)
    ]
    assert not found, "\n".join(found)
