"""Prompt-injection detection (pure): does a lesson read as an instruction to the model rather than a lesson?

A playbook's bullets and section names are printed into every agent's prompt, so text that tells the model to
drop its instructions, reveal its prompt or secrets, change role, send data away, run a hijacked tool, or that
carries a chat template's role tags must not become one. :func:`detect` returns what it found, or None. Three
layers, run on every ADD, UPDATE and MERGE (some tens of µs for a lesson, a few hundred for a text read in every
cipher, growing with its length):

1. **Views of the text.** NFKD compatibility folding (full-width and mathematical letters, ligatures), accents and
   combining marks stripped (Zalgo text), case folded; Cyrillic and Greek look-alikes, small capitals and
   upside-down letters mapped to Latin; leetspeak digits inside words (``1gn0r3``); letters spaced or dotted
   apart (``i g n o r e``, ``i.g.n.o.r.e``) joined. Encoded payloads found in the text are decoded and every
   layer runs on the decoded text again (two levels): base64 (also URL-safe), base32, hex (runs, ``\\xNN``,
   ``0xNN`` lists), binary octets, decimal character codes, URL %-escapes, HTML entities, ``\\uXXXX`` escapes,
   Morse; and, when the words of the text are not words of any language the lexicon knows, ROT13 and every other
   Caesar shift, Atbash and reversed text.
2. **A multilingual lexicon of intents** (English, French, German, Spanish, Italian, Portuguese, Dutch, Russian,
   Ukrainian, Polish, Czech, Swedish, Danish, Norwegian, Turkish, Greek, Arabic, Hebrew, Persian, Hindi, Indonesian,
   Vietnamese, Chinese, Japanese, Korean, Thai): words are mapped to concepts (an override verb, "instructions",
   "previous", a reveal verb, a secret, a role change, a send verb, something sensitive ...) and a rule fires when
   the concepts of one intent meet in one sentence (``ignore`` + ``instructions`` + ``previous``). Chat-template
   tags and a few unambiguous phrases are matched directly.
3. **A small classifier as a second opinion** for what the rules let through: a logistic regression over the
   view's words, word pairs, word stems and the concepts above, trained offline (``benchmarks/injection/train.py``)
   on generated lessons and injections and shipped as weights in :mod:`ace.playbook._injection_weights`; no I/O,
   a few µs.

What still gets through, and the figures, are in the README ("Prompt-injection gate").

Speed without other verdicts: an ASCII view is tokenized with ``bytes.translate``/``replace`` and ``str.split``, and
the character-class hints (leetspeak, spaced letters, Morse, encodings) are searched in a text mapped to classes;
what each distinct token brings (the words the direct patterns need, concepts, weights, stems) is worked out once
per process and combined with set operations; a sentence is walked only where one intent's concepts all occur in the
text; the word pairs are summed only where a bound on what they can add leaves the threshold within reach. Each of
these answers what the plain code answers (``tests/test_injection_speed_equivalence.py``). The score is summed in
integer thousandths, the grid the weights and the threshold are trained on, so a text scoring the threshold exactly
gets the same verdict in every process (a float sum in a set's order did not).
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Collection, Iterator, Sequence
from functools import reduce
from itertools import compress, filterfalse, pairwise, repeat
from operator import or_
from urllib.parse import unquote

# -- views ------------------------------------------------------------------------------------------------------------

# combining marks (accents, Zalgo) dropped after NFKD; other scripts' marks are kept (folded the same way in the
# lexicon, so both sides agree)
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f\u0483-\u0489]")
# look-alikes of Latin letters (Cyrillic, Greek, IPA small capitals, upside-down letters), applied to a second view
_LATIN_LOOKALIKES = str.maketrans(
    {
        **dict(zip("аеорсухіјѕԁԛԝһӏвкмнтгпьѵ", "aeopcyxijsdqwhlbkmhtrnbv", strict=True)),
        **dict(zip("αβεηικνορτυχωγδλμπσς", "abenikvoptuxwydlmpss", strict=True)),
        **dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnoprstuvwyz", strict=True)),
        **dict(zip("ɐɔǝɟƃɥıɾʞɯɹʇʌʍʎ", "acefghijkmrtvwy", strict=True)),
        "ʃ": "s",
        "ℓ": "l",
        "ı": "i",
        "ȷ": "j",
    }
)
_LOOKALIKE_CHARS = frozenset(chr(c) for c in _LATIN_LOOKALIKES)
_UPSIDE_DOWN = frozenset("ɐɔǝɟƃɥɾʞɯɹʇʌʍʎ")
_TURNED = str.maketrans(
    {
        **dict(zip("ɐɔǝɟƃɥıɾʞɯɹʇʌʍʎ", "acefghijkmrtvwy", strict=True)),
        "n": "u",
        "u": "n",
        "p": "d",
        "d": "p",
        "b": "q",
        "q": "b",
        "ʃ": "l",
        "ן": "l",
        "˙": ".",
    }
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a",
                       "$": "s", "!": "i", "|": "l", "€": "e", "+": "t"})  # fmt: skip
# a word that mixes letters with leetspeak digits or signs (``1gn0r3``, ``pr0mpt``, ``$y$tem``)
_LEET_WORD = re.compile(r"(?<![\w@$!|€+])(?=[\w@$!|€+]*[a-z])(?=[\w@$!|€+]*[013457893@$!|€+])[\w@$!|€+]{3,}")
# four or more single letters separated by spaces, dots, dashes, stars...: ``i g n o r e``, ``s.y.s.t.e.m``
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][ .\-_*·/|,]{1,3}){3,}[^\W\d_](?![^\W\d_])")
_SPACED_SEP = re.compile(r"[ .\-_*·/|,]{1,3}")
# what any spaced run holds (two inner letters between separators), a cheaper search than the run itself
_SPACED_HINT = re.compile(r"[ .\-_*·/|,][^\W\d_][ .\-_*·/|,]{1,3}[^\W\d_][ .\-_*·/|,]")


_LEET_HINT = re.compile(r"[a-z][0-9@$!|€+]|[0-9@$!|€+][a-z]")


def _classes(members: dict[str, str], default: str = " ") -> bytes:
    """A ``bytes.translate`` table giving each ASCII character the class its pattern gives it (``members``: a
    class letter -> the characters of that class, each matched against a one-character regex), others ``default``.
    A text mapped to classes answers a character-class pattern with C-level substring tests instead of a regex."""
    table = bytearray(default.encode() * 256)
    for cls, chars in members.items():
        pattern = re.compile(chars)
        for c in range(128):
            if pattern.fullmatch(chr(c)):
                table[c] = ord(cls)
    return bytes(table)


# the classes _LEET_HINT and _SPACED_HINT see in an ASCII text (derived from the same character classes)
_LEET_CLASSES = _classes({"a": "[a-z]", "1": "[0-9@$!|€+]"})
_SPACED_CLASSES = _classes({"a": r"[^\W\d_]", "s": "[ .\\-_*·/|,]"}, "x")


# searched in the classes: patterns that start with a rare literal are found with a fast scan for it
_LEET_CLASS_HINT = re.compile(rb"1(?:(?<=a1)|(?=a))")
_SPACED_CLASS_HINT = re.compile(rb"sas{1,3}as")


def _leet_hint_ascii(text: str) -> bool:
    """``_LEET_HINT.search(text) is not None`` for an ASCII text: a letter beside a leetspeak digit or sign."""
    return _LEET_CLASS_HINT.search(text.encode("ascii").translate(_LEET_CLASSES)) is not None


def _spaced_hint_ascii(text: str) -> bool:
    """``_SPACED_HINT.search(text) is not None`` for an ASCII text: separator, letter, 1-3 separators, letter,
    separator."""
    return _SPACED_CLASS_HINT.search(text.encode("ascii").translate(_SPACED_CLASSES)) is not None


def _unleet(m: re.Match[str]) -> str:
    """A leetspeak word read as letters, where that makes a word of the lexicon (``v1`` and ``utf8`` stay)."""
    word = m.group(0)
    plain = word.translate(_LEET)
    return plain if _LEX.known(plain) else word


def fold(text: str) -> str:
    """Compatibility-folded, accent-free, case-folded text (the form the lexicon is written in)."""
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return text.casefold()


def _spaced(m: re.Match[str]) -> str:
    s = m.group(0)
    # letters two or more separators apart were words ("i g n o r e  a l l" -> "ignore all"); letters joined by
    # dots or dashes are words split at spaces ("i.g.n.o.r.e a.l.l")
    if "  " in s:
        words = re.split(r"[ .\-_*·/|,]{2,}", s)
    elif " " in s and any(c in s for c in ".-_*·/|,"):
        words = s.split()
    else:
        words = [s]
    return " ".join(_SPACED_SEP.sub("", w) for w in words)


def views(text: str) -> list[str]:
    """The folded text, and when they differ from it: look-alikes mapped to Latin (upside-down text turned), and
    leetspeak and spaced letters undone."""
    base = fold(text)
    out = [base]
    latin = base
    if not base.isascii() and not _LOOKALIKE_CHARS.isdisjoint(base):
        if not _UPSIDE_DOWN.isdisjoint(base):  # upside-down text: turned letters, and n/u, p/d, b/q swapped
            out.append(base.translate(_TURNED)[::-1])
        latin = base.translate(_LATIN_LOOKALIKES)
    if (_leet_hint_ascii(latin) if latin.isascii() else _LEET_HINT.search(latin)) and (
        leet := _LEET_WORD.sub(_unleet, latin)
    ) != latin:
        latin = leet
    if (_spaced_hint_ascii(latin) if latin.isascii() else _SPACED_HINT.search(latin)) and _SPACED.search(latin):
        latin = _SPACED.sub(_spaced, latin)
    if latin != base:
        out.append(latin)
    return out


# -- decoding ---------------------------------------------------------------------------------------------------------

_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_\-]{16,}={0,2}")
_B32 = re.compile(r"[A-Z2-7]{16,}=*")
_HEXRUN = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2}){8,})\b")
_HEXSEP = re.compile(r"(?:(?:\\x|0x|%)?[0-9a-fA-F]{2}[\s,:;-]*){8,}")
_BIN = re.compile(r"(?:[01]{8}[\s,]*){4,}")
_DEC = re.compile(r"(?:\b\d{2,3}\b[\s,;]+){5,}\b\d{2,3}\b")
_PCT = re.compile(r"%[0-9a-fA-F]{2}")
_ENTITY = re.compile(r"&#?\w+;")
_UESC = re.compile(r"\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}")
_MORSE = re.compile(r"[.\-·_−–]{1,7}(?:\s*[ /|]\s*[.\-·_−–]{1,7}){7,}")
_MORSE_CODE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g", "....": "h", "..": "i",
    ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n", "---": "o", ".--.": "p", "--.-": "q", ".-.": "r",
    "...": "s", "-": "t", "..-": "u", "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z",
    "-----": "0", ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6",
    "--...": "7", "---..": "8", "----.": "9",
}  # fmt: skip


def _printable(data: bytes) -> str | None:
    """``data`` as text if it decodes as UTF-8 and reads as text (not a hash's or a key's random bytes)."""
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(s) < 4:
        return None
    good = sum(c.isprintable() or c in "\n\t" for c in s)
    letters = sum(c.isalpha() for c in s)
    return s if good >= 0.95 * len(s) and letters >= 0.5 * len(s) else None


def _b64(s: str) -> str | None:
    s = s.rstrip("=")
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return _printable(base64.urlsafe_b64decode(s))
        return _printable(base64.b64decode(s))
    except (binascii.Error, ValueError):
        return None


def _hex(s: str) -> str | None:
    digits = re.sub(r"\\x|0x|%|[\s,:;-]", "", s)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _printable(bytes.fromhex(digits))
    except ValueError:
        return None


# what any decoder below needs besides a long word (base64/hex/base32): binary or decimal codes, an escape, Morse


# _ENCODED's branches one by one, each searched only where a C-level test finds what it needs (:func:`_encoded`)
_ENC_BIN = re.compile(r"(?:[01]{8}[\s,]*){4}")
_ENC_PCT, _ENC_ENTITY = _PCT, _ENTITY  # the decoders' own patterns
_ENC_ESCAPE = re.compile(r"\\[uUx]")
_ENC_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[\s,:;-]+){7}")
_ENC_DEC = re.compile(r"(?:\d{2,3}[\s,;]+){5}")
_ENC_MORSE = re.compile(r"[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]")
_ENCODED = re.compile("|".join(p.pattern for p in (_ENC_BIN, _ENC_PCT, _ENC_ENTITY, _ENC_ESCAPE, _ENC_HEX, _ENC_DEC,
                                               _ENC_MORSE)))  # fmt: skip
# hex digits and the separators _ENC_HEX allows; decimal digits and the separators _ENC_DEC allows
_HEX_WORDS = _classes({"h": "[0-9a-fA-F]", " ": r"[\s,:;-]"}, "x")
_DEC_WORDS = _classes({"d": r"\d", " ": r"[\s,;]"}, "x")


def _encoded(text: str) -> bool:
    """``_ENCODED.search(text) is not None``, answered branch by branch: in an ASCII text a branch is searched only
    where what every match of it holds is there (32 binary digits; a ``%``, ``&`` or backslash; six hex pairs
    between separators, the 2nd to 7th pairs of a hex match; four numbers of 2 or 3 digits between separators;
    what :data:`_MORSE_HINT` finds inside any Morse match)."""
    if not text.isascii():
        return _ENCODED.search(text) is not None
    if ("%" in text and _ENC_PCT.search(text)) or ("&" in text and _ENC_ENTITY.search(text)):
        return True
    if "\\" in text and _ENC_ESCAPE.search(text):
        return True
    raw = text.encode("ascii")
    if raw.count(b"0") + raw.count(b"1") >= 32 and _ENC_BIN.search(text):
        return True
    # the 2nd to 7th pairs of a hex match, and the 2nd to 5th numbers of a decimal one, stand between separators
    # (each separator doubled, so that neighbours do not share one)
    if raw.translate(_HEX_WORDS).replace(b" ", b"  ").count(b" hh ") >= 6 and _ENC_HEX.search(text):
        return True
    dec = raw.translate(_DEC_WORDS).replace(b" ", b"  ")
    if dec.count(b" dd ") + dec.count(b" ddd ") >= 4 and _ENC_DEC.search(text):
        return True
    return _morse_hint(text) and _ENC_MORSE.search(text) is not None


_DIGIT_OR_UPPER = re.compile(r"[0-9A-Z]")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_MORSE_HINT = re.compile(r"[.\-·_−–]\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]")
# Morse signs, the separators between them and other white space (a space is a separator)
_MORSE_CLASSES = _classes({"m": "[.\\-·_−–]", "s": "[ /|]", "w": r"(?! )\s"}, "x")
# white space, for str.split's words
_SPACE_CLASSES = _classes({" ": r"\s"}, "x")
_MORSE_BEFORE = re.compile(rb"m(?=[sw])")  # a sign before a separator or white space
_MORSE_AFTER = re.compile(rb"m(?<=[sw]m)")  # a sign after one


def _morse_hint(text: str) -> bool:
    """``_MORSE_HINT.search(text) is not None``; in an ASCII text searched only where a Morse sign follows a
    separator or white space and one is followed by one (as in every match)."""
    if text.isascii():
        c = text.encode("ascii").translate(_MORSE_CLASSES)
        if not (_MORSE_BEFORE.search(c) and _MORSE_AFTER.search(c)):
            return False
    return _MORSE_HINT.search(text) is not None


def _long_chunk(text: str) -> bool:
    """Whether ``text.split()`` has a chunk of 16 characters or more."""
    if text.isascii():
        return b"x" * 16 in text.encode("ascii").translate(_SPACE_CLASSES)
    return max(map(len, text.split()), default=0) >= 16


def decoded(text: str) -> Iterator[str]:
    """Texts hidden in ``text`` by an encoding (each decoded once; :func:`detect` decodes again, two levels)."""
    # runs of base64, base32 or hex sit in chunks of 16 characters or more that hold a digit or an upper-case letter
    long = " ".join(w for w in text.split() if len(w) >= 16 and _DIGIT_OR_UPPER.search(w)) if _long_chunk(text) else ""
    if text.isascii():
        raw = text.encode("ascii")
        digits = len(raw) - len(raw.translate(None, b"0123456789"))
    else:
        digits = len(text) - len(text.translate(_NO_DIGITS))
    if not long and not (
        (digits >= 8 or "%" in text or "&" in text or "\\" in text or _morse_hint(text)) and _encoded(text)
    ):
        return
    if long:
        for m in _B64.finditer(long):
            if (s := _b64(m.group(0))) is not None:
                yield s
        for m in _B32.finditer(long):
            try:
                raw = base64.b32decode(m.group(0) + "=" * (-len(m.group(0)) % 8))
            except (binascii.Error, ValueError):
                continue
            if (s := _printable(raw)) is not None:
                yield s
        for m in _HEXRUN.finditer(long):
            if (s := _hex(m.group(1))) is not None:
                yield s
    if len(text) >= 16:
        compact = re.sub(r"\s+", "", text) if " " in text.strip() else ""
        if re.fullmatch(r"[A-Za-z0-9+/=]{16,}", compact) and (s := _b64(compact)) is not None:
            yield s
    if len(text) >= 16 and digits >= 8:  # hex bytes of text start with a digit; binary and decimal codes are digits
        for m in _HEXSEP.finditer(text):
            if (s := _hex(m.group(0))) is not None:
                yield s
        for m in _BIN.finditer(text):
            bits = re.sub(r"[\s,]", "", m.group(0))
            if (s := _printable(int(bits, 2).to_bytes(len(bits) // 8, "big"))) is not None:
                yield s
        for m in _DEC.finditer(text):
            codes = [int(x) for x in re.findall(r"\d+", m.group(0))]
            if all(32 <= c < 127 for c in codes) and (s := _printable(bytes(codes))) is not None:
                yield s
    if "%" in text and _PCT.search(text):
        yield unquote(text)
    if "&" in text and _ENTITY.search(text):
        yield html.unescape(text)
    if "\\" in text and _UESC.search(text):
        yield _UESC.sub(lambda m: chr(int(m.group(0)[2:], 16)), text)
    if _morse_hint(text) and (morse := _MORSE.search(text)):
        letters = []
        for word in re.split(r"\s*[/|]\s*|\s{2,}", morse.group(0)):
            letters.append("".join(_MORSE_CODE.get(c.translate(_MORSE_DASH), "") for c in word.split()))
        yield " ".join(letters)


_MORSE_DASH = str.maketrans({"·": ".", "_": "-", "−": "-", "–": "-"})


def _shift(text: str, k: int) -> str:
    a = "abcdefghijklmnopqrstuvwxyz"
    return text.translate(str.maketrans(a, a[k:] + a[:k]))


_ATBASH = str.maketrans("abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba")


def _ciphered(view: str, every_shift: bool, mask: int | None = None) -> Iterator[str]:
    """Readings of a view that bring up an injection's words: ROT13 and reversed text always, and with
    ``every_shift`` (a view whose words are no language's) Atbash and every Caesar shift. ``mask``: the view's
    mask (:func:`_token_infos`), when the caller has it."""
    if every_shift:
        candidates = [_shift(view, 13), view[::-1], view.translate(_ATBASH)]
        candidates += [_shift(view, k) for k in range(1, 26) if k != 13]
    elif not (  # no probe word in ROT13 or backwards: no reading has one
        any(w in view for w in _CIPHER_FORMS)
        if mask is None
        else mask & _CIPHER_BIT or any(w in view for w in _CIPHER_PHRASE_FORMS)
    ):
        return
    else:
        candidates = [_shift(view, 13), view[::-1]]
    for c in candidates:
        for w in _CIPHER_PROBES:
            if w in c:
                yield c
                break


_CIPHER_PROBES = ("ignor", "instruct", "prompt", "disregard", "previous", "jailbreak", "system", "reveal",
                  "password", "secret", "forget", "override", "you are now")  # fmt: skip
# a probe word as ROT13 or reversed text would show it: ``w in _shift(view, 13)`` iff ``_shift(w, 13) in view``
_CIPHER_FORMS = tuple(p for w in _CIPHER_PROBES for p in (_shift(w, 13), w[::-1]))
# -- lexicon ----------------------------------------------------------------------------------------------------------

# Concepts; each entry is a word, a stem ending in "*", or a phrase of words (matched on word boundaries).
# Entries in scripts written without spaces (CJK, Thai) and Korean are matched as substrings.
_LEXICON: dict[str, tuple[str, ...]] = {
    # verbs that drop or override instructions
    "IGN": (
        "ignore", "ignores", "ignoring", "ignored", "disregard*", "forget", "forgets", "forgetting", "override",
        "overrides", "overriding", "bypass*", "circumvent*", "set aside", "pay no attention",
        "don't follow", "do not follow", "dont follow", "stop following", "no longer follow", "not obey",
        "don't obey", "do not obey", "no longer bound", "not bound by", "unlearn", "null and void",
        # fr
        "ignore*", "ignorez", "oublie*", "ne tiens pas compte", "ne tenez pas compte", "fais abstraction",
        "faites abstraction", "annule*", "outrepasse*", "contourne*", "ne suis plus", "ne suivez plus",
        # de
        "ignorier*", "vergiss", "vergesst", "vergessen", "missachte*", "ubergehe", "verwirf", "verwerfe",
        "hinwegsetzen", "setze dich uber", "nicht mehr befolgen", "befolge nicht", "umgehe*",
        # es / pt / it
        "ignora", "ignore", "ignoren", "ignorar", "ignorad", "olvida*", "olvide*", "omite", "omitir", "descarta",
        "haz caso omiso", "no sigas", "esqueca", "esquece", "esquecer", "desconsidere", "desconsidera",
        "despreze", "nao siga", "ignori", "ignorate", "dimentica*", "trascura", "non seguire", "tralascia",
        # nl / sv / da / no
        "negeer", "negeren", "vergeet", "volg niet", "niet meer volgen", "ignorera", "glom", "strunta i",
        "ignorer", "glem", "se bort fra",
        # pl / cs / tr / ro / hu / fi / id / vi / sw
        "zignoruj", "ignoruj", "zapomnij", "pomin", "ignorujte", "zapomen", "zapomente", "yoksay", "yok say",
        "gormezden gel", "unut", "dikkate alma", "ignora", "uita", "felejtsd el", "hagyd figyelmen kivul", "ohita",
        "unohda",
        "abaikan", "lupakan", "jangan hiraukan", "bo qua", "phot lo", "quen", "puuza", "sahau",
        # ru / uk / el / ar / he / fa / hi
        "игнорир*", "проигнорир*", "забудь*", "забыть", "не обращай внимания", "пренебреги", "отбрось", "отмени*",
        "не следуй", "ігноруй*", "забудь", "αγνοησε", "αγνοηστε", "ξεχασε", "ξεχαστε", "تجاهل", "انس", "اهمل",
        "התעלם", "שכח", "نادیده بگیر", "فراموش کن", "अनदेखा", "भूल जाओ", "नजरअंदाज", "इग्नोर",
        # zh / ja / ko / th (substrings)
        "忽略", "忽视", "忽視", "无视", "無視", "不要理会", "不要理會", "忘记", "忘記", "忘掉", "不要遵循", "不再遵守",
        "無視", "忘れ", "従わな", "무시", "잊어", "잊고", "따르지", "เพิกเฉย", "ละเว้น", "ลืม",
    ),
    "IGNW": (
        "discard", "dismiss", "abandon", "neglect", "drop", "scrap", "nullify", "void", "supersede*", "cancel*",
        "revoke*", "throw out", "throw away", "erase", "wipe", "obsolete", "no longer apply", "no longer valid",
        "skip", "replace", "replaced", "reset", "clear",
    ),
    # what gets overridden or revealed: the model's instructions
    "INSTR": (
        "instruction", "instructions", "prompt", "prompts", "directive", "directives", "guideline*",
        "guidance", "rule", "rules", "programming", "system message", "safeguards", "guardrails", "told",
        "instructed", "programmed",
        "consigne*", "regle", "regles", "directive*", "ordre*", "anweisung*", "instruktion*", "befehl*",
        "regeln", "vorgabe*", "richtlinie*", "anordnung*", "instruccion*", "indicacion*", "regla", "reglas",
        "directriz", "directrices", "ordenes", "instrucao", "instrucoes", "regra", "regras", "diretriz*",
        "orientac*", "istruzion*", "regola", "regole", "direttiv*", "indicazion*", "instructie*", "opdracht*",
        "aanwijzing*", "regels", "richtlijn*", "instruktion*", "anvisning*", "regler", "instruks*",
        "instrukcj*", "polecen*", "zasad*", "regul*", "instrukce", "pokyn*", "pravidl*", "talimat*", "kural*",
        "yonerge*", "komut*", "instructiun*", "utasitas*", "ohje*", "instruksi", "perintah", "aturan",
        "petunjuk", "huong dan", "chi dan", "chi thi", "quy tac", "maagizo", "maelekezo",
        "инструкц*", "указани*", "правил*", "команд*", "директив*", "промпт*", "інструкц*", "вказівк*",
        "οδηγιες", "κανονες", "εντολες", "التعليمات", "تعليمات", "الأوامر", "الاوامر", "القواعد", "الإرشادات",
        "הוראות", "ההוראות", "הנחיות", "دستورالعمل*", "دستورات", "निर्देश*", "नियम", "आदेश",
        "指令", "指示", "说明", "說明", "规则", "規則", "提示词", "提示詞", "命令", "ルール", "プロンプト",
        "지시", "명령", "지침", "규칙", "프롬프트", "คำสั่ง", "คำแนะนำ",
    ),
    "INSTRW": (
        "direction", "directions", "command", "commands", "order", "orders", "constraint", "constraints",
        "policies", "policy", "taught", "context", "messages", "restrictions", "limitations", "filters",
    ),
    # which instructions: the ones before, above, all of them, the model's own
    "PRIOR": (
        "previous", "previously", "prior", "above", "earlier", "preceding", "foregoing", "initial", "original",
        "existing", "all", "every", "everything", "your", "system", "developer", "these", "those",
        "before", "so far", "until now", "up to now",
        "precedent*", "anterieur*", "ci-dessus", "initiales", "toutes", "tous", "tes", "vos", "systeme",
        "vorherig*", "vorige*", "bisherig*", "obig*", "fruher*", "alle", "deine", "ihre",
        "anterior*", "previa*", "previo*", "todas", "todos", "tus", "sus", "arriba", "acima", "suas",
        "precedenti", "tutte", "tutti", "sopra", "tue",
        "vorige", "eerdere", "bovenstaande", "voorgaande", "tidigare", "foregaende", "ovanstaende", "forrige",
        "poprzedni*", "wczesniejsz*", "powyzsz*", "wszystk*", "predchozi", "vsechny", "onceki", "yukaridaki",
        "tum", "butun", "anterioare", "korabbi", "elozo", "aiemm*", "edelli*", "sebelumnya", "semua", "truoc",
        "tat ca", "zote", "yote",
        "предыдущ*", "прежн*", "вышеуказ*", "все", "всё", "свои", "твои", "системн*", "попередн*", "усі", "всі",
        "προηγουμεν*", "ολες", "السابقة", "جميع", "أعلاه", "הקודמות", "כל", "قبلی", "पिछले", "सभी", "पहले",
        "之前", "以上", "上面", "先前", "所有", "全部", "以前", "上記", "これまで", "すべて", "全て",
        "이전", "위의", "모든", "앞의", "ก่อนหน้า", "ทั้งหมด",
    ),
    # verbs that reveal or print
    "REVEAL": (
        "reveal*", "print", "prints", "show", "output", "repeat", "leak", "leaks", "disclose*", "expose*",
        "dump", "tell me", "display", "recite", "spell out", "write out", "echo", "share", "give me",
        "what are your", "what is your", "what were your", "paste", "copy",
        "revele*", "affiche*", "montre*", "divulgue*", "imprime*", "dis-moi", "donne-moi", "repete*",
        "zeig*", "verrat*", "offenbare*", "enthull*", "gib aus", "gib mir", "drucke*", "wiederhole*",
        "revela*", "muestra*", "imprime", "divulga*", "dime", "mostra*", "exiba", "exibe", "imprima",
        "rivela*", "stampa*", "svela*", "dimmi", "onthul*", "toon", "laat zien", "geef", "visa", "avsloja",
        "skriv ut", "vis", "pokaz*", "ujawnij", "wypisz", "wydrukuj", "ukaz", "odhal", "vypis", "goster*",
        "acikla", "yazdir", "ifsa", "soyle", "dezvaluie", "afiseaza", "mutasd", "nayta", "paljasta",
        "tampilkan", "ungkapkan", "tunjukkan", "cetak", "tiet lo", "hien thi", "in ra",
        "покажи", "раскрой", "выведи", "напечатай", "расскажи", "сообщи", "повтори", "покажіть", "розкрий",
        "виведи", "αποκαλυψε", "δειξε", "εμφανισε", "اكشف", "أظهر", "اظهر", "اعرض", "اطبع", "חשוף", "הצג",
        "نشان بده", "दिखाओ", "दिखाएं", "बताओ", "प्रकट",
        "显示", "顯示", "打印", "输出", "輸出", "透露", "泄露", "洩露", "告诉我", "告訴我", "展示", "公开",
        "表示", "教え", "出力", "見せ", "明かし", "漏らし", "開示", "보여", "출력", "공개", "알려", "แสดง",
        "เปิดเผย",
    ),
    # what must not be revealed
    "SECRET": (
        "system prompt", "system message", "system instructions", "initial instructions", "hidden instructions",
        "original instructions", "secret instructions", "your instructions", "your prompt", "your rules",
        "your system", "developer message", "initial prompt", "hidden prompt", "everything above",
        "text above", "words above", "above text", "pre-prompt", "preprompt", "meta prompt", "your api key",
        "your api keys", "your password", "your passwords", "your credentials", "your secrets", "your keys",
        "your token", "your tokens", "your configuration", "your guidelines", "your directives", "full prompt",
        "initialization text", "instructions you were given", "instructions you received", "what you were told",
        "prompt you were given", "rules you were given", "everything before this", "text before this",
        "words before this", "configuration and instructions", "exact wording of your",
        "invite systeme", "prompt systeme", "message systeme", "instructions systeme", "tes instructions",
        "vos instructions", "mot de passe", "cle api", "systemprompt", "systemanweisung*", "system-prompt",
        "deine anweisungen", "passwort", "prompt del sistema", "instrucciones del sistema", "tus instrucciones",
        "contrasena", "prompt do sistema", "instrucoes do sistema", "suas instrucoes", "senha",
        "prompt di sistema", "istruzioni di sistema", "le tue istruzioni", "systeemprompt", "systeeminstructies",
        "je instructies", "wachtwoord", "prompt systemowy", "instrukcje systemowe", "systemovy prompt",
        "sistem istemi", "sistem komut*", "sistem promptu", "rendszerprompt", "jarjestelmakehote",
        "prompt sistem", "instruksi sistem", "loi nhac he thong", "prompt he thong", "promptul de sistem",
        "системн* промпт*", "системн* подсказк*", "системн* инструкц*", "системн* сообщени*", "пароль",
        "системний промпт", "προτροπη συστηματος", "موجه النظام", "تعليمات النظام", "הנחיית מערכת",
        "سیستم پرامپت", "सिस्टम प्रॉम्प्ट", "系统提示", "系統提示", "系统指令", "系統指令", "系统消息", "系统信息",
        "密码", "密碼", "システムプロンプト", "システムの指示", "パスワード", "시스템 프롬프트", "비밀번호",
        "พรอมต์ระบบ", "รหัสผ่าน",
    ),
    "SECRETW": (
        "api key", "api keys", "apikey", "private key", "secret key", "secret keys", "credentials", "passwords",
        "password", "secrets", "access token", "access tokens", "env vars", "environment variables",
        "confidential", "token", "tokens", "ssh key", "mot de passe", "passwort", "contrasena", "senha", "пароль",
    ),
    "REVEALS": ("reveal*", "leak", "leaks", "disclose*", "dump", "exfiltrate*", "divulg*", "verrat*", "svela*"),
    # a changed role or an unrestricted mode
    "ROLE": (
        "you are now", "you're now", "from now on you are", "act as", "pretend", "pretending", "roleplay",
        "role-play", "role play", "impersonate", "you will now act", "persona", "behave as", "respond as",
        "answer as", "pretend to be", "imagine you are", "suppose you are", "you are no longer", "your new identity",
        "your new name", "you have been upgraded", "you have been freed", "you are free from", "speak as",
        "talk as", "reply as", "play the role", "take on the role", "assume the role", "stay in character",
        "tu es maintenant", "vous etes maintenant", "vous etes desormais", "a partir de maintenant", "desormais tu",
        "fais comme si", "joue le role",
        "du bist jetzt", "ab jetzt bist du", "von nun an bist du", "tu so als", "ahora eres", "a partir de ahora",
        "actua como", "finge", "agora voce e", "a partir de agora", "finja", "ora sei", "d'ora in poi", "fingi",
        "je bent nu", "vanaf nu", "doe alsof", "du ar nu", "od teraz jestes", "teraz jestes", "udawaj",
        "artik sen", "bundan sonra sen", "gibi davran", "теперь ты", "отныне ты", "с этого момента ты",
        "притворись", "веди себя как", "тепер ти", "أنت الآن", "אתה עכשיו", "अब तुम", "sekarang kamu adalah",
        "mulai sekarang", "bay gio ban la", "你现在是", "你現在是", "从现在开始", "從現在開始", "扮演",
        "今からあなたは", "これからあなたは", "あなたは今", "なりきって", "지금부터 너는", "이제부터 너는", "이제 너는",
    ),
    "ROLEW": ("switch to", "enter", "enable", "activate", "become", "simulate"),
    "FREE": (
        "unfiltered", "uncensored", "jailbroken", "jailbreak*",
        "without censorship", "no ethical", "no morals", "amoral", "god mode", "do anything now", "unshackled",
        "no content policy", "ignore ethics", "no ethics", "without ethics", "no safety",
        "without any safety", "no moral",
        "sans restrictions", "sans limites", "sans filtre*", "ohne einschrankungen", "ohne filter",
        "ohne regeln", "entwicklermodus", "sin restricciones", "sin limites", "sin filtros", "modo desarrollador",
        "sem restricoes", "sem limites", "sem filtros", "modo desenvolvedor", "senza restrizioni",
        "senza limiti", "senza filtri", "zonder beperkingen", "utan begransningar", "bez ograniczen",
        "kisitlamasiz", "без ограничений", "без цензуры", "без фильтров", "режим разработчика",
        "без обмежень", "بدون قيود", "ללא הגבלות", "बिना किसी प्रतिबंध", "tanpa batasan", "khong gioi han",
        "无限制", "無限制", "没有限制", "沒有限制", "开发者模式", "開發者模式", "制限なし", "制限のない",
        "開発者モード", "제한 없는", "제한없는", "개발자 모드", "ไม่มีข้อจำกัด",
    ),
    "FREEW": (
        "developer mode", "dev mode", "sudo mode", "admin mode", "debug mode", "evil", "unbound", "unethical",
        "without restrictions", "without limitations", "without any restrictions", "without filters",
        "without any filters", "without rules", "dan", "unrestricted", "root access", "hacker", "never refuses",
        "no restrictions", "no limits",
        "no limitations", "no filters", "no rules", "no guidelines", "no boundaries",
    ),
    # sending something somewhere
    "SEND": (
        "send", "sends", "post", "upload", "forward", "email", "e-mail", "mail", "transmit", "exfiltrate*",
        "append", "embed", "leak", "beacon", "pipe", "beam", "relay", "deliver", "smuggle", "exfil",
        "envoie*", "envoyez", "transmet*", "sende*", "schick*", "ubermittle*", "envia*", "manda*", "invia*",
        "manda", "stuur", "skicka", "wyslij", "gonder", "отправ*", "перешли", "надішли", "أرسل", "שלח",
        "भेजो", "kirim", "gui", "发送", "發送", "传给", "送信", "送って", "보내",
    ),
    "SENDW": ("include", "attach", "submit", "copy", "ping", "fetch", "curl", "wget", "request", "load",
              "render", "share"),
    # what must not be sent away
    "SENSITIVE": (
        "conversation", "conversations", "chat history", "chat log", "chat logs", "user data", "user's data",
        "personal data", "personal information", "pii", "passwords", "ssn", "credit card", "card numbers",
        "all data", "all the data", "system prompt", "seed phrase", "everything", "conversation*",
        "historique de conversation", "gesprachsverlauf", "historial de chat", "conversa", "conversazione",
        "gesprek", "переписк*", "разговор", "对话", "對話", "会話", "대화",
    ),
    "SENSITIVEW": ("credentials", "password", "api key", "api keys", "secrets", "secret", "session", "cookie",
                   "cookies", "tokens", "token", "private", "confidential", "memory", "contents", "history",
                   "emails", "messages", "keys", "wallet", "donnees", "daten", "datos", "dados", "dati",
                   "gegevens", "данные", "数据", "數據", "データ", "데이터"),
    # a hijacked tool or action
    "HIJACKW": (
        "rm -rf", "rm -fr", "drop table", "drop database", "format c:", "del /f", "mkfs", "chmod 777",
        "transfer all", "wire all", "delete all", "delete every", "disable safety", "disable security",
        "disable the guardrails", "disable guardrails", "disable logging", "disable monitoring",
        "disable the filter", "turn off safety", "turn off the filter", "grant admin", "make me admin",
        "grant me", "without asking the user", "without confirmation", "without user consent", "transfer",
        "wire", "delete", "execute", "invoke", "call the", "run the",
    ),
    # hiding it from the user
    "HIJACK": (
        "do not tell the user", "don't tell the user", "dont tell the user", "without telling the user",
        "without informing the user", "without the user knowing", "without the user's knowledge",
        "hide this from the user", "do not mention this", "don't mention this", "do not inform the user",
        "never tell the user", "secretly", "covertly", "behind the user's back",
        "sans le dire", "ohne es dem benutzer", "sin decirle al usuario", "sem contar ao usuario",
        "senza dirlo", "не говори пользователю", "тайно", "不要告诉用户", "不要告訴用戶", "ユーザーに言わず",
    ),
    # a message addressed to the model itself
    "ADDRESS": (
        "ai assistant", "language model", "llm", "chatbot", "chatgpt", "gpt", "claude", "gemini", "assistant",
        "ai model", "the ai", "dear ai", "attention ai", "note to ai", "agent", "model", "bot",
    ),
    "NEW": (
        "new instructions", "new instruction", "updated instructions", "real instructions", "true instructions",
        "actual instructions", "new directive", "priority instructions",
        "nouvelles instructions", "neue anweisungen", "nuevas instrucciones", "novas instrucoes",
        "nuove istruzioni", "nieuwe instructies", "новые инструкции", "新的指令", "新指令", "新しい指示",
        "새로운 지시",
    ),
    "DECODE": (
        "decode", "decoded", "decoding", "deobfuscate", "base64", "rot13", "unscramble", "decipher", "decrypt",
        "translate this", "reverse this", "reversed", "hex", "encoded",
    ),
    "OBEY": (
        "follow", "execute", "obey", "do what it says", "carry out", "comply", "run it", "act on", "perform",
        "follow it", "follow them", "do it", "apply it",
    ),
    "DEFENSE": (
        "embedded", "untrusted", "injected", "injection", "injections", "tool output", "tool outputs", "web page",
        "web pages", "retrieved documents", "third-party", "malicious", "phishing", "attacker", "attackers",
        "as data",
    ),
    "NEG": (
        "never", "not", "don't", "dont", "do not", "avoid", "must not", "mustn't", "cannot", "can't", "no",
        "without", "ne", "jamais", "pas", "nie", "niemals", "kein", "keine", "nunca", "no", "non", "mai",
        "nooit", "niet", "aldrig", "inte", "никогда", "не", "nao", "永远不要", "不要", "不", "しない", "決して",
    ),
}  # fmt: skip

_CJK = re.compile("[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u1100-\u11ff\uac00-\ud7af]")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[,，、:]|[.!?;](?=\s|$)|[。！？；\n]")


_Scan = tuple[set[str], list[tuple[str, tuple[str, ...]]], list[tuple[str, int]]]


class _Lexicon:
    """The lexicon compiled for lookups: words, stems (by length), phrases (by first word), substrings."""

    def __init__(self, lexicon: dict[str, tuple[str, ...]]) -> None:
        self.words: dict[str, set[str]] = {}
        self.stems: dict[str, set[str]] = {}
        self.phrases: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
        self.substrings: list[tuple[str, str]] = []
        lengths: set[int] = set()
        for concept, entries in lexicon.items():
            for entry in entries:
                folded = fold(entry)
                if _CJK.search(folded):
                    self.substrings.append((folded.replace(" ", ""), concept))
                    continue
                parts = tuple(_TOKEN.findall(folded))
                if not parts:
                    continue
                stem = folded.endswith("*")
                if len(parts) == 1:
                    if stem:
                        self.stems.setdefault(parts[0], set()).add(concept)
                        lengths.add(len(parts[0]))
                    else:
                        self.words.setdefault(parts[0], set()).add(concept)
                else:
                    self.phrases.setdefault(parts[0], []).append((parts, stem, concept))
        self.lengths = tuple(sorted(lengths))
        # the first three letters of every stem: a word that starts otherwise has no stem to look up
        self.heads = frozenset(stem[:3] for stem in self.stems)
        self.phrase_heads = frozenset(self.phrases)
        self._cache: dict[str, tuple[str, ...]] = {}
        # each phrase with the words it needs besides its first (all of them but a stem's last): where one is not
        # among a text's tokens, the phrase is not in the text
        self.phrase_needs = {
            head: [(parts, stem, concept, frozenset(parts[1:-1] if stem else parts[1:])) for parts, stem, concept in ps]
            for head, ps in self.phrases.items()
        }

    def known(self, word: str) -> bool:
        """Whether ``word`` (or a word of it, split at non-letters) is in the lexicon."""
        return any(
            t in self.words or t in self.phrases or any(t[:n] in self.stems for n in self.lengths if n <= len(t))
            for t in _TOKEN.findall(word)
        )

    def _lookup(self, t: str) -> tuple[str, ...]:
        """The concepts of one token: as a word, and as every stem it starts with."""
        found = list(self.words.get(t, ()))
        if t[:3] in self.heads:
            for n in self.lengths:
                if n > len(t):
                    break
                if (c := self.stems.get(t[:n])) is not None:
                    found += c
        return tuple(found)

    def lookup(self, t: str) -> tuple[str, ...]:
        """The concepts of one token (remembered)."""
        if (c := self._cache.get(t)) is None:
            c = self._lookup(t)
            if len(self._cache) < 200_000:
                self._cache[t] = c
        return c

    def scan(
        self, tokens: list[str], distinct: set[str], hits: list[tuple[str, tuple[str, ...]]] | None = None
    ) -> _Scan:
        """The concepts that occur in ``tokens`` (``distinct``: their set; ``hits``: the tokens that carry concepts,
        with them, when the caller has them): the concepts' names, the tokens that carry concepts, and each phrase
        found (its concept, where)."""
        if hits is None:
            hits = [(t, c) for t in distinct if (c := self.lookup(t))]
        names: set[str] = set()
        for _, c in hits:
            names.update(c)
        phrased: list[tuple[str, int]] = []
        for head in self.phrase_heads.intersection(distinct):
            for parts, stem, concept, needs in self.phrase_needs[head]:
                if not needs <= distinct:
                    continue
                k = len(parts)
                for i in _positions(tokens, head):
                    window = tokens[i : i + k]
                    if len(window) == k and (
                        window[1:] == list(parts[1:])
                        if not stem
                        else window[1:-1] == list(parts[1:-1]) and window[-1].startswith(parts[-1])
                    ):
                        phrased.append((concept, i))
                        names.add(concept)
        return names, hits, phrased

    def concepts(
        self, tokens: list[str], sentence: str, distinct: set[str] | None = None, scan: _Scan | None = None
    ) -> dict[str, list[int]]:
        """Where each concept occurs in a sentence's tokens (-1: somewhere, for a substring match); ``distinct``:
        ``set(tokens)``, and ``scan``: :meth:`scan`'s, when the caller has them. Positions are listed token by token
        for each word or phrase, so a concept found by several words is not in order."""
        found: dict[str, list[int]] = {}
        if scan is None:
            scan = self.scan(tokens, set(tokens) if distinct is None else distinct)
        _, hits, phrased = scan
        for t, c in hits:
            at = _positions(tokens, t)
            for name in c:
                found.setdefault(name, []).extend(at)
        for concept, i in phrased:
            found.setdefault(concept, []).append(i)
        if sentence and not sentence.isascii() and _CJK.search(sentence):
            for s, concept in self.substrings:
                if s in sentence:
                    found.setdefault(concept, []).append(-1)
        return found


def _positions(tokens: list[str], t: str) -> list[int]:
    """Where ``t`` occurs in ``tokens`` (C-level searches, one per occurrence)."""
    out: list[int] = []
    i = -1
    for _ in range(tokens.count(t)):
        i = tokens.index(t, i + 1)
        out.append(i)
    return out


_LEX = _Lexicon(_LEXICON)

# what fires on its own, in any view
_DIRECT = [
    (
        "a chat-template role tag",
        re.compile(
            r"<(\|\s*)?(im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|"
            r"begin_of_text|im_sep|end|start_of_turn|end_of_turn|sys)\s*\|?>|</?(system|assistant|user|sys)>|"
            r"<</?sys>>|\[/?inst\]|\[/?(system|sys)\]|<s>\s*\[|</s>|^\s*#{1,4}\s*(system|assistant|instruction|"
            r"new instructions?|system prompt)\s*:?\s*$|^\s*#{0,4}\s*(system|assistant|human|user) ?:(\s|$)|"
            r"\bsystem ?:\s*you\b|\{\{\s*#?(system|assistant|user)\b|\bbegin (system|admin) (prompt|message)|"
            r"\bend of (system prompt|user input|prompt|instructions)\b|\[(system|admin) (override|message|note)\]|"
            r"\b(system|admin|developer|emergency) override\b",
            re.M,
        ),
    ),
    (
        "an instruction to ignore earlier instructions",
        re.compile(
            r"\b(previous|prior|above|earlier|original|system)\s+(instructions|prompt)\s+"
            r"(are|is|were|was|have been|has been)\s+(void|cancel+ed|revoked|obsolete|null|replaced|overridden|"
            r"superseded|no longer)"
        ),
    ),
    (
        "a role change",
        re.compile(
            # "you are now" takes on another identity or a freedom ("You are now DAN", "... an unrestricted AI"), not
            # a stage or a duty of a task ("You are now in the reconciliation phase", "You are now the approver for
            # invoices under 500 euros", "... expected to round to one decimal")
            r"\b(you are now|you're now)\s+((an?|my|the|your)\s+(\w+\s+){0,2}?(ai|assistant|model|chatbot|bot|llm|"
            r"persona|character|hacker|pirate|villain|unrestricted|unfiltered|uncensored|jailbroken|evil|dan|new ai)|"
            r"no longer|free|unrestricted|unfiltered|uncensored|jailbroken|dan|in\s+\w+\s+mode|allowed|able|"
            r"permitted|authorized|authorised)\b|"
            r"\bhenceforth,? you (are|will|must)\b|"
            r"\bfrom now on\b[^.\n]{0,30}\b(obey|you (are|will|must|shall))\b|"
            r"\byou('re| are)\b[^.\n]{0,60}\b(from (now|this (message|point|moment)|here) on|"
            r"for the rest of (this|the) (conversation|session|chat))\b|\bdo anything now\b|\bdan mode\b|"
            r"\b(jailbreak(ed|ing|s)?|jailbroken)\b|\bact as (an? )?(unrestricted|unfiltered|uncensored|evil|"
            r"jailbroken|dan\b)|\b(enable|activate|enter|switch to)\s+(the\s+)?(developer|dev|god|sudo|jailbreak|"
            r"unrestricted|dan)\s+mode\b"
        ),
    ),
    (
        "data sent to a URL",
        re.compile(
            r"!\[[^\]]*\]\(\s*(https?:)?//[^)\s]*\?[^)\s]*=|(https?:)?//[^\s)]*[?&][^\s)]*=\s*[\[{<]|"
            r"(https?:)?//[^\s)]*[?&][^\s)]*=[^\s)&]*(\{|%7b|\$\(|\[data\]|<data>)"
        ),
    ),
    (
        "an encoded instruction to follow",
        re.compile(
            r"\b(decode|decipher|decrypt|deobfuscate|unscramble|reverse|translate)\b[^.\n]{0,60}\b(and|then)\s+"
            r"(follow|execute|obey|carry out|comply with)\b"
        ),
    ),
]
# substrings each direct pattern needs (one of), checked before searching it
_DIRECT_NEEDS = [
    (
        "<|",
        "<im_",
        "<system",
        "<user",
        "<assistant",
        "<end",
        "<eot",
        "<start",
        "<begin",
        "<sys",
        "</",
        "<<",
        "[inst",
        "[/inst",
        "[system",
        "[/system",
        "[sys",
        "[/sys",
        "[admin",
        "<s>",
        "#",
        "{{",
        "begin ",
        "end of",
        "override",
        "system:",
        "system :",
        "assistant:",
        "assistant :",
        "human:",
        "human :",
        "user:",
        "user :",
    ),
    ("instructions", "prompt"),
    ("you are now", "you're now", "from now on", "anything now", "dan mode", "jailbr", "act as", " mode"),
    ("//",),
    ("decode", "decipher", "decrypt", "deobfuscate", "unscramble", "reverse", "translate"),
]

_SENTENCE = re.compile(r"[.!?;\n。！？；]+(?:\s|$)|[。！？；\n]")
_LINK_NEEDS = ("http", "www.", "@", "webhook", "ftp:", "ngrok")
_URL_OR_EMAIL = re.compile(r"https?://|www\.|\b[\w.+-]+@[\w-]+\.[\w.]+|\bwebhook\b|\bftp://|\bngrok\b")
_WORDISH = frozenset(("the", "a", "an", "to", "and", "of", "in", "is", "for", "on", "with", "it", "be", "use", "as",
    "le", "la", "les", "de", "et", "un", "une", "der", "die", "das", "und", "ein", "el", "los", "y", "en", "il",
    "di", "che", "o", "e", "het", "een", "i", "och", "att", "w", "na", "и", "в", "на", "не", "you", "your", "all",
    "this", "that", "are", "by", "at", "or", "if", "not", "no", "do", "me", "my", "from", "was", "what"))  # fmt: skip


def _near(at: dict[str, list[int]], breaks: list[int], a: str, b: str, after: int, before: int) -> bool:
    """Whether ``b`` occurs at most ``after`` tokens after ``a``, or at most ``before`` tokens before it, in the same
    clause (no comma or subordinating word between); a substring match (-1) is near everything."""
    return any(_close(i, j, breaks, after, before) for i in at.get(a, ()) for j in at.get(b, ()))


def _close(i: int, j: int, breaks: list[int], after: int, before: int) -> bool:
    if i < 0 or j < 0:
        return True
    lo, hi = (i, j) if i <= j else (j, i)
    if any(lo < k < hi for k in breaks):
        return False
    return 0 <= j - i <= after or 0 < i - j <= before


def _override(at: dict[str, list[int]], breaks: list[int]) -> bool:
    """An override verb near an instruction noun that a word like "previous" qualifies (the same noun)."""
    for j in at["INSTR"]:
        if any(_close(i, j, breaks, 6, 6) for i in at["IGN"]) and any(
            _close(p, j, breaks, 4, 3) or _close(j, p, breaks, 4, 0) for p in at["PRIOR"]
        ):
            return True
    return False


def _rules(view: str) -> tuple[str | None, dict[str, list[int]], list[str]]:
    """The lexicon's verdict on one view: (what fired or None, where each concept occurs in its tokens, its tokens)."""
    found, at_all, tokens, *_ = _analyse(view, positions=True)
    assert isinstance(at_all, dict)
    return found, at_all, tokens


# Fragments: words of letters and digits that a text holds only inside one of its tokens (a token holds the whole
# run of letters and digits it starts on). Whether a view holds one is a bit of the view's mask, the union of its
# distinct tokens' masks (:func:`_token_infos`): the words the direct patterns need (or, for a
# need of several words, its longest word), and, as one bit, the probe words of a cipher reading.
_RUN = re.compile(r"[^\W_]+")
_RARE = "<[#{:/"


def _fragment(need: str) -> str:
    """The longest run of letters and digits in ``need`` (the last of equals); the need itself if it is one run;
    "" if it has none."""
    return max(reversed(_RUN.findall(need)), key=len, default="")


_FRAGMENTS: dict[str, int] = {}
for _needs in _DIRECT_NEEDS:
    for _need in _needs:
        if _RUN.search(_need):
            _FRAGMENTS.setdefault(_fragment(_need), 1 << len(_FRAGMENTS))
_CIPHER_WORD_FORMS = tuple(w for w in _CIPHER_FORMS if _RUN.fullmatch(w))
_CIPHER_PHRASE_FORMS = tuple(w for w in _CIPHER_FORMS if not _RUN.fullmatch(w))
_CIPHER_BIT = 1 << len(_FRAGMENTS)


def _token_mask(t: str) -> int:
    mask = _CIPHER_BIT if any(w in t for w in _CIPHER_WORD_FORMS) else 0
    for f, bit in _FRAGMENTS.items():
        if f in t:
            mask |= bit
    return mask


# what the tokens seen bring, worked out once per process (up to 200,000 tokens): the fragments, the concepts, the
# stem with a weight, of the tokens that have some
_SEEN: set[str] = set()
_MASK_OF: dict[str, int] = {}
_CONCEPTS_OF: dict[str, tuple[str, ...]] = {}
_STEM_OF: dict[str, str] = {}


def _token_infos(distinct: set[str]) -> tuple[int, list[tuple[str, tuple[str, ...]]], int, set[str]]:
    """What the tokens of a view bring (``distinct``: their set): the view's mask (the fragments it holds), the
    tokens that carry concepts (with them), the sum of their weights as words (in thousandths), the stems they have
    with a weight. Most tokens bring none of the first, second and fourth: those are found with set operations."""
    m = _compiled()
    mask_of, concepts_of, stem_of = _MASK_OF, _CONCEPTS_OF, _STEM_OF
    if missing := distinct.difference(_SEEN):
        if len(_SEEN) > 200_000:
            mask_of, concepts_of, stem_of, missing = {}, {}, {}, distinct
        for t in missing:
            if not t.isdigit() and (k := _token_mask(t)):
                mask_of[t] = k
            if c := _LEX.lookup(t):
                concepts_of[t] = c
            if len(t) > 5 and t[:5] in m.stems:
                stem_of[t] = t[:5]
        if mask_of is _MASK_OF:
            _SEEN.update(missing)
    mask = 0
    for t in mask_of.keys() & distinct:  # (a dict's keys with a set: the smaller one is walked)
        mask |= mask_of[t]
    hits = [(t, concepts_of[t]) for t in concepts_of.keys() & distinct]
    stems = {stem_of[t] for t in stem_of.keys() & distinct}
    return mask, hits, sum(map(m.all.get, distinct, repeat(0))), stems


_Gates = tuple[int, tuple[tuple[int, tuple[str, ...]], ...], tuple[tuple[str, int, tuple[str, ...]], ...]]


def _gated(needs: tuple[str, ...]) -> _Gates:
    """``needs`` laid out for :func:`_needs_met`: a need that holds another need is dropped (the other is found
    wherever it is); a need of letters and digits is a bit of the view's mask; a need of several words is looked for
    where the mask has its longest word; the needs that hold a rare character (``<``, ``[``, ``#``...) are looked
    for where that character is (and the mask has their longest word, if they have one)."""
    kept = list(dict.fromkeys(n for n in needs if not any(m != n and m in n for m in needs)))
    exact = 0
    by_fragment: dict[int, list[str]] = {}
    by_char: dict[tuple[str, int], list[str]] = {}
    for n in kept:
        if rare := next((c for c in _RARE if c in n), None):
            by_char.setdefault((rare, _FRAGMENTS[f] if (f := _fragment(n)) else 0), []).append(n)
        elif _fragment(n) == n:
            exact |= _FRAGMENTS[n]
        else:
            by_fragment.setdefault(_FRAGMENTS[_fragment(n)], []).append(n)
    return (
        exact,
        tuple((bit, tuple(ns)) for bit, ns in by_fragment.items()),
        tuple((c, bit, () if ns == [c] else tuple(ns)) for (c, bit), ns in by_char.items()),
    )


def _needs_met(view: str, mask: int, gates: _Gates) -> bool:
    """``any(s in view for s in needs)`` for the needs :func:`_gated` laid out as ``gates`` (``mask``: the view's
    :func:`_token_infos`)."""
    exact, by_fragment, by_char = gates
    if mask & exact:
        return True
    for bit, members in by_fragment:
        if mask & bit and any(s in view for s in members):
            return True
    for c, bit, members in by_char:
        if (not bit or mask & bit) and c in view and (not members or any(s in view for s in members)):
            return True
    return False


_DIRECT_GATES = tuple(_gated(needs) for needs in _DIRECT_NEEDS)
# what any gate needs: a bit of the mask (a word), or a rare character (with, for each, the bits of the words its
# needs also hold; -1 where one of them has no word)
_DIRECT_BITS = reduce(or_, (exact | bit for exact, by_fragment, _ in _DIRECT_GATES for bit in [0, *dict(by_fragment)]))
_DIRECT_CHARS: dict[str, int] = {}
for _gates in _DIRECT_GATES:
    for _c, _bit, _members in _gates[2]:
        _DIRECT_CHARS[_c] = -1 if not _bit or _DIRECT_CHARS.get(_c) == -1 else _DIRECT_CHARS.get(_c, 0) | _bit
# a view's tokens, for an ASCII view (the same tokens as _TOKEN, whose letters and marks are all ASCII there)
_TOKEN_ASCII = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z0-9]+)?|[,:]|[.!?;](?=\s|$)|\n")
# for _tokens_ascii: letters, digits, the apostrophe, the marks and the newline kept; other white space a space;
# anything else "#" (a separator, but not white space: a mark before it is no token)
_TOKEN_CLASSES = bytes(
    c if re.fullmatch(r"[A-Za-z0-9',:.!?;\n]", chr(c)) else 32 if chr(c).isspace() else 35 for c in range(256)
)
_LOOSE_APOSTROPHE = re.compile(r"'(?:(?<![A-Za-z0-9]')|(?![A-Za-z0-9]))")
_APOSTROPHE_CHAIN = re.compile(r"'[A-Za-z0-9]+'")


