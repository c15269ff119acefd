"""Import and export: ACE text, JSON, Markdown, and kayba ``ace-framework`` skillbook v2 JSON.

What each format carries (and so what a round trip through it keeps):

========== ==================================================================================================
ace        sections (names verbatim, order), bullet ids, content, helpful/harmful counters. Counters are
           optional on import (the paper's released playbooks have none). Blank lines are layout: the
           exporter writes one blank line between sections and none inside one.
json       everything: the lossless form (section slugs, the id counter, neutral counts, steps, provenance,
           merge history, extra fields). ``parse_json(to_json(pb)) == pb`` by digest.
markdown   as ``ace``, formatted as a Markdown list for people to read.
skillbook  kayba ``ace-framework`` schema_version 2: id, section, counters; ``issue``/``insight`` map to
           content, and every other field (keywords, occurrences, timestamps) rides along in ``extra`` so
           that skillbook → playbook → skillbook keeps them. Inactive (soft-deleted) skills are not imported.
========== ==================================================================================================

Parsers raise :class:`PlaybookFormatError` with the line (or key) at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ace.errors import AceError
from ace.playbook.bulk import builds_in_bulk
from ace.playbook.errors import PlaybookFormatError
from ace.playbook.jsonio import JSONLimitError, load_json
from ace.playbook.model import ID_RE, Bullet, Playbook
from ace.playbook.render import render
from ace.playbook.text import IMPORT_MAX_CHARS, clean_text

# Imports are trusted more than curator output (no LLM wrote them) but still bounded.

DEFAULT_SECTION = "GENERAL"

_ACE_BULLET = re.compile(r"\[([^\]\s]+)\] (?:helpful=(\d+) harmful=(\d+) :: )?(.*)")
_MD_BULLET = re.compile(r"- \*\*\[([^\]\s]+)\]\*\* \(helpful (\d+), harmful (\d+)\) (.*)")
_MD_EMPTY = "_(empty)_"
_COUNTER_TYPO = re.compile(r"(?:helpful|harmful)=\S*")  # content that starts like counters that did not parse
MAX_COUNT = 2**31 - 1  # a counter in a file: at most what the store's integer holds


def _bullet(
    bid: str, section: str, content: str, helpful: str | None, harmful: str | None, line: int, fmt: str
) -> Bullet:
    if not ID_RE.fullmatch(bid):
        raise PlaybookFormatError(f"invalid bullet id {bid!r}", line=line, fmt=fmt)
    if helpful is None and (typo := _COUNTER_TYPO.match(content)):  # a hand edit broke the counters
        raise PlaybookFormatError(
            f"bullet {bid}: {typo.group(0).strip()!r} is not a count (counters are 'helpful=N harmful=N :: ')",
            line=line, fmt=fmt,
        )  # fmt: skip
    for what, value in (("helpful", helpful), ("harmful", harmful)):
        if value is not None and (len(value) > 10 or int(value) > MAX_COUNT):
            raise PlaybookFormatError(f"bullet {bid}: {what}={value[:20]} is over {MAX_COUNT:,}", line=line, fmt=fmt)
    try:
        text = clean_text(content, limit=IMPORT_MAX_CHARS)
    except ValueError as e:
        raise PlaybookFormatError(f"bullet {bid}: {e}", line=line, fmt=fmt) from None
    return Bullet(bid, section, text, helpful=int(helpful or 0), harmful=int(harmful or 0))


def _parse_lines(
    text: str, fmt: str, header: re.Pattern[str], bullet: re.Pattern[str], skip: Callable[[str], bool]
) -> Playbook:
    """Shared line parser for the two line formats: headers, bullets, 2-space continuation lines."""
    sections: list[tuple[str, list[Bullet]]] = []
    pending: list[Any] | None = None  # [id, section, content lines, helpful, harmful, line]

    def flush() -> None:
        if pending is not None:
            bid, sec, lines, h, hm, ln = pending
            sections[-1][1].append(_bullet(bid, sec, "\n".join(lines), h, hm, ln, fmt))

    text = text.removeprefix("\ufeff")  # a byte-order mark from an editor is not content
    for n, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.rstrip("\n")
        if pending is not None and line.startswith("  "):
            pending[2].append(line[2:])
            continue
        if not line.strip() or skip(line):
            continue
        if m := header.fullmatch(line):
            flush()
            pending = None
            name = m.group(1).strip()
            if not name:
                raise PlaybookFormatError("section header without a name", line=n, fmt=fmt)
            if any(name == s for s, _ in sections):
                raise PlaybookFormatError(f"section {name!r} appears twice", line=n, fmt=fmt)
            sections.append((name, []))
            continue
        if m := bullet.fullmatch(line):
            flush()
            if not sections:
                sections.append((DEFAULT_SECTION, []))
            pending = [m.group(1), sections[-1][0], [m.group(4)], m.group(2), m.group(3), n]
            continue
        raise PlaybookFormatError(
            f"expected a '## SECTION' header or a '[id] content' bullet, got {line[:60]!r}", line=n, fmt=fmt
        )
    flush()
    try:
        return Playbook.from_sections(sections)
    except ValueError as e:
        raise PlaybookFormatError(str(e), fmt=fmt) from None


# -- ACE text ---------------------------------------------------------------------------------------------
def parse_ace(text: str) -> Playbook:
    """Parse the paper's format; ``helpful=n harmful=m ::`` counters are optional per bullet."""
    return _parse_lines(text, "ace", re.compile(r"## ?(.*)"), _ACE_BULLET, lambda _line: False)


