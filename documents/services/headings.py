"""Which extracted lines are headings, and the sections they open.

Formats with heading markup (docx, html, md) say so themselves. Slides: only
a slide's title is a heading — a subtitle, a footer text box or a short bullet
that unstructured calls a "Title" is body text. Plain text and PDF carry no
markup, so a line is a heading when it reads like one:

- numbered like an outline: "1. Mục đích", "3.2 Quy trình" (a bare number
  followed by a word — "8 giờ", "35 ngày", "2 người" in a table cell — is a
  quantity, not a heading number), "IV.", "Chương II", "Điều 5";
- and the number continues the outline read so far (after "6.2" come "6.3",
  "7." or "6.2.1", not the "3." of a numbered list inside section 6);
- and the next line does not continue it (a PDF line that wraps ends without
  punctuation and the next line starts in lower case);
- or written in capitals ("QUY TRÌNH MUA SẮM"), or underlined with "===" /
  "---" (plain-text titles), or equal to the document's own title.

Page furniture is never a heading: a line repeated on at least three pages and
on half of them or more (a company name or running header on every page or
slide). The parser's own Header/Footer categories are positional guesses (the
title at the top of page 1 comes back as "Header"), so they decide nothing.
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

from documents.services.text import fold, nfc

_NUMBERED = re.compile(
    r"^(?:(?P<num>\d+\.(?:\d+\.?)*)|(?P<roman>[IVXLC]+)\.|"
    r"(?P<keyword>Chương|Phần|Mục|Điều|Chapter|Section|Part)\s+[\dIVXLC]+[.:]?)\s+\S",
    re.IGNORECASE)
_UNDERLINED = re.compile(r"^(?P<title>.*?\S)\s*\n?\s*(?P<rule>={3,}|-{3,})$")


@dataclass
class Section:
    heading_path: list[str]
    text: str


@dataclass
class ExtractedDocument:
    sections: list[Section] = field(default_factory=list)
    title: str = ""  # the document's own title (file properties or its first heading), "" if none

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections if s.text)


def normalise(text: str) -> str:
    """NFC (Vietnamese diacritics as single code points), unified newlines and
    spaces, no control characters."""
    text = nfc(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines).strip()


def table_text(html: str) -> str:
    """Rows as 'cell | cell' lines, so a spreadsheet row stays together in one chunk."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th") and rows:
                rows[-1].append("")

        def handle_data(self, data):
            if rows and rows[-1]:
                rows[-1][-1] += data

    Rows().feed(html)
    lines = [" | ".join(c.strip() for c in row if c.strip()) for row in rows]
    return normalise("\n".join(line for line in lines if line))


def heading_number(text: str) -> tuple[int, ...] | None:
    """The outline number of a decimal-numbered line: "3.2 Quy trình" → (3, 2)."""
    match = _NUMBERED.match(text)
    if not match or not match.group("num"):
        return None
    return tuple(int(part) for part in match.group("num").strip(".").split("."))


def heading_depth(text: str) -> int | None:
    """Depth of a line that reads as a heading in plain text, else None.

    "1. Mục đích" → 1, "3.2 Quy trình" → 2, "QUY TRÌNH MUA SẮM" → 0,
    "8 giờ" → None (a quantity).
    """
    if len(text) > 120 or "\n" in text or text.endswith((".", ";", ",")):
        return None
    match = _NUMBERED.match(text)
    if match:
        number = heading_number(text)
        return len(number) if number else 1
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 4 and all(c.isupper() for c in letters):
        return 0
    return None


def underlined_title(text: str) -> tuple[str, int] | None:
    """'Quy trình mua sắm =====' (a plain-text title and its underline) → (title, depth)."""
    match = _UNDERLINED.match(text)
    if not match or len(match.group("title")) > 200:
        return None
    return match.group("title"), 0 if match.group("rule").startswith("=") else 1


MAX_NUMBER_GAP = 5  # a skipped number or two is a typo; "2025." after "3." is not the next heading


def continues_outline(outline: tuple[int, ...], number: tuple[int, ...]) -> bool:
    """Whether a heading numbered `number` can follow the numbered heading `outline`:
    a later sibling at some level ("6.2" → "6.3", "7.") or a child ("6.2.1"),
    at most MAX_NUMBER_GAP further on; "3." inside section 6 is a list item."""
    if not outline:
        return True
    depth = len(number)
    if depth > len(outline) + 1 or number[:depth - 1] != outline[:depth - 1]:
        return False
    previous = outline[depth - 1] if depth <= len(outline) else 0
    return previous < number[depth - 1] <= previous + MAX_NUMBER_GAP


