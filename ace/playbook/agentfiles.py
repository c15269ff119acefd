"""Agent files, pure (text in, text out): a playbook as an Agent Skills folder's ``SKILL.md`` and as a marked block
inside ``AGENTS.md`` / ``CLAUDE.md``, and reading both back.

**The block.** A playbook inside any text file is a run of whole lines::

    <!-- ace:begin playbook="support" version="7" digest="sha256:3f0c…" -->
    ## STRATEGIES
    [str-00001] helpful=2 harmful=0 :: Ask for the order number first.
    <!-- ace:end playbook="support" -->

The body is the playbook in the ACE text format (:func:`~ace.playbook.formats.to_ace`, counters included), so it
reads back with the same sections, ids, content and helpful/harmful counters. ``digest`` is the sha256 of the body
(lines joined by ``\\n``, whatever the file's line endings): a body edited by hand no longer matches it, and
:func:`sync_block` refuses to overwrite it unless forced. Markers are recognised only as whole lines at column 0
and outside fenced code blocks; no line of ACE text can look like one (bullet lines start with ``[``, continuation
lines with two spaces, headers with ``## ``), so content such as ``<!-- ace:end -->`` inside a bullet is content.
Names in markers are JSON strings with ``<``, ``>`` and ``&`` escaped, so a name cannot close the comment.

**The skill.** ``SKILL.md`` is YAML front matter (``name``: lowercase letters, digits and single hyphens, at most
64 characters, as the Agent Skills specification asks; ``description``; ``metadata`` with the playbook's name,
namespace, version, digest and channel, all strings), a short heading and introduction, and the block.

What neither carries: neutral counts, provenance, section slugs and the id counter (``--format json`` carries
everything). :func:`sync_block` leaves every byte outside the block as it was; it splits lines on ``\\n`` only, so
``\\r\\n`` files, U+2028 and a missing final newline survive untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from ace.playbook.errors import PlaybookFormatError
from ace.playbook.formats import parse_ace, to_ace
from ace.playbook.model import Playbook

SKILL_FORMAT = "ace.skill/v1"
SKILL_NAME_MAX = 64
DESCRIPTION_MAX = 1024
DEFAULT_NAMESPACE = "default"

_SKILL_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_BEGIN = re.compile(r"<!-- ace:begin (.*) -->")
_END = re.compile(r"<!-- ace:end(?: (.*))? -->")
_ATTR = re.compile(r'\s*([a-z][a-z0-9_-]*)=("(?:[^"\\]|\\.)*")')
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_UNSAFE_TEXT = frozenset(
    {"Cc", "Cf", "Cs", "Zl", "Zp"}
)  # what a one-line value in front matter or a marker may not hold


class AgentFileError(PlaybookFormatError):
    """An agent file (``SKILL.md``, a file with an ace block) that cannot be read or written as asked."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason, line=line, fmt="agent file")
        self.args = (f"line {line}: {reason}" if line else reason,)  # not "agent file playbook: ..."

    def __str__(self) -> str:
        return str(self.args[0])


class HandEdited(AgentFileError):
    """The block's body is not what ace wrote (its digest does not match): refused unless forced."""


@dataclass(frozen=True)
class Origin:
    """Which playbook and version an agent file holds. ``digest`` is the version's digest in the store (the one
    ``ace playbook history`` shows); ``channel`` the channel it was read from, when it was."""

    playbook: str
    version: int
    namespace: str = DEFAULT_NAMESPACE
    digest: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class Block:
    """An ace block found in a text: ``start``/``end`` are offsets of the begin marker's first character and of
    the end of the end marker's line (its line break excluded); ``body`` has ``\\n`` line breaks."""

    start: int
    end: int
    line: int  # 1-based line of the begin marker
    attrs: dict[str, str]
    body: str
    newline: str

    @property
    def playbook(self) -> str:
        return self.attrs.get("playbook", "")

    @property
    def namespace(self) -> str:
        return self.attrs.get("namespace", DEFAULT_NAMESPACE)

    @property
    def version(self) -> int | None:
        v = self.attrs.get("version", "")
        return int(v) if v.isdigit() else None

    @property
    def recorded_digest(self) -> str | None:
        return self.attrs.get("digest")

    @property
    def edited(self) -> bool:
        """The body is not the one its digest was computed from: someone changed it by hand."""
        return self.recorded_digest != body_digest(self.body)


