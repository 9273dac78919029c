"""Text handling shared by every layer: NFC, invisible characters, accent
folding and syllable tokenising. Extraction, keywords, the keyword index,
snippets, intake and evaluation all use these, so a document and a query are
always cut and folded the same way.

- `nfc` composes Vietnamese diacritics into single code points and drops the
  invisible format characters (zero-width space and joiners, BOM, soft hyphen)
  that copy-paste leaves inside words: "ngh\u200bỉ" is "nghỉ".
- `fold` removes diacritics (đ → d) and lower-cases: "Nghỉ Phép" → "nghi phep".
  `fold_same_length` does the same character by character, so offsets into the
  folded text are offsets into the original (snippets highlight with them).
- `tokenize`: a token is a run of letters/digits. Vietnamese writes one syllable
  per word, so syllables come out one by one ("nghỉ phép" → ["nghỉ", "phép"]).
  A run joined by '-', '.' or '/' (document numbers "13/2023/nđ-cp",
  "covid-19", "3.5") is emitted as its parts AND as the whole, in that order,
  so both "nđ-cp" and "13/2023/nđ-cp" can be searched.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

MAX_TOKEN_LENGTH = 60  # longer runs (base64, hashes) are not searchable words

WORD_RUN = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*")  # a word, or a compound joined by - . /
SYLLABLE = re.compile(r"[^\W_]+")  # a plain word run, no compounds


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
# Invisible format characters (Unicode category Cf): they split a word in two for
# a regex without changing what a reader sees.
_INVISIBLE = re.compile(r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def nfc(text: str) -> str:
    """NFC without invisible format characters."""
    return unicodedata.normalize("NFC", _INVISIBLE.sub("", text))


def fold(text: str) -> str:
    """Accent- and case-folded form: 'Nghỉ phép' → 'nghi phep', 'Đà' → 'da'."""
    folded = nfc(text).lower().translate(_FOLD_TABLE)
    if not folded.isascii():  # letters the table does not cover, or stray combining marks
        folded = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    return folded


def fold_same_length(text: str) -> str:
    """`fold` character by character: the result is exactly as long as `text`,
    so a match found in it is at the same offsets in `text`."""
    quick = text.lower().translate(_FOLD_TABLE)  # one pass in C for NFC Vietnamese, Latin text
    if len(quick) == len(text) and quick.isascii():
        return quick
    out = []
    for ch in text:
        folded = ch.lower().translate(_FOLD_TABLE)
        if len(folded) != 1 or not folded.isascii():
            base = unicodedata.normalize("NFD", folded)[:1] or ch
            folded = base if len(base) == 1 else ch
        out.append(folded)
    return "".join(out)


def has_diacritics(text: str) -> bool:
    return fold(text) != nfc(text).lower()


def tokenize(text: str) -> list[str]:
    """Lower-cased NFC tokens of `text`, in order (see the module docstring)."""
    out: list[str] = []
    for match in WORD_RUN.finditer(nfc(text).lower()):
        word = match.group()
        if not SYLLABLE.fullmatch(word):  # a compound: its parts first
            out.extend(p for p in SYLLABLE.findall(word) if len(p) <= MAX_TOKEN_LENGTH)
        if len(word) <= MAX_TOKEN_LENGTH:
            out.append(word)
    return out


def syllable_matches(text: str) -> list[re.Match]:
    """The plain word runs of `nfc(text)` (no compounds), as matches."""
    return list(SYLLABLE.finditer(nfc(text)))


def ascii_slug(text: str) -> str:
    """'Sổ tay kho lưu trữ' → 'SO_TAY_KHO_LUU_TRU' (document codes from file names)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", fold(text)).strip("_").upper()


def code_from_filename(filename: str) -> str:
    return (ascii_slug(Path(filename).stem) or "DOCUMENT")[:56]
