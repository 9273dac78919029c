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
- `language`: "vi", "other" or "none" (search.services.matching.text_language,
  shared with the answer service's choice of prompt template).
"""
from __future__ import annotations

import hashlib
import re

from documents.services.text import fold, nfc
from search.services.matching import text_language as language  # noqa: F401 - re-exported

_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


def clean(text: str | None) -> str:
    return _SPACE.sub(" ", nfc(text or "")).strip()


def near_key(text: str | None) -> str:
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", fold(clean(text)))).strip()


def passage_key(text: str) -> str:
    return "passage:" + hashlib.sha256(clean(text).encode()).hexdigest()[:16]
