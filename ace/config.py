"""The loop's options as one object: :class:`LoopConfig` is the one definition of every loop option (its name,
type, default, bounds and doc). The TOML ``[loop]`` section (:mod:`ace.app.experiments`), the CLI's options
(:func:`ace.cli.options.loop_options`) and the entry points (``evaluate``, ``learn``, ``Worker``, ``play_series``,
which take a ``config``) all derive from it, so adding a loop option touches this class and the code that uses it,
nothing else. This module imports nothing heavy: the CLI reads it to build its options.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Literal, get_type_hints

from ace.errors import ConfigError, WrongType
from ace.playbook.render import LAYOUTS, Layout


def option(default: Any, doc: str, *, min: int | None = None) -> Any:
    """A loop option: its default, its doc (the CLI's help, the docs) and, for a number, its lower bound."""
    return field(default=default, metadata={"doc": doc, "min": min})


@dataclass
class LoopConfig:
    """The loop's options: one definition, read by the TOML loader, the CLI and every entry point."""

    max_rounds: int = option(3, "Generation attempts per task: a wrong answer is reflected on and retried.", min=1)
    playbook_budget: int | None = option(
        2000, "Tokens of playbook shown to the generator and the curator (none: the whole playbook).", min=0
    )
    learn: bool = option(True, "Reflect, curate and commit after each task (off: eval-only, nothing is committed).")
    ground_truth: bool = option(True, "Show the reflector the target (off: execution feedback only, never the target).")
    batch_size: int = option(
        1, "Tasks whose deltas are proposed against one version and merged (1: one task per step).", min=1
    )
    focus: int = option(
        0, "The bullets most relevant to the question, shown again right before it (0: off; see roles.generate).",
        min=0,
    )  # fmt: skip
    answers: Literal["free", "copy"] = option(
        "free", "'copy': the answer is chosen among spans of the focused bullets (needs focus >= 1); 'free': written."
    )
    curation: Literal["free", "facts"] = option(
        "free",
        "'facts': copy-friendly curation (the lesson as spans copied from question and feedback, an ADD / UPDATE / "
        "NONE choice, bullet text written by code); 'free': the paper's free-text reflection and curator delta.",
    )
    curator_content: Literal["free", "grounded"] = option(
        "free",
        "What the paper's curator (curation 'free') writes as a bullet: 'free', its own words (the quality gate and "
        "the repair judge them); 'grounded', one of the statements code builds from the task, its feedback and the "
        "reflection (question -> target when the target is known, the reflection's insight, the feedback's clauses), "
        "each one the quality gate accepts, and an UPDATE or REMOVE names only a bullet the reflection tagged "
        "harmful: for a model that can choose a bullet but not write one.",
    )
    curator_repairs: int = option(
        1,
        "Times a curator delta the playbook's rules refused (the quality gate, an unknown id) goes back to the "
        "curator with the reason, to be fixed (0: never; the facts curator writes its bullets by code and is never "
        "asked again).",
        min=0,
    )
    supersede: bool = option(
        True,
        "One bullet per fact: a curator ADD that restates a bullet with one value changed (a code, number or quoted "
        "value; a fact bullet's value) becomes an UPDATE of that bullet (the log shows what it replaced), and one "
        "that says a bullet again in other words a helpful TAG of it (ace.playbook.supersede; runs recorded before "
        "it re-execute without).",
    )
    relevance: Literal["words", "bm25"] = option(
        "bm25",
        "How the focused bullets are ranked: 'bm25' (ace.playbook.query.focused: BM25 over stems, stop words left "
        "out, and the phrasing the playbook learned from a fact's several wordings not counted); 'words' (shared "
        "rare words: what runs recorded before re-execute with).",
    )
    wordings: int = option(
        3,
        "Wordings a fact bullet keeps: a question answered by a bullet's value in words it lacks adds them to its "
        "subject (an UPDATE), so that the next question in those words finds it (1: none added; needs supersede).",
        min=1,
    )
    facts_version: Literal[1, 2] = option(
        2,
        "The rules that tell one fact from another when consolidating (ace.playbook.supersede): 2 takes no "
        "sentence's first word in a fact's wordings for a name ('Students sitting the spring Cell Biology final' "
        "names Cell Biology) and takes a question for another wording of a bullet stating its value among the "
        "question's 3 most relevant (not only the first); 1 is what runs recorded before used.",
    )
    roles_version: Literal[1, 2, 3] = option(
        3,
        "The roles' prompts and schemas: 3 never offers the evaluator's own words ('expected ...', 'it replaces "
        "...') as a fact's subject; 2 holds the curator's sections to the playbook's (or a well-formed new name) "
        "with no placeholder in its prompt; 1 and 2 are what runs recorded before used (their re-executions use "
        "them).",
    )
    layout: Layout = option(  # noqa: RUF009 (option() is dataclasses.field with a doc)
        "stable",
        "How the playbook is laid out in the roles' prompts: 'stable' keeps the prompt before the first real edit "
        "byte-identical from step to step (a provider's prompt cache reuses it); 'sections' is the paper's text with "
        "counters inline (what runs recorded before the stable layout existed used).",
    )

    def __post_init__(self) -> None:
        for f in options():
            bound, value = f.metadata["min"], getattr(self, f.name)
            if bound is not None and value is not None and value < bound:
                raise ConfigError(f"{f.name} must be at least {bound}, not {value}")
        if self.answers == "copy" and self.focus < 1:
            raise ConfigError("answers = 'copy' copies from the focused bullets: set focus >= 1")
        if self.answers not in ("free", "copy") or self.curation not in ("free", "facts"):
            raise ConfigError("answers is 'free' or 'copy'; curation is 'free' or 'facts'")
        if self.roles_version not in (1, 2, 3):
            raise ConfigError(f"roles_version is 1, 2 or 3, not {self.roles_version!r}")
        if self.curator_content not in ("free", "grounded"):
            raise ConfigError(f"curator_content is 'free' or 'grounded', not {self.curator_content!r}")
        if self.facts_version not in (1, 2):
            raise ConfigError(f"facts_version is 1 or 2, not {self.facts_version!r}")
        if self.relevance not in ("words", "bm25"):
            raise ConfigError(f"relevance is 'words' or 'bm25', not {self.relevance!r}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout is one of {', '.join(LAYOUTS)}, not {self.layout!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every option by name (what a run records: its trajectory's ``run`` line)."""
        return {f.name: getattr(self, f.name) for f in options()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopConfig:
        """The options of ``data`` (a recorded run's, say), the defaults for the rest; an unknown one is refused."""
        unknown = set(data) - set(option_names())
        if unknown:
            known = ", ".join(option_names())
            raise ConfigError(f"unknown loop option(s) {', '.join(sorted(unknown))}; the options are {known}")
        return cls(**data)


def options() -> tuple[Field[Any], ...]:
    """The fields of :class:`LoopConfig`: name, default, ``metadata["doc"]`` and ``metadata["min"]``."""
    return fields(LoopConfig)


def option_names() -> tuple[str, ...]:
    return tuple(f.name for f in options())


def option_types() -> dict[str, Any]:
    """Each option's type, resolved (``Layout``, ``int | None``, ...)."""
    hints = get_type_hints(LoopConfig)
    return {name: hints[name] for name in option_names()}


# the old keyword names of loop options, kept working (deprecated) for one release
_RENAMED = {"budget": "playbook_budget", "copy": "answers"}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # the default of a deprecated keyword: not given


def legacy_config(config: LoopConfig | None, where: str, default: LoopConfig | None = None, **old: Any) -> LoopConfig:
    """``config`` (else ``default``, else :class:`LoopConfig`'s defaults) with the loop options that ``where`` was
    given one keyword each, the old way: each warns (:class:`DeprecationWarning`); ``budget=`` is
    ``playbook_budget``, ``copy=True`` is ``answers="copy"``. Options left at :data:`UNSET` were not given."""
    given = {k: v for k, v in old.items() if v is not UNSET}
    base = config or default or LoopConfig()
    if not given:
        return base
    warnings.warn(
        f"{where}({', '.join(f'{k}=' for k in given)}) is deprecated: pass config=LoopConfig(...)",
        DeprecationWarning,
        stacklevel=3,
    )
    changes: dict[str, Any] = {}
    for name, value in given.items():
        new = _RENAMED.get(name, name)
        if new not in option_names():
            raise WrongType(f"{where}() got an unexpected keyword argument {name!r}")
        changes[new] = ("copy" if value else "free") if name == "copy" else value
    return replace(base, **changes)


__all__ = ["UNSET", "LoopConfig", "legacy_config", "option", "option_names", "option_types", "options"]
