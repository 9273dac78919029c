"""Renderers for the OOXML family: docx, pptx and xlsx (byte-stable zips)."""
from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

from .common import ACCESS_LABELS_EN, ACCESS_LABELS_VI, AUTHOR, company, fixed_datetime, inline_parts, meta_line, plain
from .source import Block, Doc

FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def normalize_zip(path: Path, core_date: dt.datetime | None = None) -> None:
    """Rewrite an OOXML zip with fixed timestamps so rebuilds are byte-stable."""
    with zipfile.ZipFile(path) as zin:
        entries = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            if core_date is not None and name == "docProps/core.xml":
                stamp = core_date.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)",
                              rb"\g<1>" + stamp + rb"\g<2>", data)
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)
    path.write_bytes(buf.getvalue())


def render_docx(doc: Doc, taxonomy: dict, out: Path) -> None:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt, RGBColor

    d = Document()
    normal = d.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(11)

    def add_runs(par, text):
        for seg, is_code in inline_parts(text):
            run = par.add_run(seg)
            if is_code:
                run.font.name = "Consolas"
                run.font.size = Pt(10)

    p = d.add_paragraph(company(doc))
    p.runs[0].bold = True
    p.runs[0].font.color.rgb = RGBColor(0x0B, 0x53, 0x94)
    d.add_paragraph(doc.title, style="Title")
    meta = d.add_paragraph(meta_line(doc, taxonomy))
    meta.runs[0].font.size = Pt(9)
    meta.runs[0].italic = True
    for b in doc.blocks:
        if b.kind == "h1":
            d.add_paragraph(b.text, style="Heading 1")
        elif b.kind == "h2":
            d.add_paragraph(b.text, style="Heading 2")
        elif b.kind == "p":
            add_runs(d.add_paragraph(), b.text)
        elif b.kind == "ul":
            for it in b.items:
                add_runs(d.add_paragraph(style="List Bullet"), it)
        elif b.kind == "ol":
            for n, it in enumerate(b.items, 1):
                add_runs(d.add_paragraph(style="List Paragraph"), f"{n}. {it}")
        elif b.kind == "code":
            par = d.add_paragraph(style="No Spacing")
            for k, ln in enumerate(b.text.splitlines()):
                run = par.add_run(ln)
                run.font.name = "Consolas"
                run.font.size = Pt(9)
                if k < len(b.text.splitlines()) - 1:
                    run.add_break()
        elif b.kind == "table":
            header, *rows = b.rows
            table = d.add_table(rows=1 + len(rows), cols=len(header))
            table.style = "Table Grid"
            for c, txt in enumerate(header):
                cell = table.cell(0, c)
                cell.text = txt
                cell.paragraphs[0].runs[0].bold = True
            for r, row in enumerate(rows, 1):
                for c, txt in enumerate(row):
                    table.cell(r, c).text = txt
            d.add_paragraph()
    footer = d.sections[0].footer.paragraphs[0]
    footer.text = f"{doc.code} - {ACCESS_LABELS_EN[doc.access_level] if doc.english else ACCESS_LABELS_VI[doc.access_level]}"
    footer.alignment = WD_ALIGN_PARAGRAPH.RIGHT

    cp = d.core_properties
    stamp = fixed_datetime(doc)
    cp.title = doc.title
    cp.author = AUTHOR
    cp.last_modified_by = AUTHOR
    cp.subject = doc.document_type
    cp.category = doc.document_type
    cp.keywords = ", ".join(doc.tags)
    cp.identifier = doc.code
    cp.version = doc.version
    cp.language = "en-US" if doc.english else "vi-VN"
    cp.created = stamp
    cp.modified = stamp
    cp.revision = 1
    d.save(out)
    normalize_zip(out)