def _tokens_ascii(view: str) -> list[str]:
    """``_TOKEN.findall(view)`` for an ASCII view, with C-level string operations: separators made spaces, the
    marks that are tokens spaced apart, then split."""
    b = view.encode("ascii").translate(_TOKEN_CLASSES)
    marks = []
    for p, held in ((b".", b"\x01"), (b"!", b"\x02"), (b"?", b"\x03"), (b";", b"\x04")):
        if p in b:  # a token where white space or the end follows ("\s|$"); a separator elsewhere
            b = b.replace(p + b" ", held + b" ").replace(p + b"\n", held + b"\n")
            if b.endswith(p):
                b = b[:-1] + held
            b = b.replace(p, b"#")
            marks.append((held, b" " + p + b" "))
    for held, token in marks:
        b = b.replace(held, token)
    for p in (b",", b":", b"\n"):
        if p in b:
            b = b.replace(p, b" " + p + b" ")
    s = b.replace(b"#", b" ").decode("ascii")
    if "'" in s:  # an apostrophe joins two runs of letters and digits, once per token
        s = _LOOSE_APOSTROPHE.sub(" ", s)
        if _APOSTROPHE_CHAIN.search(s):
            return _TOKEN_ASCII.findall(view)
    return list(filter(None, s.split(" ")))