@dataclass(frozen=True)
class Synced:
    """What :func:`sync_block` did: the new text, ``unchanged`` / ``updated`` / ``created``, the block before."""

    text: str
    action: Literal["unchanged", "updated", "created"]
    before: Block | None = None


@dataclass(frozen=True)
class AgentFile:
    """A playbook read back from an agent file, with what the file says it is and why it may not be that."""

    playbook: Playbook
    origin: Origin
    problems: list[str] = field(default_factory=list)  # hand edits found; empty when the file is as ace wrote it
    name: str | None = None  # the skill's name (SKILL.md)
    description: str | None = None


# -- names and digests --------------------------------------------------------------------------------------------
def skill_name(name: str) -> str:
    """An Agent Skills ``name`` for a playbook name: ASCII lowercase letters and digits, runs of anything else made
    one hyphen, no hyphen at either end, at most 64 characters (``"Support Bot v2"`` → ``support-bot-v2``)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:SKILL_NAME_MAX].rstrip("-")
    return slug or "playbook"


def valid_skill_name(name: str) -> bool:
    return len(name) <= SKILL_NAME_MAX and _SKILL_NAME.fullmatch(name) is not None


def body_digest(body: str) -> str:
    """``sha256:<hex>`` of a block body, its line breaks made ``\\n`` first (the digest of what it says, not of how
    an editor ended its lines)."""
    normal = "\n".join(line.removesuffix("\r") for line in body.split("\n"))
    return "sha256:" + hashlib.sha256(normal.encode("utf-8")).hexdigest()


def _one_line(value: str, what: str) -> str:
    for ch in value:
        if unicodedata.category(ch) in _UNSAFE_TEXT:
            raise AgentFileError(
                f"{what} {value[:40]!r} contains U+{ord(ch):04X}: it must be one line of printable text"
            )
    return value


def _quote(value: str) -> str:
    """A JSON string that cannot end an HTML comment or start a tag."""
    return json.dumps(value, ensure_ascii=False).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


# -- the block ------------------------------------------------------------------------------------------------------
def block_body(playbook: Playbook) -> str:
    """The block's body: the playbook as ACE text, counters included, without the final line break."""
    return to_ace(playbook).removesuffix("\n")


def render_block(playbook: Playbook, origin: Origin, *, newline: str = "\n") -> str:
    """The whole block, its markers included, lines ended by ``newline``, without a final line break."""
    body = block_body(playbook)
    attrs = {"playbook": origin.playbook}
    if origin.namespace != DEFAULT_NAMESPACE:
        attrs["namespace"] = origin.namespace
    attrs |= {"version": str(origin.version), "digest": body_digest(body)}
    for k, v in attrs.items():
        _one_line(v, k)
    begin = "<!-- ace:begin " + " ".join(f"{k}={_quote(v)}" for k, v in attrs.items()) + " -->"
    end = (
        "<!-- ace:end "
        + " ".join(f"{k}={_quote(v)}" for k, v in attrs.items() if k in ("playbook", "namespace"))
        + " -->"
    )
    lines = [begin, *(body.split("\n") if body else []), end]
    return newline.join(lines)


def _attrs(text: str, line: int) -> dict[str, str]:
    found: dict[str, str] = {}
    pos = 0
    for m in _ATTR.finditer(text):
        if text[pos : m.start()].strip():
            break
        try:
            found[m.group(1)] = json.loads(m.group(2))
        except ValueError:
            raise AgentFileError(
                f"the marker's {m.group(1)} is not a JSON string: {m.group(2)[:40]}", line=line
            ) from None
        pos = m.end()
    if text[pos:].strip():
        raise AgentFileError(f"cannot read the marker's attributes near {text[pos : pos + 40]!r}", line=line)
    return found


