"""The context as data, pure (no I/O): bullets, sections, playbooks, deltas, rendering and formats."""

from ace.errors import AceError
from ace.playbook import query as _query  # noqa: F401 - registers render(query=...) (it builds on render)
from ace.playbook.delta import (
    DEFAULT_POLICY,
    REPLAY_POLICY,
    AddOp,
    Applied,
    ApplyPolicy,
    Delta,
    Merged,
    MergeOp,
    Operation,
    RemoveOp,
    TagOp,
    UpdateOp,
    apply,
    merge_deltas,
)
from ace.playbook.errors import DeltaError, PlaybookFormatError
from ace.playbook.formats import dumps, loads, parse_ace, to_ace
from ace.playbook.model import Bullet, Playbook, Section, Source
from ace.playbook.quality import QualityRules, injection
from ace.playbook.render import approx_tokens, rank, render

__all__ = [
    "DEFAULT_POLICY",
    "REPLAY_POLICY",
    "AceError",
    "AddOp",
    "Applied",
    "ApplyPolicy",
    "Bullet",
    "Delta",
    "DeltaError",
    "MergeOp",
    "Merged",
    "Operation",
    "Playbook",
    "PlaybookFormatError",
    "QualityRules",
    "RemoveOp",
    "Section",
    "Source",
    "TagOp",
    "UpdateOp",
    "apply",
    "approx_tokens",
    "dumps",
    "injection",
    "loads",
    "merge_deltas",
    "parse_ace",
    "rank",
    "render",
    "to_ace",
]
