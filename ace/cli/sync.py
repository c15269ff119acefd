"""``ace sync`` and the file side of agent files: a playbook's channel kept inside ``AGENTS.md`` / ``CLAUDE.md``,
``ace playbook export --format skill|agents-md`` and ``ace playbook import`` of a skill folder, ``SKILL.md`` or a
file with an ace block. The text is made and read by :mod:`ace.playbook.agentfiles` (pure); this module reads and
writes the files: bytes decoded as UTF-8, written back through a temporary file renamed into place (through a
symbolic link to its target, with the file's permissions), never a partial file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ace.app.console import line
from ace.cli.options import MAX_INT, DbOpt, NsOpt
from ace.cli.output import MAX_INPUT_BYTES, err, fail, open_store, out, print_text, read_input
from ace.errors import InputFileError
from ace.playbook import Playbook
from ace.playbook.agentfiles import (
    AgentFile,
    AgentFileError,
    HandEdited,
    Origin,
    find_blocks,
    parse_agents_md,
    parse_skill,
    skill_name,
    sync_block,
    to_agents_md,
    to_skill,
    valid_skill_name,
)
from ace.store import DEFAULT_NAMESPACE, SERVING, PlaybookStore

AGENT_FORMATS = ("skill", "agents-md")
SKILL_FILE = "SKILL.md"


# -- reading and writing files --------------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    """A file's text, decoded as UTF-8 with nothing changed (line endings, a byte-order mark, U+2028 kept)."""
    with path.open("rb") as f:
        data = f.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputFileError(f"{path}: over the limit of {MAX_INPUT_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); nothing was written") from None


def writable_target(path: Path, *, force: bool = False) -> Path:
    """The file ``path`` writes to (through a symbolic link: its target), checked first so that a file that cannot be
    written is one clear line, never an errno naming a temporary file: a directory, a folder that does not exist (a
    dangling link's included), a read-only file (chmod 444: kept unless ``force``)."""
    target = path.resolve() if path.is_symlink() else path
    via = f" (the symbolic link {path} points to {target})" if target != path else ""
    if target.is_dir():
        raise InputFileError(f"{path} is a directory; give a file")
    if not target.parent.is_dir():
        raise InputFileError(f"the folder {target.parent} does not exist{via}; create it first, nothing was written")
    if target.exists() and not force and not target.stat().st_mode & 0o222:
        raise InputFileError(f"{target} is read-only{via}; nothing was written (--force rewrites it, keeping its mode)")
    return target


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 bytes, exactly, through a temporary file beside the target renamed over it: a crash
    leaves the old file or the new one. A symbolic link (``CLAUDE.md`` → ``AGENTS.md``) is written through, and the
    file keeps its permissions (a new one gets the umask's)."""
    target = writable_target(path, force=True)
    if target.exists():
        mode = target.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_for_agents(
    store: PlaybookStore, name: str, *, namespace: str, version: int | None, channel: str | None
) -> tuple[Playbook, Origin]:
    """The playbook an agent file gets (``channel``, ``serving`` when neither it nor ``version`` is given) and
    where it came from."""
    if version is not None and channel is not None:
        raise typer.BadParameter("give --version or --channel, not both", param_hint="--version")
    if version is None and channel is None:
        channel = SERVING
    v, pb = store.load_versioned(name, version, namespace=namespace, channel=channel)
    digest = store.version(name, v, namespace=namespace).digest
    return pb, Origin(name, v, namespace, digest=digest, channel=channel)


# -- export and import (ace playbook export / import) ----------------------------------------------------------------
def export_agent_file(
    store: PlaybookStore,
    name: str,
    fmt: str,
    *,
    namespace: str,
    version: int | None,
    channel: str | None,
    output: Path | None,
    description: str | None = None,
    force: bool = False,
) -> None:
    """``ace playbook export --format skill|agents-md``: a skill folder (``--out DIR``: ``DIR/SKILL.md``) or a
    block, on stdout without ``--out``. A symbolic link is never written through (a cloned repository's
    ``SKILL.md`` → ``~/.bashrc``), and an existing file is replaced only with ``force``."""
    pb, origin = load_for_agents(store, name, namespace=namespace, version=version, channel=channel)
    to_stdout = output is None or str(output) == "-"
    if fmt == "agents-md":
        text = to_agents_md(pb, origin)
        if to_stdout:
            print_text(text)
        else:
            assert output is not None
            _check_export_target(output, force, f"ace sync {output} --playbook {name} keeps the rest of the file")
            write_text(output, text)
            err.print(f"wrote {output} (to keep a block inside a file up to date: ace sync FILE --playbook {name})")
        return
    if to_stdout:
        print_text(to_skill(pb, origin, description=description))
        return
    assert output is not None
    folder = output.parent if output.name == SKILL_FILE else output
    if folder.exists() and not folder.is_dir():
        raise InputFileError(f"{folder} is a file: --out names the skill's folder (it gets {SKILL_FILE})")
    skill = folder.resolve().name
    if not valid_skill_name(skill):
        skill = skill_name(name)
        err.print(
            f"note: the folder name {folder.resolve().name!r} is not a skill name (lowercase letters, digits, single "
            f"hyphens); the skill is named {skill!r}, and Agent Skills expects its folder to be named so"
        )
    text = to_skill(pb, origin, name=skill, description=description)
    _check_export_target(folder / SKILL_FILE, force, "--force replaces it")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / SKILL_FILE, text)
    err.print(f"wrote {folder / SKILL_FILE}: skill {skill!r}, {name} v{origin.version} ({len(pb)} bullets)")


