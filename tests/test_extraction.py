"""Extraction of every supported format, offline, and a clear refusal for every bad input."""
import socket
import urllib.request

import pytest

from documents.services import extraction
from tests import files

LIMITS = dict(max_bytes=5 * 1024 * 1024, max_unpacked=20 * 1024 * 1024, max_ratio=200)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Extraction must never reach for the network (unstructured would fetch a spaCy model)."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted during extraction")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("kind", sorted(files.GOOD))
def test_every_format_extracts_offline_with_diacritics(tmp_path, kind):
    path = write(tmp_path, f"doc.{kind}", files.GOOD[kind]())
    doc = extraction.extract(path, path.name, **LIMITS)
    text = doc.text
    headings = " ".join(h for s in doc.sections for h in s.heading_path)
    if kind != "xlsx":
        assert "1. Mục đích" in text + headings
        assert "Nghị định 13/2023/NĐ-CP" in text
        assert "nhân viên thời vụ" in text
    else:
        assert headings == "KPI quý 3"
        assert "Doanh thu (tỷ đồng) | 120 | 131" in text


@pytest.mark.parametrize("kind", ["docx", "md", "html", "txt", "pdf"])
def test_headings_become_section_paths(tmp_path, kind):
    path = write(tmp_path, f"doc.{kind}", files.GOOD[kind]())
    doc = extraction.extract(path, path.name, **LIMITS)
    paths = [s.heading_path for s in doc.sections]
    assert any(p and p[-1] == "2. Phạm vi áp dụng" for p in paths), paths
    scope = next(s for s in doc.sections if s.heading_path and s.heading_path[-1] == "2. Phạm vi áp dụng")
    assert "VPN" in scope.text and "Nghị định" not in scope.text


def test_unstructured_nlp_runs_without_the_spacy_download():
    extraction.use_offline_nlp()
    from unstructured.nlp.tokenize import sent_tokenize

    assert sent_tokenize("Câu thứ nhất. Câu thứ hai.") == ["Câu thứ nhất.", "Câu thứ hai."]
    with pytest.raises(ImportError):
        import en_core_web_sm  # noqa: F401  (the model is not installed and never fetched)


BAD = {
    "empty": ("empty.txt", lambda: b"", "empty"),
    "corrupted_pdf": ("broken.pdf", files.corrupted_pdf_bytes, "damaged"),
    "fake_pdf": ("fake.pdf", lambda: b"this is not a pdf at all", "not a valid PDF"),
    "password_pdf": ("secret.pdf", lambda: files.pdf_bytes(encrypt_with="123"), "password-protected"),
    "password_docx": ("secret.docx", files.encrypted_docx_bytes, "password-protected"),
    "unsupported": ("movie.mp4", lambda: b"\x00\x00\x00\x18ftypmp42", "Unsupported file type '.mp4'"),
    "no_extension": ("README", lambda: b"hello", "Unsupported file type '(none)'"),
    "too_large": ("big.txt", lambda: b"a" * (5 * 1024 * 1024 + 1), "over the 5.0 MB limit"),
    "not_utf8": ("legacy.txt", files.not_utf8_txt_bytes, "not UTF-8"),
    "zip_bomb": ("bomb.docx", files.zip_bomb_docx_bytes, "zip bomb"),
    "zip_not_docx": ("plain.docx", lambda: files.xlsx_bytes(), "not a real docx"),
    "no_text_pdf": ("blank.pdf", None, "No text found"),
}


def blank_pdf():
    from reportlab.pdfgen import canvas
    import io

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.rect(100, 100, 200, 200)
    c.save()
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_a_clear_reason(tmp_path, case):
    name, make, reason = BAD[case]
    data = blank_pdf() if make is None else make()
    path = write(tmp_path, name, data)
    with pytest.raises(extraction.ExtractionError) as err:
        extraction.extract(path, name, **LIMITS)
    assert reason in str(err.value)
    assert path.read_bytes() == data  # the original is untouched


def test_utf16_text_with_bom_is_read(tmp_path):
    path = write(tmp_path, "u16.txt", "\ufeffQuy định nghỉ phép năm".encode("utf-16"))
    assert "Quy định nghỉ phép năm" in extraction.extract(path, path.name, **LIMITS).text


def test_plain_text_heading_guess():
    assert extraction.heading_depth("1. Mục đích") == 1
    assert extraction.heading_depth("3.2 Quy trình phê duyệt") == 2
    assert extraction.heading_depth("QUY TRÌNH MUA SẮM") == 0
    assert extraction.heading_depth("Nhân viên phải nộp đơn trước 3 ngày.") is None
