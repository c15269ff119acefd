"""Where runs keep their files: the data directory, the files shipped with the project, and the names of a run's
files (derived from its run id, always inside the directory given)."""

from __future__ import annotations

import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def data_dir() -> Path:
    """``$XDG_DATA_HOME/ace`` (``~/.local/share/ace``): beside the default SQLite store, runs keep their
    checkpoints, trajectories and cassettes under ``runs/``."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "ace"


def runs_dir() -> Path:
    return data_dir() / "runs"


def bundled(relative: str) -> Path:
    """A file shipped with the project (``playbooks/...``, ``examples/...``), in a checkout or an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    for root in (here.parent, here / "_bundled"):
        if (root / relative).is_file():
            return root / relative
    raise FileNotFoundError(f"bundled file {relative!r} not found; install from a full checkout")


def file_stem(run_id: str) -> str:
    """A run id as a file name: ``:`` (the separator of a run's pieces) becomes ``.``, any other character that is
    not a letter, digit, ``.``, ``_`` or ``-`` becomes ``_``, and the name never starts with a dot, so the file
    stays in the directory it is put in."""
    stem = _UNSAFE.sub("_", run_id.replace(":", "."))
    return f"_{stem}" if not stem or stem.startswith(".") else stem


__all__ = ["bundled", "data_dir", "file_stem", "runs_dir"]