def _check_export_target(path: Path, force: bool, hint: str) -> None:
    """Refuse a symbolic link (always) and an existing file (unless ``force``) as an export's target."""
    if path.is_symlink():
        raise InputFileError(f"{path} is a symbolic link (to {os.readlink(path)}); an export never writes through "
                             "one: remove the link or give another --out. Nothing was written")  # fmt: skip
    if path.is_dir():
        raise InputFileError(f"{path} is a directory; give a file")
    if path.exists() and not force:
        raise InputFileError(f"{path} exists; nothing was written ({hint}; --force replaces the whole file)")


def read_agent_file(file: Path, fmt: str | None, name: str) -> AgentFile | None:
    """The playbook of a skill folder, a ``SKILL.md`` or a file with an ace block; None when ``file`` is none of
    those (and ``fmt`` does not say it is): a playbook file for :func:`~ace.playbook.formats.loads`."""
    if fmt is not None and fmt not in AGENT_FORMATS:
        return None
    if file.is_dir():
        if fmt == "agents-md":
            raise InputFileError(f"{file} is a directory; --format agents-md reads a file")
        file = file / SKILL_FILE
        if not file.exists():
            raise InputFileError(f"{file.parent} has no {SKILL_FILE}: not a skill folder")
        fmt = "skill"
    if fmt is None and file.name != SKILL_FILE:
        text = read_input(file, what="playbook file")
        if not any(raw.startswith("<!-- ace:begin ") for raw in text.split("\n")):
            return None
        try:
            find_blocks(text)
        except AgentFileError:
            return None  # not an agent file after all: the playbook parsers say what is wrong with it
        return parse_agents_md(text, name)
    text = read_text(file)
    if fmt == "agents-md":
        return parse_agents_md(text, name)
    return parse_skill(text)


def agent_import(file: Path, fmt: str | None, name: str, *, force: bool) -> tuple[Playbook | None, str | None]:
    """``ace playbook import`` of an agent file: (the playbook, the version's message), or (None, None) when
    ``file`` is not one. A file edited by hand since ace wrote it is refused unless ``force`` (then the message says
    so)."""
    found = read_agent_file(file, fmt, name)
    if found is None:
        return None, None
    o = found.origin
    said = f"import {file.name}: {o.namespace}/{o.playbook} v{o.version}" + (f" ({o.channel})" if o.channel else "")
    if found.problems and not force:
        raise AgentFileError(f"{file}: {'; '.join(found.problems)}. It is not {o.playbook} v{o.version} as ace wrote "
                             "it; import it anyway with --force")  # fmt: skip
    if found.problems:
        said += "; edited by hand since (forced): " + "; ".join(found.problems)
    return found.playbook, said


# -- ace sync ---------------------------------------------------------------------------------------------------------
def sync(
    file: Annotated[Path, typer.Argument(help="The file to keep the block in (AGENTS.md, CLAUDE.md, ...).")],
    playbook: Annotated[str, typer.Option("--playbook", "-p", help="The playbook whose block it is.")],
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="The channel the block follows (default: serving, what agents read)."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=1, max=MAX_INT, help="Write this version instead of a channel's.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 when the block is missing, out of date or edited (CI)."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a block edited by hand, or rewrite a read-only file.")
    ] = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """Keep a marked block inside FILE equal to a playbook's channel (serving) or --version: replaced in place, or
    added at the end; every byte outside it stays as it was. Running it again changes nothing. A block edited by
    hand is refused unless --force; --check writes nothing and exits 1 when the file is not up to date (a git hook,
    CI)."""
    pb, origin = load_for_agents(open_store(db), playbook, namespace=namespace, version=version, channel=channel)
    where = f"{origin.channel} is v{origin.version}" if origin.channel else f"v{origin.version}"
    if not check:
        writable_target(file, force=force)  # a directory, a missing folder, a read-only file: one clear line first
    elif file.is_dir():
        raise InputFileError(f"{file} is a directory; give a file")
    exists = file.exists()
    text = read_text(file) if exists else ""
    try:
        done = sync_block(text, pb, origin, force=force and not check)
    except HandEdited as e:
        fail(f"{file}: {e.reason.replace('(force to overwrite it)', '(--force overwrites it)')}")
        raise typer.Exit(1) from None
    except AgentFileError as e:
        fail(f"{file}: {e}; nothing was written")
        raise typer.Exit(1) from None
    if done.action == "unchanged":
        out.print(line((str(file), "bold"), f": the block of {playbook} is up to date ({where}); nothing to do"))
        return
    before = done.before
    if check:
        if not exists:
            why = "does not exist"
        elif before is None:
            why = f"has no block of {playbook}"
        elif before.edited:
            why = f"has the block of {playbook} edited by hand"
        else:
            why = f"has {playbook} v{before.version} ({where})"
        how = f" --version {version}" if version is not None else f" --channel {channel}" if channel else ""
        fail(f"{file} {why}; run ace sync {file} --playbook {playbook}{how}", label="out of date")
        raise typer.Exit(1)
    write_text(file, done.text)
    if before is None:
        made = "created with" if not exists else "added"
        out.print(line((str(file), "bold"), f": {made} the block of {playbook} v{origin.version} ({len(pb)} bullets)"))
    else:
        edited = " (it had been edited by hand: --force)" if before.edited else ""
        out.print(
            line((str(file), "bold"), f": the block of {playbook} v{before.version} → v{origin.version} "
                 f"({len(pb)} bullets){edited}")
        )  # fmt: skip


__all__ = ["AGENT_FORMATS", "agent_import", "export_agent_file", "load_for_agents", "read_agent_file", "sync"]
