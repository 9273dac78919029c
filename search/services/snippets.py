"""Snippets: the passage of a chunk that best matches the query, with the
query's words highlighted.

- **Phrases first** (search.services.matching): a run of adjacent passage
  syllables matching adjacent query syllables is highlighted as one phrase,
  the longest first. A query syllable found alone is highlighted when it is a
  word by itself (an acronym, a code: "VPN"), or — not a function word — when
  no phrase of the query matches in the passage at all and the syllable is not
  part of a phrase in the search's other results: "quy trình nghỉ phép" marks
  "quy trình" and "nghỉ phép", never "trình" in "giải trình" nor "quy" in
  "quy tắc".
- **Accents.** A query syllable typed with diacritics matches exactly (case
  aside); typed without, it matches any accented form ("nghi phep" marks
  "nghỉ phép").
- **The window** is the stretch of content text with the most query matter
  (distinct syllables, phrases counting more); document-control lines ("Mã tài
  liệu: … | Phiên bản: …"), separator lines ("=====") and a document's
  masthead (its opening lines before the first sentence) never start or fill
  a window. A chunk that is nothing but those is not worth a snippet
  (`has_content`): the caller takes the document's next passage instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from documents.services.keywords import STOPWORDS
from search.services.matching import QueryMatcher

WIDTH = 280

_SEPARATOR = re.compile(r"^[\W_]*$")  # no letter or digit: "=====", "---", "* * *"
_CONTROL_LABEL = re.compile(
    r"^\s*(mã (tài liệu|số|hiệu)|số hiệu|phiên bản|lần ban hành|ngày (hiệu lực|ban hành|cập nhật)|"
    r"đơn vị ban hành|đơn vị soạn thảo|người (soạn thảo|soạn|kiểm tra|phê duyệt|duyệt)|phân loại|"
    r"document (code|id|no\.?|number)|version|revision|effective date|issue date|issued by|"
    r"approved by|prepared by|classification)\s*[:：]", re.IGNORECASE)
_LABELLED_FIELD = re.compile(r"[^|:：]{1,40}[:：][^|]+")
_PAGE_LINE = re.compile(r"^\s*(trang|page)\s+\d+(\s*(/|of|trên)\s*\d+)?\s*$", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?…;:]\s*$")


def is_control_line(line: str) -> bool:
    """A document-control or separator line: metadata, not content."""
    text = line.strip()
    if not text or _SEPARATOR.match(text) or _PAGE_LINE.match(text) or _CONTROL_LABEL.match(text):
        return True
    fields = [f for f in text.split("|") if f.strip()]
    return len(fields) >= 2 and all(_LABELLED_FIELD.fullmatch(f.strip()) for f in fields)


def _is_prose(line: str) -> bool:
    words = line.split()
    return len(words) >= 12 or (len(words) >= 4 and bool(_SENTENCE.search(line)))


@dataclass(frozen=True)
class _Line:
    start: int
    end: int


# Lines, and runs of separator characters: plain-text extraction glues a
# setext underline ("=====") and the next line to a title.
_BREAK = re.compile(r"\n|[=\-_*#~]{3,}")
_FIELD_START = re.compile(r"(?:^|(?<=\s))" + _CONTROL_LABEL.pattern.removeprefix(r"^\s*"), re.IGNORECASE)


def _control_tail(segment: str) -> int | None:
    """Where a run of 'label: value | label: value' document-control fields
    glued to the end of a line begins, if one is."""
    for match in _FIELD_START.finditer(segment):
        fields = [f for f in segment[match.start():].split("|") if f.strip()]
        if len(fields) >= 2 and all(_LABELLED_FIELD.fullmatch(f.strip()) for f in fields):
            return match.start()
    return None


def content_lines(text: str, *, masthead: bool = False) -> list[_Line]:
    """The stretches of `text` that are content: its lines, cut at separator
    runs and before glued document-control fields, less control lines. With
    `masthead` (the document's first chunk), the short lines before its first
    sentence-like line (company name, title) are left out too."""
    lines, pos = [], 0
    pieces = []
    for match in _BREAK.finditer(text):
        pieces.append((pos, match.start()))
        pos = match.end()
    pieces.append((pos, len(text)))
    for start, end in pieces:
        tail = _control_tail(text[start:end])
        end = start + tail if tail is not None else end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and not is_control_line(text[start:end]):
            lines.append((_Line(start, end), text[start:end]))
    if masthead:
        first = next((i for i, (_, raw) in enumerate(lines) if _is_prose(raw)), len(lines))
        lines = lines[first:]
    return [line for line, _ in lines]


class Snippets:
    """Snippets for one query (see the module docstring)."""

    def __init__(self, query: str):
        self.matcher = QueryMatcher(query)
        # query positions seen inside a phrase in some passage of this search:
        # such a syllable belongs to a compound, and is never marked alone
        self.compounds: set[int] = set()

    def learn_compounds(self, texts) -> None:
        """Note which query syllables form phrases in these passages (a search's
        results): "quy" of "quy trình" is then not marked in "quy tắc"."""
        for text in texts:
            self.compounds |= self.matcher.matches(text).phrase_positions

    def spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, syllables) of the highlighted matches in `text`, in order."""
        m = self.matcher
        if not m.tokens:
            return []
        found = m.matches(text)
        out = [(start, end, n) for start, end, n, _ in found.phrases]
        for start, end, j in found.singles:
            if m.standalone[j] or (not found.phrases and j not in self.compounds
                                   and m.tokens[j] not in STOPWORDS):
                out.append((start, end, 1))
        return sorted(set(out))

    def has_content(self, text: str, *, masthead: bool = False) -> bool:
        return bool(content_lines(text, masthead=masthead))

    def snippet(self, text: str, *, masthead: bool = False, width: int = WIDTH) -> SafeString:
        lines = content_lines(text, masthead=masthead)
        if not lines:
            return mark_safe("")
        spans = [s for s in self.spans(text) if any(line.start <= s[0] and s[1] <= line.end for line in lines)]
        start = self._window_start(text, lines, spans, width)
        pieces = self._window(text, lines, start, width)
        shown = [s for s in spans if any(a <= s[0] and s[1] <= b for a, b in pieces)]
        out = ["… " if start > lines[0].start else ""]
        for n, (a, b) in enumerate(pieces):
            if n:
                out.append(" " if a == pieces[n - 1][1] + 1 else " … ")
            pos = a
            for s, e, _ in shown:
                if a <= s and e <= b:
                    out += [escape(text[pos:s]), f"<mark>{escape(text[s:e])}</mark>"]
                    pos = e
            out.append(escape(text[pos:b]))
        if pieces[-1][1] < lines[-1].end:
            out.append(" …")
        return mark_safe("".join(out))

    def _window_start(self, text, lines, spans, width) -> int:
        """The start (a line or sentence start, or shortly before a match) of
        the window holding the most query matter; the first content line when
        nothing matches."""
        if not spans:
            return lines[0].start
        candidates = {line.start for line in lines}
        candidates |= {max(_line_of(lines, s).start, _word_start(text, s - width // 5)) for s, _, _ in spans}

        # Matches in a heading-like line (short, no sentence) count half: a title
        # that repeats the query says less than a sentence that answers it.
        weight = {s: 1.0 if _is_prose(text[_line_of(lines, s).start:_line_of(lines, s).end]) else 0.5
                  for s, _, _ in spans}

        def matter(begin: int) -> tuple:
            inside = {text[s:e].lower(): (s, n) for s, e, n in spans if begin <= s and e <= begin + width}
            return (sum(weight[s] * n for s, n in inside.values()), -begin)

        return max(sorted(candidates), key=matter)

    @staticmethod
    def _window(text, lines, start, width) -> list[tuple[int, int]]:
        """Up to `width` characters of content from `start`, across content
        lines only, cut at a word boundary."""
        pieces, room = [], width
        for line in lines:
            if line.end <= start or room <= 0:
                continue
            a = max(line.start, start)
            b = min(line.end, a + room)
            if b < line.end:
                space = text.rfind(" ", a, b + 1)
                pieces.append((a, space if space > a + room // 2 else b))
                break
            pieces.append((a, b))
            room -= b - a + 1
        return pieces


def _line_of(lines, pos):
    return next((line for line in lines if line.start <= pos <= line.end), lines[0])


def _word_start(text: str, pos: int) -> int:
    pos = max(0, pos)
    space = text.rfind(" ", 0, pos)
    return space + 1 if space >= 0 and pos - space < 30 else pos


def make_snippet(text: str, query: str, width: int = WIDTH) -> SafeString:
    """The snippet of `text` for `query` (one-off use; a search reuses one Snippets)."""
    return Snippets(query).snippet(text, width=width)