# the concepts each intent :func:`_analyse` looks for in a sentence needs there, all of them (one tuple each way)
_INTENTS: tuple[tuple[str, ...], ...] = (
    ("IGN", "INSTR", "PRIOR"),  # an instruction to ignore earlier instructions
    ("NEW", "IGN"),  # new instructions
    ("NEW", "ADDRESS"),
    ("REVEAL", "SECRET"),  # a request to reveal the prompt or secrets
    ("REVEALS", "SECRETW"),
    ("ROLE", "FREE"),  # a role change
    ("ROLE", "FREEW"),
    ("ROLEW", "FREE"),
    ("SEND", "SENSITIVE"),  # data sent away
    *(("HIJACK", a) for a in ("SEND", "SENDW", "HIJACKW", "IGN", "SENSITIVE", "SENSITIVEW", "REVEAL", "REVEALS")),
)


_INTENT_SETS = tuple(frozenset(needs) for needs in _INTENTS)


def _may_fire(at: Collection[str]) -> bool:
    """Whether the concepts of one of the intents all occur in the text (a sentence's concepts are some of the
    text's)."""
    return any(map((at if isinstance(at, (set, frozenset)) else set(at)).issuperset, _INTENT_SETS))


def _sentences(tokens: list[str], distinct: set[str], scan: _Scan) -> tuple[list[int], list[int]]:
    """(the sentences holding every concept of an intent, in order; where the sentences end): sentence k is the
    run of tokens before the token ``bounds[k]`` (the last one runs to the end). One C-level walk finds the tokens
    that carry a concept or end a sentence."""
    _, hits, phrased = scan
    look: dict[str, tuple[str, ...]] = dict(hits)
    look.update(dict.fromkeys(_STOPS.intersection(distinct), _STOP))
    marks = list(map(look.get, tokens))
    bounds: list[int] = []
    keys: dict[int, set[str]] = {}
    for i in compress(range(len(marks)), marks):
        m = marks[i]
        if m is _STOP:
            bounds.append(i)
        elif (k := len(bounds)) in keys:
            keys[k].update(m)  # type: ignore[arg-type]
        else:
            keys[k] = set(m)  # type: ignore[arg-type]
    for concept, i in phrased:
        keys.setdefault(bisect_left(bounds, i), set()).add(concept)
    return sorted(k for k, ks in keys.items() if any(map(ks.issuperset, _INTENT_SETS))), bounds


