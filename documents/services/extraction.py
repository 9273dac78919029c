"""Extract text and heading structure from an uploaded file.

`unstructured` does the parsing. Before it sees a file, `inspect_file` rejects
what it would choke on or what would hurt the worker (empty files, unsupported
types, damaged or password-protected PDFs and Office files, zip bombs, text
that is not UTF-8) with a message a person can act on.

unstructured downloads the spaCy model `en_core_web_sm` on first use, which
fails offline. `use_offline_nlp()` swaps its loader for a blank multilingual
spaCy pipeline with a rule-based sentencizer: no download, and nothing of
value is lost for us (we use element categories from document structure, not
from part-of-speech heuristics).
"""
from __future__ import annotations

import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from documents.services.text import nfc

log = logging.getLogger(__name__)

SUPPORTED_TYPES = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx",
}
OOXML_TYPES = {"docx", "pptx", "xlsx"}
LANGUAGES = ["vie", "eng"]  # tells unstructured what to expect; it skips language detection
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted OOXML and legacy .doc/.xls live in OLE2


class ExtractionError(Exception):
    """The file cannot be turned into text; the message is shown to people."""


@dataclass
class Section:
    heading_path: list[str]
    text: str


@dataclass
class ExtractedDocument:
    sections: list[Section] = field(default_factory=list)

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


_OFFLINE_NLP_INSTALLED = False


def use_offline_nlp() -> None:
    global _OFFLINE_NLP_INSTALLED
    if _OFFLINE_NLP_INSTALLED:
        return
    import spacy
    from unstructured.nlp import tokenize

    def blank_pipeline():
        nlp = spacy.blank("xx")
        nlp.add_pipe("sentencizer")
        return nlp

    tokenize._load_spacy_model = blank_pipeline
    tokenize._get_nlp.cache_clear()
    _OFFLINE_NLP_INSTALLED = True