def find_blocks(text: str) -> list[Block]:
    """Every ace block of ``text``, in order. Raises :class:`AgentFileError` for a begin marker without its end,
    an end marker without a begin, or a marker whose attributes cannot be read."""
    blocks: list[Block] = []
    offset, fence, fence_line = 0, "", 0
    open_at: tuple[int, int, dict[str, str], str] | None = None  # (offset, line, attrs, newline)
    body_lines: list[str] = []
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        newline = "\r\n" if raw.endswith("\r") else "\n"
        start, offset = offset, offset + len(raw) + 1
        if open_at is not None:
            if (m := _END.fullmatch(line)) is not None:
                attrs = _attrs(m.group(1) or "", n)
                at, first, begin_attrs, nl = open_at
                for key in ("playbook", "namespace"):
                    if key in attrs and attrs[key] != begin_attrs.get(key):
                        raise AgentFileError(
                            f"the block begun on line {first} ({key} {begin_attrs.get(key)!r}) ends with a marker for "
                            f"{attrs[key]!r}", line=n,
                        )  # fmt: skip
                blocks.append(Block(at, start + len(line), first, begin_attrs, "\n".join(body_lines), nl))
                open_at, body_lines = None, []
            elif _BEGIN.fullmatch(line) is not None:
                raise AgentFileError(f"an ace block begins inside the block begun on line {open_at[1]}", line=n)
            else:
                body_lines.append(line)
            continue
        if fence:  # inside a fenced code block of the file: markers there are examples, not blocks
            if (
                (f := _FENCE.fullmatch(line)) is not None
                and f.group(1)[0] == fence[0]
                and len(f.group(1)) >= len(fence)
                and not f.group(2).strip()
            ):
                fence = ""
            continue
        if (f := _FENCE.fullmatch(line)) is not None and not (f.group(1)[0] == "`" and "`" in f.group(2)):
            fence, fence_line = f.group(1), n
            continue
        if (m := _BEGIN.fullmatch(line)) is not None:
            attrs = _attrs(m.group(1), n)
            if not attrs.get("playbook"):
                raise AgentFileError("an ace:begin marker without a playbook name", line=n)
            open_at = (start, n, attrs, newline)
        elif _END.fullmatch(line) is not None:
            raise AgentFileError("an ace:end marker without an ace:begin before it", line=n)
    if open_at is not None:
        raise AgentFileError(f"the ace block of {open_at[2].get('playbook')!r} has no ace:end marker", line=open_at[1])
    if fence:  # a block written after it would be inside it, where it is not found again
        raise AgentFileError(f"a code fence ({fence}) opened on line {fence_line} is never closed: close it first",
                             line=fence_line)  # fmt: skip
    return blocks


def _find(text: str, playbook: str, namespace: str) -> Block | None:
    mine = [b for b in find_blocks(text) if b.playbook == playbook and b.namespace == namespace]
    if len(mine) > 1:
        lines = ", ".join(str(b.line) for b in mine)
        raise AgentFileError(f"{len(mine)} blocks for playbook {playbook!r} (lines {lines}): keep one")
    return mine[0] if mine else None


def _newline_of(text: str) -> str:
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def sync_block(text: str, playbook: Playbook, origin: Origin, *, force: bool = False) -> Synced:
    """``text`` with the block of ``origin.playbook`` equal to ``playbook`` at ``origin``: replaced in place
    (in the line endings it had), or added at the end (after a blank line, in the file's line endings). Every
    character outside the block stays as it was. A block whose body was edited by hand raises
    :class:`HandEdited` unless ``force``. ``unchanged`` when the block already is the one that would be written."""
    found = _find(text, origin.playbook, origin.namespace)
    if found is None:
        nl = _newline_of(text)
        block = render_block(playbook, origin, newline=nl)
        # after a blank line: the text's own last line break, then one more unless it ends with a blank line
        sep = "" if not text or text.endswith(("\n\n", "\r\n\r\n")) else nl if text.endswith("\n") else nl + nl
        return Synced(text + sep + block + nl, "created")
    if found.edited and not force:
        raise HandEdited(
            f"the block of playbook {origin.playbook!r} (line {found.line}) was edited by hand since ace wrote "
            f"v{found.version}: its body no longer matches its digest; nothing was written (force to overwrite it)",
            line=found.line,
        )
    block = render_block(playbook, origin, newline=found.newline)
    if text[found.start : found.end] == block:
        return Synced(text, "unchanged", found)
    return Synced(text[: found.start] + block + text[found.end :], "updated", found)