_STOP: tuple[str, ...] = ("",)  # what ends a sentence, among the tokens' marks
# (what fired, the concepts, the tokens, their set, the view's mask, the classifier's sum for words and their stems)
_Analysis = tuple[str | None, Collection[str], list[str], set[str], int, tuple[int, set[str]]]


def _analyse(view: str, *, positions: bool = False) -> _Analysis:
    """:func:`_rules`, and what :func:`_token_infos` found: the set of the view's tokens, its mask, and the
    classifier's sum for its words and stems; without ``positions``, the concepts of a text where no rule can fire come
    as a set (their names), not where they occur (as with ``positions``)."""
    ascii = view.isascii()
    tokens = _tokens_ascii(view) if ascii else _TOKEN.findall(view)
    distinct = set(tokens)
    mask, hits, weight, stems = _token_infos(distinct)
    if mask & _DIRECT_BITS or any((bits < 0 or mask & bits) and c in view for c, bits in _DIRECT_CHARS.items()):
        for (what, pattern), gates in zip(_DIRECT, _DIRECT_GATES, strict=True):
            if _needs_met(view, mask, gates) and (m := pattern.search(view)):
                return f"{what} ({m.group(0).strip()[:60]!r})", {}, [], set(), 0, (weight, stems)
    pieces = _SENTENCE.split(view) if not ascii and _CJK.search(view) else None
    scan = _LEX.scan(tokens, distinct, hits)
    names = scan[0]
    # sentences: runs of tokens between sentence marks (for scripts without spaces, the text's own sentences); the
    # sentences where the concepts of an intent all occur, in order (the others cannot fire), or every sentence
    # where substring matches come in
    if pieces is not None:
        marks = _STOPS.intersection(distinct)
        bounds = sorted([i for t in marks for i in _positions(tokens, t)]) if marks else []
        order: Sequence[int] = range(len(bounds) + 1)
    elif not _may_fire(names) or not (order_bounds := _sentences(tokens, distinct, scan))[0]:
        at = _LEX.concepts(tokens, view, distinct, scan) if positions else names
        return None, at, tokens, distinct, mask, (weight, stems)
    else:
        order, bounds = order_bounds
    at_all = _LEX.concepts(tokens, view if pieces is None else "", distinct, scan)
    starts = [0, *[i + 1 for i in bounds]]
    ends = [*bounds, len(tokens)]
    has_link: bool | None = None
    for k in order:
        lo, hi = starts[k], ends[k]
        sub = tokens[lo:hi]
        at = {c: [i - lo for i in v if lo <= i < hi] for c, v in at_all.items()}
        at = {c: v for c, v in at.items() if v}
        if pieces is not None and k == 0:
            for piece in pieces:  # substring matches, sentence by sentence
                for c, v in _LEX.concepts([], piece).items():
                    at_all.setdefault(c, []).extend(v)
                    at.setdefault(c, []).extend(v)
        if not at:
            continue
        commas = [i for i, t in enumerate(sub) if t in _BREAKS]

        def near(a: str, b: str, after: int, before: int) -> bool:
            return _near(at, commas, a, b, after, before)  # noqa: B023 - used within the iteration

        hit = None
        defense = "DEFENSE" in at
        if "IGN" in at and "INSTR" in at and "PRIOR" in at and not defense and _override(at, commas):
            hit = "an instruction to ignore earlier instructions"
        if hit is None and "NEW" in at and ("IGN" in at or "ADDRESS" in at):
            hit = "new instructions for the model"
        reveal = ("REVEAL" in at and "SECRET" in at) or ("REVEALS" in at and "SECRETW" in at)
        if (
            hit is None
            and reveal
            and not (defense or _negated(sub))
            and (near("REVEAL", "SECRET", 7, 4) or near("REVEALS", "SECRETW", 7, 4))
        ):
            hit = "a request to reveal the prompt or secrets"
        if hit is None and (
            near("ROLE", "FREE", 12, 12) or near("ROLE", "FREEW", 10, 4) or near("ROLEW", "FREE", 6, 0)
        ):
            hit = "a role change"
        if hit is None and "SEND" in at and "SENSITIVE" in at:
            if has_link is None:
                has_link = any(s in view for s in _LINK_NEEDS) and _URL_OR_EMAIL.search(view) is not None
            if has_link and not (defense or _negated(sub)) and near("SEND", "SENSITIVE", 8, 4):
                hit = "data sent to a URL or address"
        if hit is None and "HIJACK" in at and not _ACTIONS.isdisjoint(at):
            hit = "an action hidden from the user"
        if hit:
            where = " ".join(t for t in sub if t not in _PUNCT) or view
            return f"{hit} ({where.strip()[:60]!r})", at_all, tokens, distinct, mask, (weight, stems)
    return None, at_all, tokens, distinct, mask, (weight, stems)


