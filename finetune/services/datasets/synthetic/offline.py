"""Synthetic queries without any service, from what a chunk already says about
itself: its section heading, its document's title, its first content sentence,
its keywords — and the first of these typed without diacritics, as employees
often type ("nghi phep nam"); in that order, as many as asked per chunk.

Vietnamese-aware: heading numbers ("4.1", "Điều 5.", "Chương II") are dropped;
a generic heading ("Mục đích", "Phạm vi áp dụng", "Scope") is completed with the
document's title, or it would match every document; document-control lines
("Mã tài liệu: … | Phiên bản: …") and a document's masthead never give a
sentence (search.services.snippets.content_lines). A heading query is written
for the first chunk of a section only: the same query for several chunks of one
section would make them false negatives of each other in training.

These queries are easier than real ones (they reuse the passage's own words);
docs/finetuning.md says what that costs.
"""
from __future__ import annotations

import re

from documents.services.text import fold, has_diacritics
from finetune.services.datasets.synthetic.chunks import SourceChunk
from finetune.services.texts import clean, near_key
from search.services.snippets import content_lines

GENERIC_HEADINGS = {near_key(h) for h in (
    "Mục đích", "Phạm vi", "Phạm vi áp dụng", "Đối tượng áp dụng", "Phạm vi và đối tượng áp dụng",
    "Giải thích từ ngữ", "Định nghĩa", "Thuật ngữ", "Tổng quan", "Giới thiệu", "Quy định chung",
    "Điều khoản thi hành", "Tổ chức thực hiện", "Hiệu lực", "Hiệu lực thi hành", "Phụ lục", "Tài liệu liên quan",
    "Tài liệu tham khảo", "Lịch sử thay đổi", "Trách nhiệm", "Nội dung", "Ghi chú", "Liên hệ", "Kết luận",
    "Purpose", "Scope", "Overview", "Introduction", "Definitions", "General", "Appendix", "References",
    "Responsibilities", "Contacts", "Summary", "Revision history", "Notes")}
_NUMBERING = re.compile(
    r"^\s*(?:(?:chương|điều|mục|phần|phụ lục|chapter|section|article|part|appendix)\s+[0-9ivxlcdm]+[a-z]?"
    r"\s*[.:)\-–]?\s*|\d+(?:\.\d+)*\.?\)?\s+|[ivxlcdm]+[.)]\s+|[a-zđ][.)]\s+)", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:[-*•+–]|\d+[.)]|[a-zđ][.)])\s+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_TRAILING = re.compile(r"[\s.,;:!?…\-–(]+$")
SENTENCE_WORDS = 12


def strip_numbering(heading: str) -> str:
    return clean(_NUMBERING.sub("", clean(heading), count=1))


def casual(text: str) -> str:
    """As a person types a query: no closing punctuation, the first letter in
    lower case unless it starts an acronym ("VPN")."""
    text = _TRAILING.sub("", clean(text))
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


class OfflineGenerator:
    name = "offline"

    def __init__(self, per_chunk: int = 3):
        self.per_chunk = per_chunk
        self._titled: set[str] = set()  # documents whose title query is written

    def has_content(self, chunk: SourceChunk) -> bool:
        return bool(self._content(chunk))

    def _content(self, chunk: SourceChunk) -> list[str]:
        return [chunk.text[line.start:line.end] for line in content_lines(chunk.text, masthead=chunk.ordinal == 0)]

    def heading(self, chunk: SourceChunk) -> tuple[str, str] | None:
        if not chunk.heading_path or not chunk.first_of_section:
            return None
        heading = strip_numbering(chunk.heading_path[-1])
        if not heading:
            return None
        if near_key(heading) == near_key(chunk.title):
            return casual(heading), "title"
        if near_key(heading) in GENERIC_HEADINGS or len(heading.split()) < 2:
            heading = f"{heading} {casual(chunk.title)}" if chunk.title else heading
        return casual(heading), "heading"

    def sentence(self, chunk: SourceChunk) -> tuple[str, str] | None:
        """The opening of the first content sentence that is not a heading or a
        table row, cut at a comma when the sentence is long."""
        headings = {near_key(h) for h in chunk.heading_path} | {near_key(strip_numbering(h)) for h in chunk.heading_path}
        for line in self._content(chunk):
            line = _LIST_MARK.sub("", line)
            if " | " in line or near_key(line) in headings or near_key(strip_numbering(line)) in headings:
                continue
            words = _SENTENCE_END.split(line, maxsplit=1)[0].split()
            if len(words) < 4:
                continue
            if len(words) > SENTENCE_WORDS:
                cut = max((i for i, w in enumerate(words[:SENTENCE_WORDS]) if w.endswith((",", ";", ":"))),
                          default=-1)
                words = words[:cut + 1] if cut >= 4 else words[:SENTENCE_WORDS]
            return casual(" ".join(words)), "sentence"
        return None

    def keywords(self, chunk: SourceChunk, taken: list[str]) -> tuple[str, str] | None:
        """Up to three keywords that neither repeat a query already written nor
        overlap each other ("phòng tài chính kế" after "tài chính kế toán")."""
        said = set(" ".join(near_key(q) for q in taken).split())
        chosen: list[str] = []
        for keyword in chunk.keywords:
            words = set(near_key(keyword).split())
            if not words or len(words & said) * 2 >= len(words):
                continue
            chosen.append(keyword)
            said |= words
            if len(chosen) == 3:
                break
        if len(chosen) >= 2 or sum(len(k.split()) for k in chosen) >= 2:
            return " ".join(chosen), "keywords"
        return None

    def generate(self, chunk: SourceChunk, n: int | None = None) -> list[tuple[str, str]]:
        n = n or self.per_chunk
        if not self.has_content(chunk):
            return []
        found: list[tuple[str, str]] = []
        if (q := self.heading(chunk)) is not None:
            found.append(q)
        # the title goes with the document's first chunk that has content (the
        # very first is often nothing but the masthead and control lines)
        if chunk.doc_key not in self._titled and chunk.title:
            self._titled.add(chunk.doc_key)
            if all(kind != "title" for _, kind in found):
                found.append((casual(chunk.title), "title"))
        if (q := self.sentence(chunk)) is not None:
            found.append(q)
        if found and has_diacritics(found[0][0]):
            found.append((fold(found[0][0]), "unaccented"))
        if (q := self.keywords(chunk, [q for q, _ in found])) is not None:
            found.append(q)
        unique: dict[str, tuple[str, str]] = {}
        for query, kind in found:
            if len(query.split()) >= 1 and query.lower() not in unique:
                unique[query.lower()] = (query, kind)
        return list(unique.values())[:n]