def read_block(block: Block) -> Playbook:
    """The playbook in a block's body (an empty playbook for an empty body)."""
    if not block.body.strip():
        return Playbook.empty()
    try:
        return parse_ace(block.body)
    except PlaybookFormatError as e:
        where = block.line + e.line if e.line else block.line
        raise AgentFileError(f"the block of {block.playbook!r}: {e.reason}", line=where) from None


def _origin_of(block: Block) -> Origin:
    version = block.version
    if version is None:
        raise AgentFileError(f"the block of {block.playbook!r} has no version number", line=block.line)
    return Origin(block.playbook, version, block.namespace)


def _block_problems(block: Block) -> list[str]:
    if block.edited:
        return [
            f"the block's body (line {block.line}) does not match its digest {block.recorded_digest}: edited by hand"
        ]
    return []


def parse_agents_md(text: str, playbook: str | None = None) -> AgentFile:
    """The playbook of a file's ace block: the one of ``playbook`` when given and there, else the only one."""
    blocks = find_blocks(text)
    if not blocks:
        raise AgentFileError(
            "no ace block (<!-- ace:begin ... -->): not written by ace sync or export --format agents-md"
        )
    chosen = [b for b in blocks if b.playbook == playbook] if playbook is not None else []
    if len(chosen) != 1:
        if len(blocks) > 1:
            names = ", ".join(repr(b.playbook) for b in blocks)
            raise AgentFileError(
                f"the file holds blocks of {names}: name the one to read (ace playbook import takes the block whose "
                "playbook has the NAME it imports under)"
            )
        chosen = blocks
    block = chosen[0]
    return AgentFile(read_block(block), _origin_of(block), _block_problems(block))


def to_agents_md(playbook: Playbook, origin: Origin) -> str:
    """A block for ``AGENTS.md`` / ``CLAUDE.md`` (what ``ace sync`` keeps in such a file), with a final newline."""
    return render_block(playbook, origin) + "\n"


# -- the skill --------------------------------------------------------------------------------------------------------
def default_description(playbook: Playbook, origin: Origin) -> str:
    n, s = len(playbook), len(playbook.sections)
    return (
        f"Strategies, rules and pitfalls learned from experience by ACE for {origin.playbook!r} (version "
        f"{origin.version}: {n} bullet{'s' * (n != 1)} in {s} section{'s' * (s != 1)}). Use it for the tasks this "
        "playbook was learned on: follow the bullets that apply and cite their ids."
    )


def to_skill(playbook: Playbook, origin: Origin, *, name: str | None = None, description: str | None = None) -> str:
    """``SKILL.md`` for ``playbook``: front matter (``name``: :func:`skill_name` of the playbook's unless given,
    ``description``, ``metadata``), a heading, an introduction and the block."""
    import yaml

    name = name if name is not None else skill_name(origin.playbook)
    if not valid_skill_name(name):
        raise AgentFileError(f"{name!r} is not a skill name: lowercase letters, digits and single hyphens, at most "
                             f"{SKILL_NAME_MAX} characters")  # fmt: skip
    description = " ".join((description or default_description(playbook, origin)).split())
    if not description or len(description) > DESCRIPTION_MAX:
        raise AgentFileError(f"a skill's description is 1 to {DESCRIPTION_MAX} characters, not {len(description)}")
    meta = {
        "ace-format": SKILL_FORMAT,
        "ace-playbook": origin.playbook,
        "ace-namespace": origin.namespace,
        "ace-version": str(origin.version),
        **({"ace-digest": origin.digest} if origin.digest else {}),
        **({"ace-channel": origin.channel} if origin.channel else {}),
    }
    front = {"name": name, "description": _one_line(description, "description"), "metadata": meta}
    for k, v in meta.items():
        _one_line(v, k)
    dumped = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=False)
    if yaml.safe_load(dumped) != front:  # pragma: no cover - a value YAML would not give back
        raise AgentFileError("the skill's front matter would not read back as written")
    shown = origin.playbook if origin.namespace == DEFAULT_NAMESPACE else f"{origin.namespace}/{origin.playbook}"
    intro = (
        f"The playbook {shown!r}, version {origin.version}, learned by ACE (Agentic Context Engineering) from earlier "
        "runs. Each bullet is a strategy, rule or pitfall under its section; `[id]` names it and `helpful=` / "
        "`harmful=` count how often it helped or hurt. Follow the bullets that apply to the task, prefer the ones "
        "that helped more, and cite the ids you used."
    )
    return f"---\n{dumped}---\n\n# {name}\n\n{intro}\n\n{render_block(playbook, origin)}\n"


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    import yaml

    lines = text.removeprefix("\ufeff").split("\n")
    if not lines or lines[0].removesuffix("\r") != "---":
        raise AgentFileError("SKILL.md must begin with YAML front matter ('---' on the first line)", line=1)
    for n, line in enumerate(lines[1:], start=2):
        if line.removesuffix("\r") == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1 : n - 1]))
            except yaml.YAMLError as e:
                raise AgentFileError(f"the front matter is not YAML: {str(e).splitlines()[0]}") from None
            if not isinstance(data, dict):
                raise AgentFileError("the front matter is not a YAML mapping", line=2)
            return data, "\n".join(lines[n:])
    raise AgentFileError("the front matter has no closing '---' line", line=1)