_STOPS = frozenset(".!?;。！？；\n")
_PUNCT = frozenset(",，、:") | _STOPS
_PUNCT_HINT = re.compile(r"[,，、:.!?;。！？；\n]")
_COMMAS = frozenset(",，、:")
# words that open another clause: an instruction noun after one is not the object of a verb before it
_BREAKS = _COMMAS | frozenset(("because", "since", "when", "if", "after", "while", "unless", "but",
                               "where", "which", "that", "until", "although", "though", "parce", "weil", "porque",
                               "perche", "omdat", "потому"))  # fmt: skip
_ACTIONS = frozenset(("SEND", "SENDW", "HIJACKW", "IGN", "SENSITIVE", "SENSITIVEW", "REVEAL", "REVEALS"))
assert {a for needs in _INTENTS if needs[0] == "HIJACK" for a in needs[1:]} == _ACTIONS
_VERBS = frozenset(w for w, c in _LEX.words.items() if not c.isdisjoint(("REVEAL", "REVEALS", "SEND")))
_NEG_WORDS = frozenset(("never", "not", "don't", "dont", "avoid", "mustn't", "cannot", "can't", "jamais", "nie",
    "niemals", "nunca", "non", "mai", "nooit", "niet", "aldrig", "inte", "никогда", "не"))  # fmt: skip


