"""A document's own title: its file properties first (Office core properties,
PDF metadata, HTML <title>), else its first top-level heading that is not an
outline number ("1. Mục đích" names a section, not the document).

Property titles that editors fill in by themselves ("Microsoft Word - x.docx",
"PowerPoint Presentation", "Untitled", "Slide 1") say nothing and are skipped.
"""
from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from documents.services.headings import ExtractedDocument, heading_number, normalise

log = logging.getLogger(__name__)

MAX_TITLE_LENGTH = 300  # Document.title
_PLACEHOLDER = re.compile(
    r"^(untitled|no title|title|document\s*\d*|presentation\s*\d*|powerpoint presentation|book\s*\d*|"
    r"slide\s*\d+|workbook\s*\d*|microsoft (word|excel|powerpoint)\b.*|tài liệu\s*\d*|"
    r"trang tính\s*\d*|.*\.(docx?|pptx?|xlsx?|pdf|html?|txt|md))$", re.IGNORECASE)
_CORE_NS = {"dc": "http://purl.org/dc/elements/1.1/"}


def meaningful(title: str | None, filename: str = "") -> str:
    """The title cleaned up, or "" when it is empty or a placeholder."""
    title = normalise(title or "").replace("\n", " ").strip()
    if not title or not any(c.isalpha() for c in title) or _PLACEHOLDER.match(title):
        return ""
    if filename and title.casefold() == Path(filename).stem.casefold():
        return ""
    return title[:MAX_TITLE_LENGTH]


def property_title(path: Path, kind: str) -> str:
    """The title stored in the file's properties, "" if none can be read."""
    try:
        if kind in ("docx", "pptx", "xlsx"):
            return _office_title(path)
        if kind == "pdf":
            return _pdf_title(path)
        if kind == "html":
            return _html_title(path, "title")
    except Exception:  # a damaged property block must not fail the document
        log.info("no readable title property in %s", path.name, exc_info=True)
    return ""


def _office_title(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo("docProps/core.xml")
        except KeyError:
            return ""
        if info.file_size > 1_000_000:  # the properties part is a few KB; the zip checks ran already
            return ""
        root = ElementTree.fromstring(zf.read(info))
    node = root.find("dc:title", _CORE_NS)
    return node.text or "" if node is not None else ""


def _pdf_title(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path), strict=False)
    if reader.is_encrypted:
        reader.decrypt("")
    metadata = reader.metadata
    return str(metadata.title or "") if metadata is not None else ""


def _html_title(path: Path, tag: str) -> str:
    from html.parser import HTMLParser

    from documents.services.inspection import read_text_file

    found: list[str] = []

    class Finder(HTMLParser):
        depth = 0

        def handle_starttag(self, name, attrs):
            if name == tag and not found:
                self.depth = 1
                found.append("")

        def handle_endtag(self, name):
            if name == tag:
                self.depth = 0

        def handle_data(self, data):
            if self.depth and found:
                found[-1] += data

    Finder().feed(read_text_file(path))
    return found[0] if found else ""


def first_heading(doc: ExtractedDocument) -> str:
    """The first top-level heading that is not an outline number (sheets excluded)."""
    for section in doc.sections:
        for heading in section.heading_path[:1]:
            if heading_number(heading) is None:
                return heading
        if section.heading_path:
            return ""  # the document starts with numbered sections: no title heading
    return ""


def fallback_title(path: Path, kind: str, doc: ExtractedDocument, filename: str = "") -> str:
    """Without a title property: an HTML page's <h1>, else the first title heading."""
    title = meaningful(_safe(lambda: _html_title(path, "h1")), filename) if kind == "html" else ""
    if not title and kind != "xlsx":  # a sheet name is not a title
        title = meaningful(first_heading(doc), filename)
    return title


def _safe(read) -> str:
    try:
        return read()
    except Exception:
        return ""
