"""Tokenisation for the keyword index: Vietnamese syllables (and any other
words), lower-cased, NFC; and accent folding.

- A token is a run of letters/digits. Vietnamese writes one syllable per word,
  so syllables come out one by one ("nghỉ phép" → ["nghỉ", "phép"]).
- A run joined by '-', '.' or '/' (document numbers "13/2023/nđ-cp", "covid-19",
  "3.5") is emitted as its parts AND as the whole, in that order, so both
  "nđ-cp" and "13/2023/nđ-cp" can be searched; the same rule applies to
  documents and queries, so they stay consistent.
- `fold` removes diacritics (đ → d) and lower-cases: "Nghỉ Phép" → "nghi phep".
"""
from __future__ import annotations

import re
import unicodedata

MAX_TOKEN_LENGTH = 60  # longer runs (base64, hashes) are not searchable words

_WORD = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*")
_PART = re.compile(r"[^\W_]+")


def _build_fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    ranges = [(0x00C0, 0x0250), (0x1E00, 0x1F00)]  # Latin-1, Extended-A/B, Extended Additional
    for lo, hi in ranges:
        for code in range(lo, hi):
            ch = chr(code)
            base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
            if base != ch and base.isascii():
                table[code] = base
    table[ord("đ")] = "d"
    table[ord("Đ")] = "D"
    return table


_FOLD_TABLE = _build_fold_table()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def fold(token: str) -> str:
    """Accent- and case-folded form: 'Nghỉ phép' → 'nghi phep', 'Đà' → 'da'."""
    text = nfc(token).lower().translate(_FOLD_TABLE)
    if not text.isascii():  # letters the table does not cover, or stray combining marks
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return text


def has_diacritics(text: str) -> bool:
    return fold(text) != nfc(text).lower()


def tokenize(text: str) -> list[str]:
    """Lower-cased NFC tokens of `text`, in order (see the module docstring)."""
    out: list[str] = []
    for match in _WORD.finditer(nfc(text).lower()):
        word = match.group()
        if not _PART.fullmatch(word):  # a compound: its parts first
            out.extend(p for p in _PART.findall(word) if len(p) <= MAX_TOKEN_LENGTH)
        if len(word) <= MAX_TOKEN_LENGTH:
            out.append(word)
    return out


def words(text: str) -> list[re.Match]:
    """The plain word runs of `text` (no compounds), as matches: used to rewrite
    a query in place."""
    return list(_PART.finditer(nfc(text)))
