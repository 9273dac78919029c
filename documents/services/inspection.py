"""Checks a file must pass before a parser sees it: its type, size, and the
things that would hurt the worker or that it cannot read (damaged or
password-protected PDFs and Office files, zip and PDF decompression bombs,
text that is not UTF-8), each refused with a message a person can act on.

`upload_refusal` is the part of these checks that needs only the name and the
size: every entry point (portal form, admin, API, `manage.py ingest`) applies
it at the request, before anything is stored. The content is still checked
here in the worker: the extension is not trusted.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from django.utils.translation import gettext as _

SUPPORTED_TYPES = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx",
}
OOXML_TYPES = {"docx", "pptx", "xlsx"}
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted OOXML and legacy .doc/.xls live in OLE2


class ExtractionError(Exception):
    """The file cannot be turned into text; the message is shown to people."""


def supported_list() -> str:
    """".docx, .htm, .html, …" for messages."""
    return ", ".join(sorted(SUPPORTED_TYPES))


def megabytes(size: int) -> str:
    return f"{size / 1048576:.1f} MB"


def unsupported_type_message(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return _("Unsupported file type '%(suffix)s'. Supported: %(supported)s.") % {
        "suffix": suffix or _("(none)"), "supported": supported_list()}


def too_large_message(size: int, max_bytes: int) -> str:
    return _("The file is %(size)s, over the %(limit)s limit.") % {
        "size": megabytes(size), "limit": megabytes(max_bytes)}


def upload_refusal(filename: str, size: int | None, max_bytes: int) -> str | None:
    """Why an upload is refused from its name and size alone, or None.

    Checked at the request by every entry point, so a refused file is never stored."""
    if Path(filename).suffix.lower() not in SUPPORTED_TYPES:
        return unsupported_type_message(filename)
    if size is not None and size > max_bytes:
        return too_large_message(size, max_bytes) + " " + _("Supported: %(supported)s, up to %(limit)s.") % {
            "supported": supported_list(), "limit": megabytes(max_bytes)}
    if size == 0:
        return _("The file is empty (0 bytes).")
    return None


def file_kind(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        raise ExtractionError(unsupported_type_message(filename))
    return SUPPORTED_TYPES[suffix]


def inspect_file(path: Path, filename: str, *, max_bytes: int, max_unpacked: int, max_ratio: int) -> str:
    """Reject bad input before parsing; return the file kind."""
    kind = file_kind(filename)
    size = path.stat().st_size
    if size == 0:
        raise ExtractionError("The file is empty (0 bytes).")
    if size > max_bytes:
        raise ExtractionError(too_large_message(size, max_bytes) + " " + _(
            "The original is kept; raise PORTAL_UPLOAD_MAX_BYTES and re-ingest if it is expected."))
    with path.open("rb") as fh:
        head = fh.read(8)
    if kind in OOXML_TYPES:
        if head == OLE2_MAGIC:
            raise ExtractionError(
                f"The {kind} file is password-protected (encrypted) or in the legacy binary format. "
                "Remove the password or save it as a normal .docx/.pptx/.xlsx and upload again.")
        _check_zip(path, kind, max_unpacked=max_unpacked, max_ratio=max_ratio)
    elif kind == "pdf":
        _check_pdf(path, head, max_unpacked=max_unpacked, max_ratio=max_ratio)
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


def _check_pdf(path: Path, head: bytes, *, max_unpacked: int, max_ratio: int) -> None:
    if not head.startswith(b"%PDF"):
        raise ExtractionError("The file is not a valid PDF (no %PDF header); it may be damaged or mis-named.")
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("The PDF is password-protected. Remove the password and upload again.")
        if len(reader.pages) == 0:
            raise ExtractionError("The PDF has no pages.")
        _check_pdf_streams(reader, max_unpacked=max_unpacked, max_ratio=max_ratio)
    except ExtractionError:
        raise
    except LimitReachedError as exc:  # pypdf's own decoding limits (object streams)
        raise ExtractionError(_bomb_message(max_unpacked)) from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError(f"The PDF is damaged and cannot be read ({exc.__class__.__name__}: {exc}).")


def _bomb_message(max_unpacked: int, max_ratio: int | None = None) -> str:
    if max_ratio is not None:
        return _("The PDF has a stream compressed more than %(ratio)d:1 (limit "
                 "PORTAL_INGEST_MAX_COMPRESSION_RATIO): refused as a possible decompression bomb.") % {
            "ratio": max_ratio}
    return _("The PDF would unpack to more than %(limit)s (limit PORTAL_INGEST_MAX_UNPACKED_BYTES): refused "
             "as a possible decompression bomb.") % {"limit": megabytes(max_unpacked)}


_FLATE = ("/FlateDecode", "/Fl")
_TEXT_ENCODINGS = ("/ASCIIHexDecode", "/AHx", "/ASCII85Decode", "/A85")  # shrink, never expand


def _check_pdf_streams(reader, *, max_unpacked: int, max_ratio: int) -> None:
    """Inflate every non-image stream with a bound, never whole: the text
    extractor (pdfminer) would inflate them all in memory, and a content stream
    of a few KB can inflate to gigabytes ("needs OCR" after minutes, or the
    worker killed). Same limits as Office zips: total size and per-stream ratio."""
    from pypdf.generic import IndirectObject, StreamObject

    budget = max_unpacked
    for generation, objects in reader.xref.items():
        for number in objects:
            try:
                obj = reader.get_object(IndirectObject(number, generation, reader))
            except Exception:  # a damaged object: the parser copes or fails with its own reason
                continue
            if not isinstance(obj, StreamObject) or obj.get("/Subtype") == "/Image":
                continue  # images are not decoded to extract text
            raw = getattr(obj, "_data", b"") or b""
            size = _decoded_size(obj, raw, limit=min(budget, max(1 << 20, max_ratio * max(len(raw), 1))) + 1)
            if size > 1 << 20 and size > max_ratio * max(len(raw), 1):
                raise ExtractionError(_bomb_message(max_unpacked, max_ratio))
            budget -= size
            if budget < 0:
                raise ExtractionError(_bomb_message(max_unpacked))


def _decoded_size(stream, raw: bytes, *, limit: int) -> int:
    """Bytes the stream decodes to, counted up to `limit` (then it stops)."""
    filters = stream.get("/Filter")
    filters = [str(f) for f in (filters if isinstance(filters, list) else [filters] if filters else [])]
    while filters and filters[0] in _TEXT_ENCODINGS:
        from pypdf.filters import ASCII85Decode, ASCIIHexDecode

        decoder = ASCIIHexDecode if filters.pop(0) in ("/ASCIIHexDecode", "/AHx") else ASCII85Decode
        raw = decoder.decode(raw)
        raw = raw.encode("latin-1") if isinstance(raw, str) else raw
    if not filters:
        return len(raw)
    if filters[0] not in _FLATE:
        return len(raw)  # LZW and run-length go through pypdf's own output limits
    inflater, chunk = zlib.decompressobj(), 1 << 20
    total, pending = 0, raw
    try:
        while total < limit:
            out = inflater.decompress(pending, chunk)
            total += len(out)
            pending = inflater.unconsumed_tail
            if not pending and len(out) < chunk:
                break  # all input consumed and no output held back
    except zlib.error:
        pass  # damaged data: counted up to where it breaks
    return total


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


