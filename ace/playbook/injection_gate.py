"""Prompt-injection detection (pure): does a lesson read as an instruction to the model rather than a lesson?

A playbook's bullets and section names are printed into every agent's prompt, so text that tells the model to
drop its instructions, reveal its prompt or secrets, change role, send data away, run a hijacked tool, or that
carries a chat template's role tags must not become one. :func:`detect` returns what it found, or None. Three
layers, run on every ADD, UPDATE and MERGE (tens to a few hundred µs a text, growing with its length):

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
   about 5 µs.

What still gets through, and the figures, are in the README ("Prompt-injection gate").
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from collections.abc import Iterator
from itertools import pairwise, repeat
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
    if _LEET_HINT.search(latin) and (leet := _LEET_WORD.sub(_unleet, latin)) != latin:
        latin = leet
    if _SPACED_HINT.search(latin) and _SPACED.search(latin):
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
_ENCODED = re.compile(
    r"(?:[01]{8}[\s,]*){4}|%[0-9a-fA-F]{2}|&#?\w+;|\\[uUx]|(?:[0-9a-fA-F]{2}[\s,:;-]+){7}|(?:\d{2,3}[\s,;]+){5}|"
    r"[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]"
)


_DIGIT_OR_UPPER = re.compile(r"[0-9A-Z]")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_MORSE_HINT = re.compile(r"[.\-·_−–]\s*[ /|]\s*[.\-·_−–]{1,7}\s*[ /|]\s*[.\-·_−–]")


def decoded(text: str) -> Iterator[str]:
    """Texts hidden in ``text`` by an encoding (each decoded once; :func:`detect` decodes again, two levels)."""
    # runs of base64, base32 or hex sit in chunks of 16 characters or more that hold a digit or an upper-case letter
    long = " ".join(w for w in text.split() if len(w) >= 16 and _DIGIT_OR_UPPER.search(w))
    digits = len(text) - len(text.translate(_NO_DIGITS))
    if not long and not (
        (digits >= 8 or "%" in text or "&" in text or "\\" in text or _MORSE_HINT.search(text))
        and _ENCODED.search(text)
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
    if _MORSE_HINT.search(text) and (morse := _MORSE.search(text)):
        letters = []
        for word in re.split(r"\s*[/|]\s*|\s{2,}", morse.group(0)):
            letters.append("".join(_MORSE_CODE.get(c.translate(_MORSE_DASH), "") for c in word.split()))
        yield " ".join(letters)


_MORSE_DASH = str.maketrans({"·": ".", "_": "-", "−": "-", "–": "-"})


def _shift(text: str, k: int) -> str:
    a = "abcdefghijklmnopqrstuvwxyz"
    return text.translate(str.maketrans(a, a[k:] + a[:k]))


_ATBASH = str.maketrans("abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba")


def _ciphered(view: str, every_shift: bool) -> Iterator[str]:
    """Readings of a view that bring up an injection's words: ROT13 and reversed text always, and with
    ``every_shift`` (a view whose words are no language's) Atbash and every Caesar shift."""
    if every_shift:
        candidates = [_shift(view, 13), view[::-1], view.translate(_ATBASH)]
        candidates += [_shift(view, k) for k in range(1, 26) if k != 13]
    elif not any(w in view for w in _CIPHER_FORMS):  # no probe word in ROT13 or backwards: no reading has one
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

    def concepts(self, tokens: list[str], sentence: str) -> dict[str, list[int]]:
        """Where each concept occurs in a sentence's tokens (-1: somewhere, for a substring match)."""
        found: dict[str, list[int]] = {}
        cache = self._cache
        hits: set[str] = set()
        for t in set(tokens):  # each distinct token looked up once (and remembered: lessons reuse their words)
            c = cache.get(t)
            if c is None:
                c = self._lookup(t)
                if len(cache) < 200_000:
                    cache[t] = c
            if c:
                hits.add(t)
        heads = self.phrase_heads.intersection(tokens)
        if hits or heads:
            phrases = self.phrases
            for i, t in enumerate(tokens):
                if t in hits:
                    for name in cache[t]:
                        found.setdefault(name, []).append(i)
                if t in heads:
                    for parts, stem, concept in phrases[t]:
                        k = len(parts)
                        window = tokens[i : i + k]
                        if len(window) == k and (
                            window[1:] == list(parts[1:])
                            if not stem
                            else window[1:-1] == list(parts[1:-1]) and window[-1].startswith(parts[-1])
                        ):
                            found.setdefault(concept, []).append(i)
        if sentence and not sentence.isascii() and _CJK.search(sentence):
            for s, concept in self.substrings:
                if s in sentence:
                    found.setdefault(concept, []).append(-1)
        return found


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
            # "you are now" takes on a role or a freedom ("You are now DAN", "... an unrestricted assistant"), not a
            # stage of a task ("You are now in the reconciliation phase", "... expected to round to one decimal")
            r"\b(you are now|you're now)\s+(an?|my|the|your|no longer|free|unrestricted|unfiltered|uncensored|"
            r"jailbroken|dan|in\s+\w+\s+mode|allowed|able|permitted|authorized|authorised)\b|"
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
    for (what, pattern), needs in zip(_DIRECT, _DIRECT_NEEDS, strict=True):
        for s in needs:
            if s in view:
                if m := pattern.search(view):
                    return f"{what} ({m.group(0).strip()[:60]!r})", {}, []
                break
    tokens = _TOKEN.findall(view)
    pieces = _SENTENCE.split(view) if not view.isascii() and _CJK.search(view) else None
    at_all = _LEX.concepts(tokens, view if pieces is None else "")
    if not at_all and pieces is None:
        return None, at_all, tokens
    # sentences: runs of tokens between sentence marks (for scripts without spaces, the text's own sentences)
    bounds = [i for i, t in enumerate(tokens) if t in _STOPS]
    starts = [0, *(i + 1 for i in bounds)]
    ends = [*bounds, len(tokens)]
    has_link: bool | None = None
    for k, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
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
            return f"{hit} ({where.strip()[:60]!r})", at_all, tokens
    return None, at_all, tokens


_STOPS = frozenset(".!?;。！？；\n")
_PUNCT = frozenset(",，、:") | _STOPS
_PUNCT_HINT = re.compile(r"[,，、:.!?;。！？；\n]")
_COMMAS = frozenset(",，、:")
# words that open another clause: an instruction noun after one is not the object of a verb before it
_BREAKS = _COMMAS | frozenset(("because", "since", "when", "if", "after", "while", "unless", "but",
                               "where", "which", "that", "until", "although", "though", "parce", "weil", "porque",
                               "perche", "omdat", "потому"))  # fmt: skip
_ACTIONS = frozenset(("SEND", "SENDW", "HIJACKW", "IGN", "SENSITIVE", "SENSITIVEW", "REVEAL", "REVEALS"))
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


def windows(view: str, tokens: list[str], at: dict[str, list[int]]) -> list[set[str]]:
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


def _score(view: str, tokens: list[str], at: dict[str, list[int]]) -> float:
    bias, _, weights = _model()
    get = weights.get
    return bias + sum(map(get, windows(view, tokens, at)[0], repeat(0.0)))


def threshold() -> float:
    return _model()[1]


# -- the verdict ------------------------------------------------------------------------------------------------------


def detect(text: str, *, classifier: bool = True, _depth: int = 0) -> str | None:
    """What in ``text`` reads as a prompt injection (a short description and the words that fired), or None."""
    limit = _model()[1]
    for view in views(text):
        found, at, tokens = _rules(view)
        if found:
            return found if _depth == 0 else f"{found} [decoded]"
        if classifier and tokens and (s := _score(view, tokens, at)) >= limit:
            what = f"text the classifier reads as an injection (score {s:.1f}: {view.strip()[:60]!r})"
            return what if _depth == 0 else f"{what} [decoded]"
        if _depth < 2 and tokens:
            gibberish = len(tokens) >= 3 and view.isascii() and _WORDISH.isdisjoint(tokens)
            for reading in _ciphered(view, gibberish):
                if (found := detect(reading, classifier=classifier, _depth=_depth + 1)) is not None:
                    return found if found.endswith("[decoded]") else f"{found} [decoded]"
    if _depth < 2:
        for hidden in decoded(text):
            if hidden != text and (found := detect(hidden, classifier=classifier, _depth=_depth + 1)) is not None:
                return found if found.endswith("[decoded]") else f"{found} [decoded]"
    return None


__all__ = ["decoded", "detect", "fold", "score", "threshold", "views", "windows"]
