"""Options shared by the command groups, and the bounds the numbers the CLI takes are checked against.

A number out of range is a usage error (exit status 2, naming the option) before any store, file or model is
opened: typer's ``min=``/``max=`` on every numeric option (a float range also refuses ``nan`` and ``inf``).
Versions are at least 1 and at most :data:`MAX_INT`, the largest integer SQLite and PostgreSQL store, so no
version can overflow a query; a version past the head is the store's :class:`~ace.store.VersionNotFound`.

The loop's options are not listed here: :func:`loop_options` makes them from :class:`~ace.config.LoopConfig`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import Field, dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar, get_origin, get_type_hints, overload

import typer

from ace.config import LoopConfig, option_names, option_types, options
from ace.errors import ConfigError

MAX_INT = 2**63 - 1  # the largest integer a database column holds: a larger version or count names nothing
MAX_REPLY_TOKENS = 1 << 20  # a reply limit above any model's context
MAX_LOOP = 1 << 20  # a bound on the loop's numbers, above any use


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="ACE_DB",
        show_envvar=True,
        help="SQLAlchemy URL of the store (default: SQLite under ~/.local/share/ace).",
    ),
]
NsOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace (agent or tenant) of the playbook.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", help="Who makes this change (recorded in history).")]
MessageOpt = Annotated[str | None, typer.Option("--message", "-m", help="Why (recorded in history).")]
ChannelOpt = Annotated[
    str | None,
    typer.Option("--channel", help="Channel to read: serving (what agents read, the default), candidate (the head)."),
]
VersionOpt = Annotated[
    int | None, typer.Option("--version", min=1, max=MAX_INT, help="Version to read (default: head).")
]
BudgetOpt = Annotated[
    int | None, typer.Option("--budget", min=0, max=MAX_INT, help="Token budget: keep the most useful bullets.")
]
ReplyTokensOpt = Annotated[
    int, typer.Option("--max-tokens", min=16, max=MAX_REPLY_TOKENS, help="Token limit of each LLM reply.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one document on stdout) instead of a table.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, max=MAX_INT, help="Print at most this many.")]


C = TypeVar("C", bound=LoopConfig)


# -- the loop's options, from LoopConfig ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LoopOptions:
    """The loop options given on a command line (:func:`loop_options`): :meth:`config` applies them."""

    given: dict[str, Any] = field(default_factory=dict)
    base: LoopConfig | None = None  # the command's own starting point (default: LoopConfig's defaults)

    @overload
    def config(self, base: None = None) -> LoopConfig: ...
    @overload
    def config(self, base: C) -> C: ...
    def config(self, base: LoopConfig | None = None) -> LoopConfig:
        """``base`` (default: :class:`LoopConfig`'s defaults) with the options given; a bad one is a usage error."""
        try:
            return replace(base or self.base or LoopConfig(), **self.given)
        except ConfigError as e:
            raise typer.BadParameter(str(e)) from None


def _option(f: Field[Any], kind: Any, *, override: str | None, base: LoopConfig | None) -> Any:
    """The typer option of LoopConfig field ``f``: its name, its doc as help, its bounds; None when not given."""
    flag = "--" + f.name.replace("_", "-")
    value = getattr(base or LoopConfig(), f.name)
    shown = ("on" if value else "off") if kind is bool else value
    default = f"default: the {override}'s" if override else f"default: {shown}"
    info: dict[str, Any] = {"help": f"{f.metadata['doc']} ({default})", "show_default": False}
    if kind is bool:
        param: Any = typer.Option(f"{flag}/--no-{flag[2:]}", **info)
    elif get_origin(kind) is Literal:  # typer offers the choices
        param = typer.Option(flag, **info)
    else:  # an int, or int | None (None, "no limit", is the Python API's; the command line sets a number)
        param = typer.Option(flag, min=f.metadata["min"], max=MAX_LOOP, **info)
        kind = int
    return Annotated[kind | None, param]


def loop_options(
    *names: str, override: str | None = None, base: LoopConfig | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command's options for the :class:`LoopConfig` fields ``names`` (every one if none are named), each made
    from its field (name, type, bounds, doc): the command is called with ``loop``, a :class:`LoopOptions` of those
    given. ``override``: what they override when not given (``"config"``: the run config's ``[loop]``), for the
    help; otherwise the help shows the default of ``base`` (the command's starting point, LoopConfig's defaults if
    None), which :meth:`LoopOptions.config` starts from."""
    chosen = names or option_names()
    by_name = {f.name: f for f in options()}
    kinds = option_types()

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        hints = get_type_hints(func, include_extras=True)
        params = [p for p in sig.parameters.values() if p.name != "loop"]
        for name in chosen:
            hints[name] = _option(by_name[name], kinds[name], override=override, base=base)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hints[name]))
        hints.pop("loop", None)

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {name: v for name in chosen if (v := kwargs.pop(name, None)) is not None}
            return func(*args, loop=LoopOptions(given, base), **kwargs)

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = hints
        return command

    return decorate