def to_ace(playbook: Playbook, *, counters: bool = True) -> str:
    return render(playbook, counters=counters)


# -- Markdown ---------------------------------------------------------------------------------------------
def to_markdown(playbook: Playbook) -> str:
    out = ["# Playbook", ""]
    by_id = playbook.bullets_by_id
    for sec in playbook.sections.values():
        out += [f"## {sec.name}", ""]
        for i in sec.ids:
            b = by_id[i]
            content = b.content.replace("\n", "\n  ")
            out.append(f"- **[{b.id}]** (helpful {b.helpful}, harmful {b.harmful}) {content}")
        if not sec.ids:
            out.append(_MD_EMPTY)
        out.append("")
    return "\n".join(out)


def parse_markdown(text: str) -> Playbook:
    return _parse_lines(
        text, "markdown", re.compile(r"## (.*)"), _MD_BULLET, lambda line: line == _MD_EMPTY or line.startswith("# ")
    )


# -- JSON (lossless) --------------------------------------------------------------------------------------
def to_json(playbook: Playbook, *, indent: int | None = 2) -> str:
    return json.dumps(playbook.to_dict(), ensure_ascii=False, indent=indent)


@contextmanager
def _malformed(fmt: str, what: str) -> Iterator[None]:
    """Turn the errors a JSON walk can raise into one PlaybookFormatError."""
    try:
        yield
    except PlaybookFormatError:
        raise
    except JSONLimitError as e:
        raise PlaybookFormatError(str(e), fmt=fmt) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        why = str(e) if isinstance(e, AceError) else f"{type(e).__name__}: {e}"  # ours say what is wrong
        raise PlaybookFormatError(f"malformed {what} ({why})", fmt=fmt) from None


@builds_in_bulk
def parse_json(text: str) -> Playbook:
    with _malformed("json", "playbook JSON"):
        return _from_json_data(load_json(text, what="the playbook JSON"))


@builds_in_bulk
def from_json_data(data: Any) -> Playbook:
    """:func:`parse_json` of a value already decoded (with :func:`~ace.playbook.jsonio.load_json`'s limits, e.g.
    a trajectory's starting state): the same checks, without writing it back to text and reading it again."""
    with _malformed("json", "playbook JSON"):
        return _from_json_data(data)


def _from_json_data(data: Any) -> Playbook:
    if not isinstance(data, dict):
        raise PlaybookFormatError(f"expected a JSON object, got {type(data).__name__}", fmt="json")
    if data.get("format") != "ace.playbook/v1":
        raise PlaybookFormatError(f"unknown format {data.get('format')!r}; expected 'ace.playbook/v1'", fmt="json")
    sections = []
    for s in data["sections"]:
        name = s["name"]
        # the content is checked by from_sections (as stored text: what clean_text would make of it)
        bullets = [Bullet.from_dict({**row, "section": name}) for row in s["bullets"]]
        sections.append((name, bullets, s.get("slug")))
    return Playbook.from_sections(sections, next_id=int(data["next_id"]))


# -- kayba ace-framework skillbook v2 ---------------------------------------------------------------------
_SKILL_KEYS = ("id", "section", "issue", "insight", "helpful_count", "harmful_count", "neutral_count", "active")