def parse_skill(text: str) -> AgentFile:
    """The playbook of a ``SKILL.md`` written by :func:`to_skill`, with the hand edits found: a body that does not
    match its digest, front matter that names another playbook or version than the block."""
    front, _ = _front_matter(text)
    meta = front.get("metadata")
    if not isinstance(meta, dict) or meta.get("ace-format") != SKILL_FORMAT:
        raise AgentFileError(f"not a skill exported by ace (its metadata has no ace-format: {SKILL_FORMAT})")
    problems: list[str] = []
    name, description = front.get("name"), front.get("description")
    if not isinstance(name, str) or not valid_skill_name(name):
        problems.append(f"the skill's name {name!r} is not a valid Agent Skills name")
    blocks = [b for b in find_blocks(text) if b.playbook == str(meta.get("ace-playbook"))]
    if len(blocks) != 1:
        raise AgentFileError(f"SKILL.md holds {len(blocks)} ace blocks of playbook {meta.get('ace-playbook')!r}, "
                             "not one")  # fmt: skip
    block = blocks[0]
    problems += _block_problems(block)
    said = (str(meta.get("ace-namespace", DEFAULT_NAMESPACE)), str(meta.get("ace-version")))
    if said != (block.namespace, str(block.version)):
        problems.append(f"the front matter says {said[0]}/{meta.get('ace-playbook')} v{said[1]}, the block "
                        f"{block.namespace}/{block.playbook} v{block.version}")  # fmt: skip
    playbook = read_block(block)
    if "ace-digest" in meta and str(meta["ace-digest"]) != playbook.digest():  # 000… reads as a YAML number
        problems.append(f"the front matter's ace-digest {str(meta['ace-digest'])[:12]} is not the block's playbook's "
                        f"digest {playbook.digest()[:12]}")  # fmt: skip
    origin = Origin(
        block.playbook,
        _origin_of(block).version,
        block.namespace,
        digest=str(meta["ace-digest"]) if meta.get("ace-digest") else None,
        channel=str(meta["ace-channel"]) if meta.get("ace-channel") else None,
    )
    return AgentFile(playbook, origin, problems, name if isinstance(name, str) else None,
                     description if isinstance(description, str) else None)  # fmt: skip


__all__ = [
    "DESCRIPTION_MAX",
    "SKILL_FORMAT",
    "SKILL_NAME_MAX",
    "AgentFile",
    "AgentFileError",
    "Block",
    "HandEdited",
    "Origin",
    "Synced",
    "block_body",
    "body_digest",
    "default_description",
    "find_blocks",
    "parse_agents_md",
    "parse_skill",
    "read_block",
    "render_block",
    "skill_name",
    "sync_block",
    "to_agents_md",
    "to_skill",
    "valid_skill_name",
]