def _negated(tokens: list[str]) -> bool:
    """Whether a negation stands within three words before the sentence's first verb that reveals or sends."""
    for i, t in enumerate(tokens):
        if t in _VERBS or t.startswith(("reveal", "disclos", "expos", "exfiltr")):
            return any(w in _NEG_WORDS for w in tokens[max(0, i - 3) : i])
    return False


# -- the classifier ---------------------------------------------------------------------------------------------------


def windows(view: str, tokens: list[str], at: Collection[str]) -> list[set[str]]:
    """The classifier's features of a view (one window: the whole text): its words, word pairs, 5-letter stems of
    longer words, the lexicon's concepts, and in scripts written without spaces (CJK, Thai, Hangul) character
    pairs."""
    words = [t for t in tokens if t not in _PUNCT] if _PUNCT_HINT.search(view) else tokens
    feats = set(words)
    feats.update([a + " " + b for a, b in pairwise(words)], ["~" + t[:5] for t in words if len(t) > 5])
    feats.update(["#" + c for c in at])
    if not view.isascii() and _CJK.search(view):
        feats.update(_cjk_tokens(view))
    return [feats]


def _cjk_tokens(view: str) -> list[str]:
    """Character pairs of the text's CJK, Thai and Hangul runs (written without spaces between words)."""
    out: list[str] = []
    for run in _CJK_RUN.findall(view):
        out += [run[i : i + 2] for i in range(max(1, len(run) - 1))]
    return out