def _skill_content(issue: str, insight: str | None) -> str:
    return issue if not insight else f"{issue}\n{insight}"


@builds_in_bulk
def parse_skillbook(text: str) -> Playbook:
    with _malformed("skillbook", "skillbook"):
        data = load_json(text, what="the skillbook")
        if str(data.get("schema_version")) != "2":
            raise PlaybookFormatError("expected a kayba skillbook with schema_version 2", fmt="skillbook")
        skills = data["skills"]
        order: dict[str, list[str]] = data.get("sections") or {}
        if not order:
            for sid, s in skills.items():
                order.setdefault(s["section"], []).append(sid)
        sections = []
        for name, ids in order.items():
            bullets = []
            for sid in ids:
                s = skills[sid]
                if not s.get("active", True):
                    continue
                content = clean_text(_skill_content(s["issue"], s.get("insight")), limit=IMPORT_MAX_CHARS)
                extra = {k: v for k, v in s.items() if k not in _SKILL_KEYS}
                extra["issue"], extra["insight"] = s["issue"], s.get("insight")
                bullets.append(
                    Bullet(
                        sid,
                        name,
                        content,
                        helpful=int(s.get("helpful_count", 0)),
                        harmful=int(s.get("harmful_count", 0)),
                        neutral=int(s.get("neutral_count", 0)),
                        extra={"skillbook": extra},
                    )
                )
            sections.append((name, bullets))
        # kayba's next_id is the last number used; ours is the next one to use.
        return Playbook.from_sections(sections, next_id=int(data.get("next_id", 0)) + 1)


def to_skillbook(playbook: Playbook) -> str:
    skills: dict[str, Any] = {}
    for b in playbook:
        kept = dict(b.extra.get("skillbook", {}))
        issue, insight = kept.pop("issue", None), kept.pop("insight", None)
        if issue is None or _skill_content(issue, insight) != b.content:
            issue, insight = b.content, None  # the content changed since import: it is the issue now
        skills[b.id] = {
            "id": b.id,
            "section": b.section,
            "keywords": kept.pop("keywords", []),
            "issue": issue,
            "insight": insight,
            "occurrences": kept.pop("occurrences", []),
            "active": True,
            "used_count": kept.pop("used_count", 0),
            "helpful_count": b.helpful,
            "harmful_count": b.harmful,
            "neutral_count": b.neutral,
            **kept,
        }
    return json.dumps(
        {
            "schema_version": "2",
            "skills": skills,
            "sections": {s.name: list(s.ids) for s in playbook.sections.values()},
            "next_id": playbook.next_id - 1,
            "similarity_decisions": {},
        },
        ensure_ascii=False,
        indent=2,
    )


FORMATS: dict[str, tuple[Callable[[Playbook], str], Callable[[str], Playbook]]] = {
    "ace": (to_ace, parse_ace),
    "json": (to_json, parse_json),
    "md": (to_markdown, parse_markdown),
    "skillbook": (to_skillbook, parse_skillbook),
}


def dumps(playbook: Playbook, fmt: str = "ace") -> str:
    """Export in one of :data:`FORMATS` (``ace``, ``json``, ``md``, ``skillbook``)."""
    try:
        return FORMATS[fmt][0](playbook)
    except KeyError:
        raise PlaybookFormatError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None


def loads(text: str, fmt: str | None = None, *, filename: str | None = None) -> Playbook:
    """Import text in ``fmt``, or guess the format from the file name and content."""
    fmt = fmt or guess_format(text, filename)
    if fmt not in FORMATS:
        raise PlaybookFormatError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not text.strip():
        raise PlaybookFormatError("the text is empty: there is no playbook to import", fmt=fmt)
    pb = FORMATS[fmt][1](text)
    if not pb.sections and fmt in ("ace", "md"):
        raise PlaybookFormatError("no '## SECTION' header and no '[id] content' bullet: not a playbook", fmt=fmt)
    return pb


def guess_format(text: str, filename: str | None = None) -> str:
    head = text.lstrip()[:4096]
    if head.startswith("{"):
        return "skillbook" if '"schema_version"' in head else "json"
    if (filename or "").lower().endswith((".md", ".markdown")) or head.startswith("# Playbook"):
        return "md"
    return "ace"
