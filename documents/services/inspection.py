"""Checks a file must pass before a parser sees it: its type, size, and the
things that would hurt the worker or that it cannot read (damaged or
password-protected PDFs and Office files, zip bombs, text that is not UTF-8),
each refused with a message a person can act on.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

SUPPORTED_TYPES = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx",
}
OOXML_TYPES = {"docx", "pptx", "xlsx"}
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted OOXML and legacy .doc/.xls live in OLE2


class ExtractionError(Exception):
    """The file cannot be turned into text; the message is shown to people."""


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