_CJK_RUN = re.compile("[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u1100-\u11ff\uac00-\ud7af]+")
_MODEL: tuple[float, float, dict[str, float]] | None = None


def _model() -> tuple[float, float, dict[str, float]]:
    """(bias, threshold, weights), loaded on first use (the weights are a generated module)."""
    global _MODEL
    if _MODEL is None:
        from ace.playbook._injection_weights import BIAS, THRESHOLD, WEIGHTS

        _MODEL = (BIAS, THRESHOLD, WEIGHTS)
    return _MODEL


def score(view: str) -> float:
    """The classifier's score of a view (a log-odds, the highest of its windows'; :func:`threshold` and above
    reads as an injection)."""
    _, at, tokens = _rules(view)
    return _score(view, tokens, at)


def _score(view: str, tokens: list[str], at: Collection[str]) -> float:
    return _scored(view, tokens, at)[0]


class _Compiled:
    """The weights laid out for :func:`_scored`. The trainer rounds every weight to thousandths and sets the
    threshold at the bias plus a number of thousandths, so a score is added up exactly as an integer number of
    thousandths (in any order: a float sum's last bit depended on the order a set of features was walked in, which
    hash randomization changes from one process to the next, and a text scoring exactly the threshold was flagged or
    not by chance). Weights off that grid are summed as floats, as before."""

    def __init__(self, bias: float, threshold: float, weights: dict[str, float]) -> None:
        self.bias, self.threshold, self.weights = bias, threshold, weights
        milli = {f: round(w * 1000) for f, w in weights.items()}
        limit = round((threshold - bias) * 1000)
        exact = all(abs(w * 1000 - milli[f]) < 1e-6 for f, w in weights.items())
        self.limit: int | None = limit if exact and abs((threshold - bias) * 1000 - limit) < 1e-6 else None
        self.all = milli  # words (and CJK character pairs) are looked up here: no word holds " ", "~" or "#"
        self.stems = {f[1:]: w for f, w in milli.items() if f.startswith("~")}
        self.pairs = {(a, b): w for f, w in milli.items() if f.count(" ") == 1 for a, b in [f.split(" ")]}
        self.concepts = {f[1:]: w for f, w in milli.items() if f.startswith("#")}
        # the most a word pair can add, by its first word and by its second: a text's distinct pairs are at distinct
        # positions, so the sum over its tokens of either bounds what its pairs add
        self.pair_first: dict[str, int] = {}
        self.pair_second: dict[str, int] = {}
        for (a, b), w in self.pairs.items():
            if w > 0:
                self.pair_first[a] = max(self.pair_first.get(a, 0), w)
                self.pair_second[b] = max(self.pair_second.get(b, 0), w)


