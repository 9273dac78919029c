"""Files for tests, made on the fly: good documents of every format and every
kind of bad input."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

VI_TITLE = "Chính sách bảo mật thông tin"
VI_SECTIONS = [
    ("1. Mục đích", "Quy định này bảo vệ dữ liệu khách hàng theo Nghị định 13/2023/NĐ-CP."),
    ("2. Phạm vi áp dụng", "Áp dụng cho toàn bộ nhân viên, kể cả nhân viên thời vụ và đối tác truy cập VPN."),
]


def docx_bytes(title=VI_TITLE, sections=VI_SECTIONS) -> bytes:
    import docx

    d = docx.Document()
    d.add_heading(title, 1)
    for heading, body in sections:
        d.add_heading(heading, 2)
        d.add_paragraph(body)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def pptx_bytes() -> bytes:
    from pptx import Presentation

    prs = Presentation()
    prs.core_properties.title = VI_TITLE
    for heading, body in VI_SECTIONS:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = heading
        slide.placeholders[1].text = body
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def xlsx_bytes() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    wb.properties.title = VI_TITLE
    ws = wb.active
    ws.title = "KPI quý 3"
    ws.append(["Chỉ tiêu", "Kế hoạch", "Thực hiện"])
    ws.append(["Doanh thu (tỷ đồng)", 120, 131])
    ws.append(["Số khách hàng mới", 40, 52])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _dejavu() -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def pdf_bytes(encrypt_with: str | None = None) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(TTFont("DejaVu", _dejavu()))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setFont("DejaVu", 12)
    y = 800
    for line in [VI_TITLE.upper()] + [x for pair in VI_SECTIONS for x in pair]:
        c.drawString(60, y, line)
        y -= 24
    c.save()
    data = buf.getvalue()
    if encrypt_with:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
        writer.encrypt(user_password=encrypt_with, owner_password=encrypt_with, algorithm="AES-128")
        out = io.BytesIO()
        writer.write(out)
        data = out.getvalue()
    return data


def md_bytes() -> bytes:
    parts = [f"# {VI_TITLE}"] + [f"## {h}\n\n{b}" for h, b in VI_SECTIONS]
    return "\n\n".join(parts).encode()


def html_bytes() -> bytes:
    parts = [f"<h1>{VI_TITLE}</h1>"] + [f"<h2>{h}</h2><p>{b}</p>" for h, b in VI_SECTIONS]
    return f"<html><head><meta charset='utf-8'></head><body>{''.join(parts)}</body></html>".encode()


def txt_bytes() -> bytes:
    parts = [VI_TITLE.upper()] + [f"{h}\n\n{b}" for h, b in VI_SECTIONS]
    return "\n\n".join(parts).encode()


GOOD = {"docx": docx_bytes, "pptx": pptx_bytes, "xlsx": xlsx_bytes, "pdf": pdf_bytes, "md": md_bytes,
        "html": html_bytes, "txt": txt_bytes}


def encrypted_docx_bytes() -> bytes:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx_bytes())).encrypt("mật-khẩu", out)
    return out.getvalue()


def corrupted_pdf_bytes() -> bytes:
    good = pdf_bytes()
    return good[:200] + b"\x00garbage\xff" * 50  # header intact, body and xref gone


def zip_bomb_docx_bytes(unpacked_mb: int = 40) -> bytes:
    """A valid-looking docx whose document.xml inflates ~1000:1."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"\x20" * (unpacked_mb * 1024 * 1024))
    return buf.getvalue()


def pdf_bomb_bytes(inflated_mb: int = 40, level: int = 9) -> bytes:
    """A one-page PDF of a few KB whose content stream inflates to `inflated_mb` MB
    (spaces: valid page content with no text, so an unguarded extractor inflates it
    all and then reports "no text, needs OCR")."""
    import zlib

    packer, block = zlib.compressobj(level), b" " * (1024 * 1024)
    stream = b"".join(packer.compress(block) for _ in range(inflated_mb)) + packer.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << >> >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def not_utf8_txt_bytes() -> bytes:
    return "Quy định nghỉ phép năm".encode("cp1258", errors="replace")


def upload_file(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)
