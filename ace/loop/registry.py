"""Evaluators and generators by name, so that a recorded run can be rebuilt (``ace replay --provider``) without
the code that rebuilds it importing the environments that define them.

An evaluator or generator that can be rebuilt has a ``spec`` (``{"name": ..., **parameters}``,
:class:`~ace.tasks.Rebuildable`); its module registers a factory under that name. The built-in evaluators
(``numeric``, ``exact``, ``tags``) are registered here. Environments and task families register theirs when
imported, and are found when needed through the ``ace.plugins`` entry points (each names a module to import or a
callable to call): this project declares learning from logs and TextWorld there, and a package of your own can
declare its environment the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module, metadata
from typing import Any, TypeVar

from ace.errors import ConfigError
from ace.llm import LLM
from ace.loop.state import Generator
from ace.tasks import Evaluator, Exact, Numeric, Tags
from ace.tasks.conventions import Conventions

PLUGIN_GROUP = "ace.plugins"
F = TypeVar("F")

EvaluatorFactory = Callable[..., Evaluator]  # (**parameters) -> evaluator
GeneratorFactory = Callable[..., Generator]  # (llm, **parameters) -> generator

_evaluators: dict[str, EvaluatorFactory] = {}
_generators: dict[str, GeneratorFactory] = {}
_plugins_loaded = False
_plugin_problems: list[str] = []


def register_evaluator(name: str, factory: EvaluatorFactory) -> None:
    """Make ``{"name": name, **params}`` rebuild as ``factory(**params)``."""
    _evaluators[name] = factory


def register_generator(name: str, factory: GeneratorFactory) -> None:
    """Make ``{"name": name, **params}`` rebuild as ``factory(llm, **params)``."""
    _generators[name] = factory


def evaluator_from_spec(spec: dict[str, Any]) -> Evaluator:
    """The evaluator a recorded ``spec`` describes."""
    name, params = _split(spec)
    factory = _lookup(_evaluators, "evaluator", name)
    try:
        return factory(**params)
    except TypeError as e:  # a spec whose parameters do not fit its factory
        raise ConfigError(f"evaluator spec {spec!r}: {e}") from None


def generator_from_spec(spec: dict[str, Any], llm: LLM) -> Generator:
    """The generator a recorded ``spec`` describes, calling ``llm``."""
    name, params = _split(spec)
    return _lookup(_generators, "generator", name)(llm, **params)


def registered() -> dict[str, list[str]]:
    _load_plugins()
    return {"evaluators": sorted(_evaluators), "generators": sorted(_generators)}


def _split(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a spec needs a 'name', got {spec!r}")
    return name, {k: v for k, v in spec.items() if k != "name"}


def _lookup(table: dict[str, F], kind: str, name: str) -> F:
    if name not in table:
        _load_plugins()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        why = f" ({'; '.join(_plugin_problems)})" if _plugin_problems else ""
        raise ConfigError(
            f"unknown {kind} {name!r}; registered: {known}{why}. Import the module that registers it, or "
            f"declare it as an {PLUGIN_GROUP!r} entry point"
        )
    return table[name]


def _load_plugins() -> None:
    """Import every ``ace.plugins`` entry point once; one that cannot load (a missing extra) is noted, not fatal."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            target = ep.load() if ":" in ep.value else import_module(ep.value)
        except ImportError as e:
            _plugin_problems.append(f"plugin {ep.name!r} not loaded: {e}")
            continue
        if callable(target):
            target()


register_evaluator("numeric", Numeric)
register_evaluator("exact", Exact)
register_evaluator("tags", Tags)
register_evaluator("conventions", Conventions)


def _judge(**params: Any) -> Evaluator:
    from ace.loop.judge import judge  # the judge calls a model: built only when a spec names it

    return judge(**params)


register_evaluator("judge", _judge)

__all__ = [
    "PLUGIN_GROUP",
    "evaluator_from_spec",
    "generator_from_spec",
    "register_evaluator",
    "register_generator",
    "registered",
]