_COMPILED: _Compiled | None = None


def _compiled() -> _Compiled:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = _Compiled(*_model())
    return _COMPILED


def _scored(
    view: str,
    tokens: list[str],
    at: Collection[str],
    distinct: set[str] | None = None,
    words_and_stems: tuple[int, set[str]] | None = None,
    *,
    exact: bool = True,
) -> tuple[float, bool]:
    """(the classifier's score of a view, whether it reaches the threshold); ``distinct``: ``set(tokens)``, and
    ``words_and_stems``: :func:`_token_infos`'s sum for the words and its stems, when the caller has them. Not
    ``exact``: where a bound on what the word pairs add shows the threshold out of reach, the score is NaN."""
    m = _compiled()
    if m.limit is None:
        s = m.bias + sum(map(m.weights.get, windows(view, tokens, at)[0], repeat(0.0)))
        return s, s >= m.threshold
    if not view.isascii() and _CJK.search(view):  # character pairs may be words too: one set of features
        total = sum(map(m.all.get, windows(view, tokens, at)[0], repeat(0)))
    else:  # words, stems, word pairs and concepts never share a feature: summed kind by kind
        if distinct is None:
            distinct = set(tokens)
        if words_and_stems is not None:  # (no mark has a weight or a stem)
            total, stems = words_and_stems
        else:
            total = sum(map(m.all.get, distinct, repeat(0)))
            stems = {t[:5] for t in distinct if len(t) > 5}
        total += sum(map(m.stems.get, stems, repeat(0)))
        total += sum(map(m.concepts.get, at, repeat(0)))
        if not exact and (
            total + sum(map(m.pair_first.get, tokens, repeat(0))) < m.limit
            or total + sum(map(m.pair_second.get, tokens, repeat(0))) < m.limit
        ):
            return math.nan, False
        words = tokens if _PUNCT.isdisjoint(distinct) else list(filterfalse(_PUNCT.__contains__, tokens))
        total += sum(map(m.pairs.__getitem__, set(filter(m.pairs.__contains__, pairwise(words)))))
    return m.bias + total / 1000, total >= m.limit


def threshold() -> float:
    return _model()[1]


# -- the verdict ------------------------------------------------------------------------------------------------------


def detect(text: str, *, classifier: bool = True, _depth: int = 0) -> str | None:
    """What in ``text`` reads as a prompt injection (a short description and the words that fired), or None."""
    for view in views(text):
        found, at, tokens, distinct, mask, words = _analyse(view)
        if found:
            return found if _depth == 0 else f"{found} [decoded]"
        if classifier and tokens:
            s, flagged = _scored(view, tokens, at, distinct, words, exact=False)
            if flagged:
                what = f"text the classifier reads as an injection (score {s:.1f}: {view.strip()[:60]!r})"
                return what if _depth == 0 else f"{what} [decoded]"
        if _depth < 2 and tokens:
            gibberish = len(tokens) >= 3 and view.isascii() and _WORDISH.isdisjoint(distinct)
            for reading in _ciphered(view, gibberish, mask):
                if (found := detect(reading, classifier=classifier, _depth=_depth + 1)) is not None:
                    return found if found.endswith("[decoded]") else f"{found} [decoded]"
    if _depth < 2:
        for hidden in decoded(text):
            if hidden != text and (found := detect(hidden, classifier=classifier, _depth=_depth + 1)) is not None:
                return found if found.endswith("[decoded]") else f"{found} [decoded]"
    return None


__all__ = ["decoded", "detect", "fold", "score", "threshold", "views", "windows"]
