"""ACE: Agentic Context Engineering. Playbooks that evolve by small, versioned deltas.

The names a user needs live here (``tests/test_public_api.py`` holds ``__all__`` to this list):

- the playbook (pure, no I/O): :class:`Playbook`, :class:`Bullet`, :class:`Source`, :class:`Delta`, :func:`apply`,
  :func:`render`, :func:`loads`, :func:`dumps`, :class:`QualityRules`;
- the versioned store: :class:`PlaybookStore`, :class:`StaleVersionError`;
- models: :class:`LLM`, :class:`Budget`, :class:`Ledger`, :class:`Sampling`;
- running the loop: :class:`LoopConfig`, :class:`RunSetup`, :func:`start`;
- collapse: :class:`Detectors`, :class:`CollapseGuard`;
- tiered memory: :class:`Memory`;
- errors: :class:`AceError` (everything raised on purpose derives from it), :class:`DeltaError`.

Everything else is advanced and stays in its subpackage (``ace.store``, ``ace.llm``, ``ace.loop``, ``ace.runs``,
``ace.memory``, ``ace.service``, ...). The playbook names load with ``import ace``; the others load on first use
(``ace.PlaybookStore`` imports SQLAlchemy, ``ace.start`` LangGraph), so ``import ace`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ace.playbook import (
    AceError,
    Bullet,
    Delta,
    DeltaError,
    Playbook,
    QualityRules,
    Source,
    apply,
    dumps,
    loads,
    render,
)

if TYPE_CHECKING:
    from ace.collapse import CollapseGuard, Detectors
    from ace.config import LoopConfig
    from ace.llm import LLM, Budget, Ledger, Sampling
    from ace.memory import Memory
    from ace.runs import RunSetup, start
    from ace.store import PlaybookStore, StaleVersionError

__version__ = "0.1.0"

# name -> module it is loaded from on first use
_LAZY: dict[str, str] = {
    "CollapseGuard": "ace.collapse",
    "Detectors": "ace.collapse",
    "LLM": "ace.llm",
    "Budget": "ace.llm",
    "Ledger": "ace.llm",
    "Sampling": "ace.llm",
    "LoopConfig": "ace.config",
    "Memory": "ace.memory",
    "RunSetup": "ace.runs",
    "start": "ace.runs",
    "PlaybookStore": "ace.store",
    "StaleVersionError": "ace.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LLM",
    "AceError",
    "Budget",
    "Bullet",
    "CollapseGuard",
    "Delta",
    "DeltaError",
    "Detectors",
    "Ledger",
    "LoopConfig",
    "Memory",
    "Playbook",
    "PlaybookStore",
    "QualityRules",
    "RunSetup",
    "Sampling",
    "Source",
    "StaleVersionError",
    "__version__",
    "apply",
    "dumps",
    "loads",
    "render",
    "start",
]
