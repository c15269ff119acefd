"""Where runs keep their files: the data directory, the files shipped with the project, and the names of a run's
files (derived from its run id, always inside the directory given)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ace.errors import ConfigError

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


def write_atomically(path: str | Path, text: str, *, protect: str | Path | None = None) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place: a full disk or a crash
    leaves the old file (or none), never a partial one. ``protect``: a file that must not be overwritten this
    way (the store's own database), refused with a clear error."""
    target = Path(path)
    if protect is not None and target.resolve() == Path(protect).resolve():
        raise ConfigError(f"{target} is the store's database; choose another file to write")
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for another database."""
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        return Path(path).expanduser() if path and path != ":memory:" else None
    return None


__all__ = ["bundled", "data_dir", "file_stem", "runs_dir", "sqlite_file", "write_atomically"]
