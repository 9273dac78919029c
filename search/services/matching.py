"""Where a query's syllables occur in a passage, phrase by phrase.

Vietnamese writes a word as several syllables ("quy trình", "nghỉ phép"), and
one syllable is shared by many words ("trình" in "giải trình", "phép" in "trái
phép"). So a query syllable found in a passage counts as a match of the query
when it is part of a **phrase**: a run of adjacent passage syllables that
matches a run of adjacent query syllables. Found alone it counts fully when it
is not a Vietnamese syllable (an acronym, a code, a foreign word: "VPN", "SSO",
"ISO-27001") or when the query has a single syllable; half when no passage
around it has it in a phrase (then it is likely a word of its own in this
query, like "quý" in "doanh thu quý"); not at all when other passages do (it
belongs to a compound: "phép" of "nghỉ phép" found alone is another word).

Accents: a query typed with diacritics matches as spelled (case aside; "tối
qua" does not find "quá"); a query typed without any matches every accented
form ("nghi phep" finds "nghỉ phép"), as the keyword index reads queries.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from documents.services.text import fold, fold_same_length, has_diacritics, nfc, syllable_matches

# One Vietnamese syllable, accents folded: onset? + vowel nucleus + coda?
_VIETNAMESE_SYLLABLE = re.compile(
    r"(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnpqrstvx])?[aeiouy]{1,3}(ch|ng|nh|[cmnpt])?")


def exact_syllables(tokens: list[str]) -> list[bool]:
    """Which query syllables must match as spelled: all of them when the query
    was typed with diacritics anywhere ("tối qua" means "qua", not "quá"); none
    when it was typed without any (each then stands for its accented forms)."""
    accented = any(has_diacritics(t) for t in tokens)
    return [accented] * len(tokens)


def is_vietnamese_syllable(token: str) -> bool:
    return bool(_VIETNAMESE_SYLLABLE.fullmatch(fold(token)))


@dataclass
class Matches:
    phrases: list[tuple[int, int, int, int]]  # (start, end, syllables, first query position)
    singles: list[tuple[int, int, int]]  # (start, end, query position) matched outside any phrase

    @property
    def phrase_positions(self) -> set[int]:
        return {j + n for _, _, length, j in self.phrases for n in range(length)}


def _whole_words(keys) -> re.Pattern | None:
    keys = sorted(set(keys), key=len, reverse=True)
    return re.compile(r"(?<![^\W_])(?:" + "|".join(map(re.escape, keys)) + r")(?![^\W_])") if keys else None


def _lower_same_length(text: str) -> str:
    """text.lower() with the offsets kept: a character whose lower case is longer
    ('İ' → 'i̇') stays as it is, so a match's offsets are the original text's."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


class QueryMatcher:
    def __init__(self, query: str):
        self.tokens = [m.group().lower() for m in syllable_matches(query)]
        self.exact = exact_syllables(self.tokens)
        self.keys = [t if exact else fold(t) for t, exact in zip(self.tokens, self.exact)]
        self.standalone = [len(self.tokens) == 1 or not is_vietnamese_syllable(t) for t in self.tokens]
        # query positions by the form a passage syllable must have: its lower-cased
        # spelling (typed with diacritics) or its folded form (typed without)
        self._by_spelling: dict[str, list[int]] = {}
        self._by_folded: dict[str, list[int]] = {}
        for j, (key, exact) in enumerate(zip(self.keys, self.exact)):
            (self._by_spelling if exact else self._by_folded).setdefault(key, []).append(j)
        self._spelling = _whole_words(self._by_spelling)
        self._folded = _whole_words(self._by_folded)

    def _hits(self, text: str) -> list[tuple[int, int, set[int]]]:
        """(start, end, query positions) of every passage syllable that matches
        some query syllable, in order (found by regex: most syllables match none)."""
        found: dict[int, tuple[int, set[int]]] = {}
        for pattern, forms, source in ((self._spelling, self._by_spelling, _lower_same_length),
                                       (self._folded, self._by_folded, fold_same_length)):
            if pattern is None:
                continue
            haystack = source(text)
            for m in pattern.finditer(haystack):
                end, positions = found.setdefault(m.start(), (m.end(), set()))
                positions.update(forms[m.group()])
        return [(start, end, positions) for start, (end, positions) in sorted(found.items())]

    def matches(self, text: str) -> Matches:
        """The longest phrases first, left to right; then single syllables."""
        hits = self._hits(text) if self.tokens else []
        phrases, singles = [], []
        k = 0
        while k < len(hits):
            best, best_j = 0, -1
            for j in sorted(hits[k][2]):
                n = 1
                while (k + n < len(hits) and j + n in hits[k + n][2]
                       and text[hits[k + n - 1][1]:hits[k + n][0]].strip() in ("", "-")):
                    n += 1
                if n > best:
                    best, best_j = n, j
            if best >= 2:
                phrases.append((hits[k][0], hits[k + best - 1][1], best, best_j))
                k += best
                continue
            singles += [(hits[k][0], hits[k][1], j) for j in sorted(hits[k][2])]
            k += 1
        return Matches(phrases, singles)

    def coverage(self, found: Matches, weights: dict[str, float], compounds: set[int]) -> float:
        """Share of the query's weight (syllable → weight) that a passage's
        matches cover (see the module docstring); `compounds`: the query
        positions some passage of the candidates matched inside a phrase."""
        total = sum(weights.get(t, 0.0) for t in dict.fromkeys(self.tokens))
        if not total:
            return 0.0
        share = {self.tokens[j]: 1.0 for j in found.phrase_positions}
        for _, _, j in found.singles:
            alone = 1.0 if self.standalone[j] else 0.0 if j in compounds else 0.5
            share[self.tokens[j]] = max(share.get(self.tokens[j], 0.0), alone)
        return sum(weights.get(t, 0.0) * f for t, f in share.items()) / total


_WORD = re.compile(r"[^\W\d_]+")
_VIETNAMESE_LETTERS = set("ăâđêôơưĂÂĐÊÔƠƯ")
_VIETNAMESE_MARKS = {"\u0309", "\u0323", "\u031b", "\u0306"}  # hook above, dot below, horn, breve


def text_language(text: str) -> str:
    """"vi", "other" or "none" (no letters). Vietnamese when the text has a letter
    or tone mark only Vietnamese uses among Latin scripts (ă â đ ê ô ơ ư, hook
    above, dot below), or when, typed without diacritics, most of its words (at
    least 3, 60 %) are Vietnamese syllables."""
    words = _WORD.findall(" ".join(nfc(text or "").split()))
    if not words:
        return "none"
    if any(ch in _VIETNAMESE_LETTERS for ch in text):
        return "vi"
    if any(mark in _VIETNAMESE_MARKS for mark in unicodedata.normalize("NFD", text)):
        return "vi"
    if len(words) >= 3 and sum(map(is_vietnamese_syllable, words)) / len(words) >= 0.6:
        return "vi"
    return "other"
