"""Text shown to people from files and records anyone may have written: every invisible or direction-changing
character (controls, format and bidi characters such as U+202E, which turns the text after it around, U+200B, line and
paragraph separators, private use, unassigned, surrogates) made a visible code ``⟨U+XXXX⟩``, and the same text
escaped for HTML (:func:`html_text`) or for Markdown (:func:`markdown_text`). The console's pages
(:func:`ace.service.console.app.show`) and ``ace report``'s page and Markdown show them the same way."""

from __future__ import annotations

import html
import re
import unicodedata

# characters shown as a visible code instead of acting on the text around them
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs"})
_SUSPECT = re.compile(r"[^\x20-\x7e\n\t]")
_SUSPECT_LINE = re.compile(r"[^\x20-\x7e]")  # in one line (a table cell, a heading): \n and \t are codes too
# what Markdown acts on in running text (CommonMark lets a backslash escape any ASCII punctuation); parentheses make a
# link only after "]", escaped
_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]#!|~])")
# at the start: a list item, a setext underline, a numbered item
_MARKDOWN_START = re.compile(r"^(\s*)([-+=]|\d+\.(?=\s|$))")
_HTML_IN_MARKDOWN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def hidden(ch: str) -> bool:
    """Whether ``ch`` is shown as a code (a soft hyphen is: it is invisible where a line does not break)."""
    return ch == "\u00ad" or not (ch.isprintable() or unicodedata.category(ch) not in HIDDEN_CATEGORIES)


def code(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def spans(text: str, *, lines: bool = True) -> list[tuple[str, bool]]:
    """``text`` as runs of ``(text, False)`` and single hidden characters ``(ch, True)``; ``lines``: \\n and \\t are
    text (else they are hidden too)."""
    out: list[tuple[str, bool]] = []
    start = 0
    for m in (_SUSPECT if lines else _SUSPECT_LINE).finditer(text):  # plain ASCII is never looked at twice
        i, ch = m.start(), m.group()
        if not (hidden(ch) or (not lines and ch in "\n\t")):
            continue
        if i > start:
            out.append((text[start:i], False))
        out.append((ch, True))
        start = i + 1
    if start < len(text) or not out:
        out.append((text[start:], False))
    return out


def visible(value: object, *, lines: bool = True) -> str:
    """``value`` as text with every hidden character shown as its code."""
    text = "" if value is None else str(value)
    return "".join(code(t) if h else t for t, h in spans(text, lines=lines))


def html_text(value: object, *, lines: bool = True) -> str:
    """``value`` escaped for HTML (text and attribute values), its hidden characters shown as codes."""
    return html.escape(visible(value, lines=lines))


def markdown_text(value: object) -> str:
    """``value`` as Markdown that shows it as it is, on one line: hidden characters (\\n and \\t too) as codes,
    HTML-significant characters as entities (no tag, no attribute) and every character Markdown acts on (emphasis,
    links, code, table cells, headings, lists) escaped with a backslash."""
    text = visible(value, lines=False)
    text = _MARKDOWN_ACTIVE.sub(r"\\\1", text)
    text = _MARKDOWN_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)
    return "".join(_HTML_IN_MARKDOWN.get(ch, ch) for ch in text)


__all__ = ["HIDDEN_CATEGORIES", "code", "hidden", "html_text", "markdown_text", "spans", "visible"]