def _starts_lower(text: str) -> bool:
    first = next((c for c in text if c.isalnum()), "")
    return first.isalpha() and first.islower()


def repeated_lines(texts_by_page: dict[str, set]) -> set[str]:
    """Lines printed on at least three pages and on half of the pages or more."""
    pages = set().union(*texts_by_page.values()) if texts_by_page else set()
    if len(pages) < 3:
        return set()
    return {text for text, seen in texts_by_page.items()
            if len(seen) >= 3 and 2 * len(seen) >= len(pages)}


class HeadingGuesser:
    """Decides, line by line, whether a line of plain text or PDF is a heading."""

    def __init__(self, title: str = "", furniture: set[str] | None = None):
        self.title_key = fold(title).strip() if title else ""
        self.furniture = furniture or set()
        self.outline: tuple[int, ...] = ()

    def depth(self, text: str, next_text: str) -> tuple[int, str] | None:
        """(depth, heading text) when `text` is a heading, else None."""
        if text in self.furniture:
            return None
        if self.title_key and fold(text).strip() == self.title_key:
            self.outline = ()
            return 0, text
        underlined = underlined_title(text)
        if underlined:
            self.outline = ()
            return underlined[1], underlined[0]
        depth = heading_depth(text)
        if depth is None or (next_text and _starts_lower(next_text)):
            return None  # not heading-like, or a line that wraps into the next one
        number = heading_number(text)
        if number is None:
            self.outline = ()  # capitals, "Chương II", "IV.": numbering may start again below
            return depth, text
        if not continues_outline(self.outline, number):
            return None  # e.g. item "3." of a numbered list inside section 6
        self.outline = number
        return depth, text


def _is_slide_title(el) -> bool:
    # unstructured gives the first paragraph of a slide's title shape depth 0 and
    # every other "Title" (subtitles, text boxes, short bullets) depth >= 1.
    return el.category == "Title" and (getattr(el.metadata, "category_depth", None) or 0) == 0


def _is_marked_heading(el, text: str) -> bool:
    # A "Title" that reads like a sentence (slide bullets often do) is body text.
    return el.category == "Title" and len(text) <= 200 and not (
        text.endswith((".", ";", ",")) and len(text.split()) > 6)


def sections_from_elements(elements, guess_headings: bool = False, *, kind: str = "",
                           title: str = "") -> ExtractedDocument:
    """Group elements into sections under their headings.

    A heading opens a section; its depth (category_depth from the document's own
    structure, the outline number when guessed, else 0) decides which enclosing
    headings it keeps.
    """
    lines = []  # (element, text, sheet)
    for el in elements:
        text = normalise(getattr(el, "text", "") or "")
        if el.category == "Table":
            html = getattr(el.metadata, "text_as_html", None)
            text = table_text(html) if html else text
        page_name = getattr(el.metadata, "page_name", None)  # spreadsheets: the sheet is the heading
        if text or page_name:
            lines.append((el, text, page_name))

    by_page: dict[str, set] = defaultdict(set)
    for el, text, _ in lines:
        page = getattr(el.metadata, "page_number", None)
        if text and page is not None:
            by_page[text].add(page)
    furniture = repeated_lines(by_page)
    guesser = HeadingGuesser(title, furniture)

    doc = ExtractedDocument()
    headings: list[tuple[int, str]] = []
    body: list[str] = []

    def flush():
        text = normalise("\n".join(body))
        if text:
            doc.sections.append(Section([h for _, h in headings], text))
        body.clear()

    sheet = None
    for i, (el, text, page_name) in enumerate(lines):
        if page_name and page_name != sheet:
            flush()
            sheet = page_name
            headings = [(-1, normalise(page_name))]
        if not text:
            continue
        heading = None
        if text in furniture:
            heading = None
        elif guess_headings:
            next_text = lines[i + 1][1] if i + 1 < len(lines) else ""
            heading = guesser.depth(text, next_text)
        elif kind == "pptx":
            heading = (0, text) if _is_slide_title(el) else None
        elif _is_marked_heading(el, text):
            heading = (getattr(el.metadata, "category_depth", None) or 0, text)
        if heading is not None:
            depth, heading_text = heading
            flush()
            headings = [(d, h) for d, h in headings if d < depth]
            headings.append((depth, heading_text))
        else:
            body.append(text)
    flush()
    if not doc.sections and headings:
        # A document made only of short lines (slides, lists): keep them as text.
        doc.sections.append(Section([], "\n".join(h for _, h in headings)))
    return doc