def file_kind(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise ExtractionError(f"Unsupported file type '{suffix or '(none)'}'. Supported: {supported}.")
    return SUPPORTED_TYPES[suffix]


def inspect_file(path: Path, filename: str, *, max_bytes: int, max_unpacked: int, max_ratio: int) -> str:
    """Reject bad input before parsing; return the file kind."""
    kind = file_kind(filename)
    size = path.stat().st_size
    if size == 0:
        raise ExtractionError("The file is empty (0 bytes).")
    if size > max_bytes:
        raise ExtractionError(
            f"The file is {size / 1048576:.1f} MB, over the {max_bytes / 1048576:.1f} MB limit "
            "(PORTAL_UPLOAD_MAX_BYTES). The original is kept; raise the limit and re-ingest if it is expected.")
    with path.open("rb") as fh:
        head = fh.read(8)
    if kind in OOXML_TYPES:
        if head == OLE2_MAGIC:
            raise ExtractionError(
                f"The {kind} file is password-protected (encrypted) or in the legacy binary format. "
                "Remove the password or save it as a normal .docx/.pptx/.xlsx and upload again.")
        _check_zip(path, kind, max_unpacked=max_unpacked, max_ratio=max_ratio)
    elif kind == "pdf":
        _check_pdf(path, head)
    else:
        _check_text(path, kind)
    return kind


def _check_zip(path: Path, kind: str, *, max_unpacked: int, max_ratio: int) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {info.filename for info in infos}
    except zipfile.BadZipFile:
        raise ExtractionError(f"The {kind} file is damaged: it is not a valid Office (zip) container.")
    expected = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml", "xlsx": "xl/workbook.xml"}[kind]
    if "[Content_Types].xml" not in names or expected not in names:
        raise ExtractionError(f"The file is not a real {kind} document (its {expected} part is missing).")
    total = sum(info.file_size for info in infos)
    if total > max_unpacked:
        raise ExtractionError(
            f"The {kind} file would unpack to {total / 1048576:.0f} MB (limit "
            f"{max_unpacked / 1048576:.0f} MB): refused as a possible zip bomb.")
    for info in infos:
        if info.compress_size and info.file_size / info.compress_size > max_ratio and info.file_size > 1048576:
            raise ExtractionError(
                f"The {kind} file has a part ({info.filename}) compressed {info.file_size // info.compress_size}:1 "
                f"(limit {max_ratio}:1): refused as a possible zip bomb.")


def _check_pdf(path: Path, head: bytes) -> None:
    if not head.startswith(b"%PDF"):
        raise ExtractionError("The file is not a valid PDF (no %PDF header); it may be damaged or mis-named.")
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("The PDF is password-protected. Remove the password and upload again.")
        if len(reader.pages) == 0:
            raise ExtractionError("The PDF has no pages.")
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError(f"The PDF is damaged and cannot be read ({exc.__class__.__name__}: {exc}).")


def _check_text(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 with a byte-order mark is unambiguous; read_text handles it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractionError(
            f"The {kind} file is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at position {exc.start}). "
            "Save it as UTF-8 (Vietnamese text in TCVN3/VNI/Windows-1258 must be converted first) and upload again.")


def read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def extract(path: Path, filename: str, **limits) -> ExtractedDocument:
    """Parse the file into sections (heading path + body text), NFC-normalised."""
    kind = inspect_file(path, filename, **limits)
    use_offline_nlp()
    try:
        elements = _partition(path, kind)
    except ExtractionError:
        raise
    except Exception as exc:  # parsers raise anything on damaged input
        log.warning("extraction of %s failed", filename, exc_info=True)
        raise ExtractionError(f"The {kind} file could not be read ({exc.__class__.__name__}: {exc}).") from exc
    # Plain text and PDF carry no heading markup; unstructured guesses titles from
    # part-of-speech cues (unavailable offline), so we decide from the line itself.
    doc = sections_from_elements(elements, guess_headings=kind in ("text", "pdf"))
    if not doc.text.strip():
        raise ExtractionError(
            f"No text found in the {kind} file. If it is a scanned document, it needs OCR first.")
    return doc


def _partition(path: Path, kind: str):
    if kind == "text":
        from unstructured.partition.text import partition_text

        return partition_text(text=read_text_file(path), languages=LANGUAGES)
    if kind == "markdown":
        from unstructured.partition.md import partition_md

        return partition_md(text=read_text_file(path), languages=LANGUAGES)
    if kind == "html":
        from unstructured.partition.html import partition_html

        return partition_html(text=read_text_file(path), languages=LANGUAGES)
    if kind == "pdf":
        from unstructured.partition.pdf import partition_pdf

        return partition_pdf(filename=str(path), strategy="fast", languages=LANGUAGES)
    if kind == "docx":
        from unstructured.partition.docx import partition_docx

        return partition_docx(filename=str(path), languages=LANGUAGES)
    if kind == "pptx":
        from unstructured.partition.pptx import partition_pptx

        return partition_pptx(filename=str(path), languages=LANGUAGES)
    if kind == "xlsx":
        from unstructured.partition.xlsx import partition_xlsx

        return partition_xlsx(filename=str(path), find_subtable=False, languages=LANGUAGES)
    raise ExtractionError(f"No extractor for {kind}.")


_NUMBERED = re.compile(
    r"^(?:(?P<num>\d+(?:\.\d+)*)\.?|[IVXLC]+\.|(?:Chương|Phần|Mục|Điều|Chapter|Section|Part)\s+[\dIVXLC]+[.:]?)\s+\S",
    re.IGNORECASE)


def heading_depth(text: str) -> int | None:
    """Depth of a line that reads as a heading in plain text, else None.

    "1. Mục đích" → 1, "3.2 Quy trình" → 2, "QUY TRÌNH MUA SẮM" → 0.
    """
    if len(text) > 120 or "\n" in text or text.endswith((".", ";", ",")):
        return None
    match = _NUMBERED.match(text)
    if match:
        return len(match.group("num").split(".")) if match.group("num") else 1
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 4 and all(c.isupper() for c in letters):
        return 0
    return None


def sections_from_elements(elements, guess_headings: bool = False) -> ExtractedDocument:
    """Group elements into sections under their headings.

    A Title element opens a section; its depth (category_depth from the
    document's own structure, else 0) decides which enclosing headings it keeps.
    """
    doc = ExtractedDocument()
    headings: list[tuple[int, str]] = []
    body: list[str] = []

    def flush():
        text = normalise("\n".join(body))
        if text:
            doc.sections.append(Section([h for _, h in headings], text))
        body.clear()

    sheet = None
    for el in elements:
        page_name = getattr(el.metadata, "page_name", None)  # spreadsheets: the sheet is the heading
        if page_name and page_name != sheet:
            flush()
            sheet = page_name
            headings = [(-1, normalise(page_name))]
        text = normalise(getattr(el, "text", "") or "")
        if el.category == "Table":
            html = getattr(el.metadata, "text_as_html", None)
            text = _table_text(html) if html else text
        if not text:
            continue
        if guess_headings:
            depth = heading_depth(text)
            is_heading = depth is not None
        else:
            # A "Title" that reads like a sentence (slide bullets often do) is body text.
            is_heading = el.category == "Title" and len(text) <= 200 and not (
                text.endswith((".", ";", ",")) and len(text.split()) > 6)
            depth = getattr(el.metadata, "category_depth", None) or 0
        if is_heading:
            flush()
            headings = [(d, h) for d, h in headings if d < depth]
            headings.append((depth, text))
        else:
            body.append(text)
    flush()
    if not doc.sections and headings:
        # A document made only of short lines (slides, lists): keep them as text.
        doc.sections.append(Section([], "\n".join(h for _, h in headings)))
    return doc


def _table_text(html: str) -> str:
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