def render_pptx(doc: Doc, taxonomy: dict, out: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches, Pt

    prs = Presentation()
    title_layout, content_layout, title_only = prs.slide_layouts[0], prs.slide_layouts[1], prs.slide_layouts[5]

    s = prs.slides.add_slide(title_layout)
    s.shapes.title.text = doc.title
    sub = s.placeholders[1].text_frame
    sub.text = company(doc)
    para = sub.add_paragraph()
    para.text = meta_line(doc, taxonomy)
    para.font.size = Pt(12)
    sub.paragraphs[0].font.size = Pt(18)

    # group blocks into sections (one per "##" heading)
    sections: list[tuple[str, list[Block]]] = []
    for b in doc.blocks:
        if b.kind == "h1":
            sections.append((b.text, []))
        else:
            if not sections:
                sections.append((doc.title, []))
            sections[-1][1].append(b)

    for heading, blocks in sections:
        text_blocks = [b for b in blocks if b.kind != "table"]
        tables = [b for b in blocks if b.kind == "table"]
        if text_blocks:
            slide = prs.slides.add_slide(content_layout)
            slide.shapes.title.text = heading
            tf = slide.placeholders[1].text_frame
            entries: list[tuple[str, int, bool]] = []  # text, level, bold
            for b in text_blocks:
                if b.kind == "h2":
                    entries.append((b.text, 0, True))
                elif b.kind == "p":
                    entries.append((plain(b.text), 0, False))
                elif b.kind in ("ul", "ol"):
                    lvl = 1 if any(e[2] for e in entries) else 0
                    entries += [(plain(it), lvl, False) for it in b.items]
                elif b.kind == "code":
                    entries += [(ln, 1, False) for ln in b.text.splitlines()]
            total = sum(len(t) for t, _, _ in entries)
            size = 18 if total < 450 else 16 if total < 650 else 14 if total < 850 else 12
            for k, (txt, lvl, bold) in enumerate(entries):
                par = tf.paragraphs[0] if k == 0 else tf.add_paragraph()
                par.text = txt
                par.level = lvl
                par.font.size = Pt(size)
                par.font.bold = bold
        for b in tables:
            slide = prs.slides.add_slide(title_only)
            slide.shapes.title.text = heading
            header, *rows = b.rows
            n_rows, n_cols = len(rows) + 1, len(header)
            shape = slide.shapes.add_table(n_rows, n_cols, Inches(0.4), Inches(1.6),
                                           prs.slide_width - Inches(0.8), Inches(0.4) * n_rows)
            table = shape.table
            for r, row in enumerate([header] + rows):
                for c, txt in enumerate(row):
                    cell = table.cell(r, c)
                    cell.text = txt
                    for par in cell.text_frame.paragraphs:
                        par.font.size = Pt(12 if n_cols <= 4 else 11)
                        par.font.bold = r == 0

    cp = prs.core_properties
    stamp = fixed_datetime(doc)
    cp.title = doc.title
    cp.author = AUTHOR
    cp.last_modified_by = AUTHOR
    cp.subject = doc.document_type
    cp.category = doc.document_type
    cp.keywords = ", ".join(doc.tags)
    cp.identifier = doc.code
    cp.version = doc.version
    cp.language = "en-US" if doc.english else "vi-VN"
    cp.created = stamp
    cp.modified = stamp
    cp.revision = 1
    prs.save(out)
    normalize_zip(out)


def _excel_value(text: str, english: bool):
    """Convert a table cell to int/float when it is a plain number."""
    t = text.strip()
    if english:
        if re.fullmatch(r"-?\d{1,3}(,\d{3})+", t) or re.fullmatch(r"-?\d+", t):
            return int(t.replace(",", "")), "#,##0"
        if re.fullmatch(r"-?\d+\.\d+", t):
            decimals = len(t.split(".")[1])
            return float(t), "0." + "0" * decimals
    else:
        if re.fullmatch(r"-?\d{1,3}(\.\d{3})+", t) or re.fullmatch(r"-?\d+", t):
            return int(t.replace(".", "")), "#,##0"
        if re.fullmatch(r"-?\d+,\d+", t):
            decimals = len(t.split(",")[1])
            return float(t.replace(",", ".")), "0." + "0" * decimals
    return text, None


def _sheet_name(text: str, used: set[str]) -> str:
    name = re.sub(r"^\d+(\.\d+)*\.?\s*", "", text)
    name = re.sub(r"[\[\]:*?/\\]", "-", name).strip()
    if len(name) > 31:
        cut = name[:31]
        name = cut[: cut.rfind(" ")] if " " in cut else cut
    base, k = name, 2
    while name in used:
        suffix = f" ({k})"
        name = base[: 31 - len(suffix)] + suffix
        k += 1
    used.add(name)
    return name


def render_xlsx(doc: Doc, taxonomy: dict, out: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    thin = Side(style="thin", color="999999")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    header_fill = PatternFill("solid", fgColor="DCE6F1")
    used: set[str] = set()

    heading = doc.title
    for b in doc.blocks:
        if b.kind in ("h1", "h2"):
            heading = b.text
            continue
        if b.kind != "table":
            continue
        ws = wb.create_sheet(_sheet_name(heading, used))
        ws["A1"] = doc.title
        ws["A1"].font = Font(bold=True, size=14)
        ws["A2"] = meta_line(doc, taxonomy)
        ws["A2"].font = Font(italic=True, size=9)
        ws["A4"] = heading
        ws["A4"].font = Font(bold=True, size=12)
        header, *rows = b.rows
        first = 5
        widths = [len(h) for h in header]
        for c, txt in enumerate(header, 1):
            cell = ws.cell(row=first, column=c, value=txt)
            cell.font = Font(bold=True)
            cell.fill = header_fill
            cell.border = border
            cell.alignment = Alignment(wrap_text=True, vertical="center")
        for r, row in enumerate(rows, first + 1):
            is_total = row[0].lower().startswith(("tổng", "total"))
            for c, txt in enumerate(row, 1):
                value, fmt = _excel_value(txt, doc.english)
                cell = ws.cell(row=r, column=c, value=value)
                cell.border = border
                if fmt:
                    cell.number_format = fmt
                if is_total:
                    cell.font = Font(bold=True)
                widths[c - 1] = max(widths[c - 1], len(txt))
        for c, w in enumerate(widths, 1):
            ws.column_dimensions[get_column_letter(c)].width = min(max(10, w + 2), 45)
        ws.freeze_panes = ws.cell(row=first + 1, column=1)
        ws.auto_filter.ref = f"A{first}:{get_column_letter(len(header))}{first + len(rows)}"

    notes = wb.create_sheet("Notes" if doc.english else "Ghi chú")
    notes.column_dimensions["A"].width = 120
    r = 1
    notes.cell(row=r, column=1, value=doc.title).font = Font(bold=True, size=14)
    r += 1
    notes.cell(row=r, column=1, value=company(doc))
    r += 1
    notes.cell(row=r, column=1, value=meta_line(doc, taxonomy)).font = Font(italic=True, size=9)
    r += 2
    for b in doc.blocks:
        if b.kind == "table":
            continue
        if b.kind in ("h1", "h2"):
            notes.cell(row=r, column=1, value=b.text).font = Font(bold=True, size=12 if b.kind == "h1" else 11)
            r += 1
        elif b.kind == "p":
            notes.cell(row=r, column=1, value=plain(b.text)).alignment = Alignment(wrap_text=True, vertical="top")
            r += 1
        elif b.kind in ("ul", "ol"):
            for n, it in enumerate(b.items, 1):
                prefix = "- " if b.kind == "ul" else f"{n}. "
                notes.cell(row=r, column=1, value=prefix + plain(it)).alignment = Alignment(wrap_text=True)
                r += 1
        elif b.kind == "code":
            for ln in b.text.splitlines():
                notes.cell(row=r, column=1, value=ln).font = Font(name="Consolas")
                r += 1
    stamp = fixed_datetime(doc)
    wb.properties.title = doc.title
    wb.properties.creator = AUTHOR
    wb.properties.lastModifiedBy = AUTHOR
    wb.properties.subject = doc.document_type
    wb.properties.category = doc.document_type
    wb.properties.keywords = ", ".join(doc.tags)
    wb.properties.identifier = doc.code
    wb.properties.version = doc.version
    wb.properties.language = "en-US" if doc.english else "vi-VN"
    wb.properties.created = stamp
    wb.save(out)
    normalize_zip(out, core_date=stamp)
