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

Accents: a query syllable typed with diacritics matches that spelling (case
aside); typed without, it matches any accented form ("nghi phep" finds
"nghỉ phép").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from documents.services.text import SYLLABLE, fold, fold_same_length, has_diacritics, syllable_matches

# One Vietnamese syllable, accents folded: onset? + vowel nucleus + coda?
_VIETNAMESE_SYLLABLE = re.compile(
    r"(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnpqrstvx])?[aeiouy]{1,3}(ch|ng|nh|[cmnpt])?")


def is_vietnamese_syllable(token: str) -> bool:
    return bool(_VIETNAMESE_SYLLABLE.fullmatch(fold(token)))


@dataclass(frozen=True)
class Syllable:
    start: int
    end: int
    lower: str
    folded: str


@dataclass
class Matches:
    syllables: list[Syllable]
    phrases: list[tuple[int, int, int]]  # (first passage syllable, length, first query position)
    singles: list[tuple[int, int]]  # (passage syllable, query position) matched outside any phrase

    @property
    def phrase_positions(self) -> set[int]:
        return {j + n for _, length, j in self.phrases for n in range(length)}


class QueryMatcher:
    def __init__(self, query: str):
        self.tokens = [m.group().lower() for m in syllable_matches(query)]
        self.exact = [has_diacritics(t) for t in self.tokens]
        self.keys = [t if exact else fold(t) for t, exact in zip(self.tokens, self.exact)]
        self.standalone = [len(self.tokens) == 1 or not is_vietnamese_syllable(t) for t in self.tokens]

    def _match(self, syllable: Syllable, j: int) -> bool:
        return (syllable.lower if self.exact[j] else syllable.folded) == self.keys[j]

    def matches(self, text: str) -> Matches:
        """The longest phrases first, left to right; then single syllables."""
        folded = fold_same_length(text)
        syl = [Syllable(m.start(), m.end(), text[m.start():m.end()].lower(), folded[m.start():m.end()])
               for m in SYLLABLE.finditer(text)]
        phrases, singles = [], []
        i = 0
        while i < len(syl):
            best, best_j = 0, -1
            for j in range(len(self.tokens)):
                n = 0
                while (i + n < len(syl) and j + n < len(self.tokens) and self._match(syl[i + n], j + n)
                       and (n == 0 or text[syl[i + n - 1].end:syl[i + n].start].strip() in ("", "-"))):
                    n += 1
                if n > best:
                    best, best_j = n, j
            if best >= 2:
                phrases.append((i, best, best_j))
                i += best
                continue
            if best == 1:
                singles.append((i, best_j))
                singles += [(i, j) for j in range(best_j + 1, len(self.tokens)) if self._match(syl[i], j)]
            i += 1
        return Matches(syl, phrases, singles)

    def coverage(self, found: Matches, weights: dict[str, float], compounds: set[int]) -> float:
        """Share of the query's weight (syllable → weight) that a passage's
        matches cover (see the module docstring); `compounds`: the query
        positions some passage of the candidates matched inside a phrase."""
        total = sum(weights.get(t, 0.0) for t in dict.fromkeys(self.tokens))
        if not total:
            return 0.0
        share = {self.tokens[j]: 1.0 for j in found.phrase_positions}
        for _, j in found.singles:
            alone = 1.0 if self.standalone[j] else 0.0 if j in compounds else 0.5
            share[self.tokens[j]] = max(share.get(self.tokens[j], 0.0), alone)
        return sum(weights.get(t, 0.0) * f for t, f in share.items()) / total
