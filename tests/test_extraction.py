"""Extraction of every supported format, offline, and a clear refusal for every bad input."""
import socket
import urllib.request

import pytest
from django.utils import translation

from documents.services import extraction
from tests import files

LIMITS = dict(max_bytes=5 * 1024 * 1024, max_unpacked=20 * 1024 * 1024, max_ratio=200)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English (the msgids): the default interface
    language is Vietnamese, and its catalog translates them once the i18n work lands."""
    with translation.override("en"):
        yield


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
    "pdf_bomb": ("bomb.pdf", files.pdf_bomb_bytes, "decompression bomb"),
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


def test_a_pdf_decompression_bomb_is_refused_without_inflating_it(tmp_path):
    """256 MB of page content packed into ~1 MB: refused as a bomb (not "needs OCR"),
    with the real limits, and extraction never holds more than a few MB of it."""
    import tracemalloc

    path = write(tmp_path, "bomb.pdf", files.pdf_bomb_bytes(256, level=1))
    assert path.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(extraction.ExtractionError) as err:
            extraction.extract(path, path.name, max_bytes=50 * 1024 * 1024, max_unpacked=300 * 1024 * 1024,
                               max_ratio=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "decompression bomb" in str(err.value) and "OCR" not in str(err.value)
    assert peak < 32 * 1024 * 1024, f"peak {peak / 1048576:.0f} MB"


def test_a_large_pdf_within_the_limits_is_not_a_bomb(tmp_path):
    # a long text PDF compresses a few times, far from the ratio limit
    from reportlab.pdfgen import canvas
    import io

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for page in range(30):
        for line in range(40):
            c.drawString(40, 800 - 18 * line, f"Dòng {line} trang {page}: quy định về sao lưu dữ liệu hệ thống.")
        c.showPage()
    c.save()
    path = write(tmp_path, "long.pdf", buf.getvalue())
    assert "trang 29" in extraction.extract(path, path.name, **LIMITS).text


def test_utf16_text_with_bom_is_read(tmp_path):
    path = write(tmp_path, "u16.txt", "\ufeffQuy định nghỉ phép năm".encode("utf-16"))
    assert "Quy định nghỉ phép năm" in extraction.extract(path, path.name, **LIMITS).text


def test_plain_text_heading_guess():
    assert extraction.heading_depth("1. Mục đích") == 1
    assert extraction.heading_depth("3.2 Quy trình phê duyệt") == 2
    assert extraction.heading_depth("3.1 Quy tắc 3-2-1") == 2
    assert extraction.heading_depth("QUY TRÌNH MUA SẮM") == 0
    assert extraction.heading_depth("Chương II Quy định chung") == 1
    assert extraction.heading_depth("Nhân viên phải nộp đơn trước 3 ngày.") is None


@pytest.mark.parametrize("cell", ["8 giờ", "4 giờ", "35 ngày", "12 tuần", "10 năm (dữ liệu kế toán)", "2 người"])
def test_a_quantity_is_not_a_numbered_heading(cell):
    # table cells of IT_GUIDE_2024_002.pdf: a bare number and a word is a quantity
    assert extraction.heading_depth(cell) is None


def el(category, text, page=None, depth=None):
    from unstructured.documents.elements import ElementMetadata, Footer, ListItem, NarrativeText, Title

    kinds = {"Title": Title, "ListItem": ListItem, "NarrativeText": NarrativeText, "Footer": Footer}
    return kinds[category](text=text, metadata=ElementMetadata(page_number=page, category_depth=depth))


def headings_of(doc):
    return [s.heading_path for s in doc.sections]


def test_a_numbered_list_inside_a_section_is_not_a_heading():
    elements = [el("ListItem", "6. Hướng dẫn khôi phục"), el("Title", "6.2 Khôi phục cơ sở dữ liệu"),
                el("ListItem", "1. Khôi phục vào một máy chủ tạm."),
                el("ListItem", "3. Thực hiện khôi phục và kiểm tra tính toàn vẹn"),  # no period: looks like a heading
                el("NarrativeText", "Kết quả được ghi lại."), el("ListItem", "7. Kiểm tra định kỳ"),
                el("NarrativeText", "Mỗi quý.")]
    doc = extraction.sections_from_elements(elements, guess_headings=True)
    assert headings_of(doc) == [["6. Hướng dẫn khôi phục", "6.2 Khôi phục cơ sở dữ liệu"], ["7. Kiểm tra định kỳ"]]
    assert "3. Thực hiện khôi phục" in doc.sections[0].text


def test_outline_continuation():
    from documents.services.headings import continues_outline

    assert continues_outline((), (3,))
    assert continues_outline((6, 2), (6, 3)) and continues_outline((6, 2), (7,))
    assert continues_outline((6, 2), (6, 2, 1)) and continues_outline((6,), (6, 1))
    assert not continues_outline((6, 2), (3,)) and not continues_outline((6, 2), (6, 1))
    assert not continues_outline((6,), (5, 1)) and not continues_outline((6,), (6, 1, 1))
    assert not continues_outline((3,), (2025,))


def test_a_line_that_wraps_into_the_next_is_not_a_heading():
    elements = [el("ListItem", "1. Mục đích"), el("NarrativeText", "Văn bản."),
                el("ListItem", "2. Thực hiện khôi phục và kiểm tra tính toàn vẹn: số bản ghi, ràng buộc"),
                el("Title", "khóa ngoại, nhật ký lỗi."), el("ListItem", "2. Phạm vi"), el("NarrativeText", "Toàn bộ.")]
    doc = extraction.sections_from_elements(elements, guess_headings=True)
    assert headings_of(doc) == [["1. Mục đích"], ["2. Phạm vi"]]


def test_numbering_starts_again_under_a_chapter():
    elements = [el("Title", "CHƯƠNG I"), el("Title", "1. Phạm vi"), el("NarrativeText", "A."),
                el("Title", "2. Đối tượng"), el("NarrativeText", "B."), el("Title", "CHƯƠNG II"),
                el("Title", "1. Quyền"), el("NarrativeText", "C.")]
    doc = extraction.sections_from_elements(elements, guess_headings=True)
    assert headings_of(doc) == [["CHƯƠNG I", "1. Phạm vi"], ["CHƯƠNG I", "2. Đối tượng"], ["CHƯƠNG II", "1. Quyền"]]


def test_a_line_repeated_on_every_page_is_never_a_heading():
    company = "CÔNG TY CỔ PHẦN CÔNG NGHỆ SAO VIỆT"  # capitals: would read as a heading
    elements = []
    for page in range(1, 5):
        elements += [el("Title", company, page), el("Title", f"{page}. Phần {page}", page),
                     el("NarrativeText", f"Nội dung trang {page}.", page), el("Footer", "BẢO MẬT NỘI BỘ", page)]
    doc = extraction.sections_from_elements(elements, guess_headings=True)
    assert {h for path in headings_of(doc) for h in path} == {f"{p}. Phần {p}" for p in range(1, 5)}
    assert company in doc.text  # kept as text, not dropped


def test_underlined_plain_text_title_and_the_document_title_are_headings():
    doc = extraction.sections_from_elements(
        [el("NarrativeText", "Quy trình mua sắm =========="), el("NarrativeText", "Công ty."),
         el("Title", "1. Mục đích"), el("NarrativeText", "Văn bản.")], guess_headings=True)
    assert headings_of(doc) == [["Quy trình mua sắm"], ["Quy trình mua sắm", "1. Mục đích"]]
    doc = extraction.sections_from_elements(
        [el("Title", "Công ty ABC"), el("Title", "Báo cáo kiểm toán"), el("Title", "1. Mục đích"),
         el("NarrativeText", "Xem.")], guess_headings=True, title="Báo cáo kiểm toán")
    assert headings_of(doc)[-1] == ["Báo cáo kiểm toán", "1. Mục đích"]


def test_only_a_slide_title_is_a_heading_in_slides():
    elements = [el("Title", "Báo cáo quý 1", 1, 0), el("Title", "Công ty Cổ phần Sao Việt", 1, 1),
                el("Title", "1. Tóm tắt", 2, 0), el("Title", "Doanh thu tăng", 2, 1),
                el("Title", "Công ty Cổ phần Sao Việt", 2, 1)]
    doc = extraction.sections_from_elements(elements, kind="pptx")
    assert headings_of(doc) == [["Báo cáo quý 1"], ["1. Tóm tắt"]]
    assert "Công ty Cổ phần Sao Việt" in doc.sections[0].text


@pytest.mark.parametrize("kind", sorted(files.GOOD))
def test_the_document_title_is_read_from_the_file(tmp_path, kind):
    # properties (pptx, xlsx), the first heading (docx, md, txt, pdf), <title> (html)
    path = write(tmp_path, f"ten-tep.{kind}", files.GOOD[kind]())
    title = extraction.extract(path, path.name, **LIMITS).title
    assert title.casefold() == files.VI_TITLE.casefold()


def test_title_properties_that_say_nothing_are_skipped():
    from documents.services.titles import meaningful

    for placeholder in ("Microsoft Word - bao-cao.docx", "PowerPoint Presentation", "Untitled", "Slide 1",
                        "bao-cao.pdf", "  ", "1234"):
        assert meaningful(placeholder) == "", placeholder
    assert meaningful("bao-cao", "bao-cao.docx") == ""  # the file name is not a title
    assert meaningful("Quy chế  nghỉ phép\n năm") == "Quy chế nghỉ phép năm"
