"""Text keys the datasets, the validation report and mining agree on.

- `clean`: NFC (documents.services.text.nfc), whitespace collapsed, trimmed. Two
  texts equal after `clean` are exact duplicates.
- `near_key`: `clean`, then accents and case folded and punctuation dropped
  ("Nghỉ phép năm?" and "nghi phep  nam" share one key). Two texts with one key
  are near duplicates. We chose this over shingle similarity: it is exact, costs
  one pass, and catches what people actually vary (diacritics typed or not,
  case, spacing, punctuation) without pairing texts that merely share words.
- `passage_key`: the split unit of a passage whose document is unknown: a hash
  of its cleaned text.
- `language`: "vi", "other" or "none" (no letters). Vietnamese when the text has
  a letter or tone mark only Vietnamese uses among Latin scripts (ă â đ ê ô ơ ư,
  hook above, dot below), or when, typed without diacritics, most of its words
  (at least 3, 60 %) are Vietnamese syllables (search.services.matching).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

from documents.services.text import fold, nfc
from search.services.matching import is_vietnamese_syllable

_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W\d_]+")
_VIETNAMESE_LETTERS = set("ăâđêôơưĂÂĐÊÔƠƯ")
_VIETNAMESE_MARKS = {"\u0309", "\u0323", "\u031b", "\u0306"}  # hook above, dot below, horn, breve


def clean(text: str | None) -> str:
    return _SPACE.sub(" ", nfc(text or "")).strip()


def near_key(text: str | None) -> str:
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", fold(clean(text)))).strip()


def passage_key(text: str) -> str:
    return "passage:" + hashlib.sha256(clean(text).encode()).hexdigest()[:16]


def language(text: str) -> str:
    words = _WORD.findall(clean(text))
    if not words:
        return "none"
    if any(ch in _VIETNAMESE_LETTERS for ch in text):
        return "vi"
    if any(mark in _VIETNAMESE_MARKS for mark in unicodedata.normalize("NFD", text)):
        return "vi"
    if len(words) >= 3 and sum(map(is_vietnamese_syllable, words)) / len(words) >= 0.6:
        return "vi"
    return "other"
