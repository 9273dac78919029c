#!/usr/bin/env python
"""Render the SVTech sample corpus from ``source/*.md`` into ``files/``.

Developer tool, not run in CI.  Usage (from the repository root)::

    .venv/bin/python documents/samples/build_samples.py           # build + verify
    .venv/bin/python documents/samples/build_samples.py --check   # verify only

Each ``source/<CODE>.md`` starts with a small front matter block
(``key: value`` lines between ``---`` markers) followed by the document body in
a Markdown subset:

* ``## 1. Heading`` (section) and ``### 1.1 Heading`` (subsection)
* paragraphs, ``- `` bullet items, ``1. `` numbered items
* pipe tables (first row is the header; ``|---|`` separator rows optional)
* fenced code blocks (three backticks) and inline code in backticks

The front matter ``format`` key picks the output format (docx, pdf, html, md,
txt, pptx, xlsx).  ``source/_taxonomy.json`` holds the departments and the tag
tree.  The script also writes ``manifest.json`` and then re-reads every
generated file to check that the text (Vietnamese diacritics included) can be
extracted again.

Generator-only dependency: reportlab (see requirements/dev.txt).  python-docx,
python-pptx, openpyxl and pdfminer.six come with the runtime requirements.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import html
import io
import json
import re
import sys
import unicodedata
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = ROOT / "source"
FILES_DIR = ROOT / "files"
MANIFEST = ROOT / "manifest.json"
TAXONOMY = SOURCE_DIR / "_taxonomy.json"

COMPANY_VI = "Công ty Cổ phần Công nghệ Sao Việt (SVTech)"
COMPANY_EN = "Sao Viet Technology Joint Stock Company (SVTech)"
AUTHOR = "SVTech"

DOCUMENT_TYPES = ("policy", "procedure", "technical_guide", "report")
TYPE_CODES = {"policy": "POLICY", "procedure": "PROC", "technical_guide": "GUIDE", "report": "REPORT"}
FORMATS = ("docx", "pdf", "html", "md", "txt", "pptx", "xlsx")
LANGUAGES = ("vi", "en", "mixed")
CODE_RE = re.compile(r"^(HR|IT|FIN|OPS|LEGAL|SALES)_(POLICY|PROC|GUIDE|REPORT)_(20\d\d)_(\d{3})$")

ACCESS_LABELS_VI = {0: "Công khai", 1: "Nội bộ", 2: "Hạn chế (theo phòng ban)", 3: "Mật"}
ACCESS_LABELS_EN = {0: "Public", 1: "Internal", 2: "Restricted (department)", 3: "Confidential"}
DEPT_NAMES_EN = {
    "HR": "Human Resources Department",
    "IT": "Information Technology Department",
    "FIN": "Finance and Accounting Department",
    "OPS": "Operations Department",
    "LEGAL": "Legal Department",
    "SALES": "Sales Department",
}

# Minimums from the corpus specification, checked by verify().
MIN_DOCUMENTS = 28
MIN_PER_TYPE = 7
MIN_PER_LEVEL = 5
MIN_DEPARTMENTS_USED = 5
MIN_PER_FORMAT = {"docx": 3, "pdf": 3, "html": 3, "md": 3, "txt": 3, "pptx": 2, "xlsx": 2}
MIN_PER_LANGUAGE = {"en": 3, "mixed": 6}
MIN_WORDS, MAX_WORDS = 300, 1500
MIN_LONG_DOCS, LONG_WORDS = 3, 1200
MAX_TOTAL_BYTES = 3 * 1024 * 1024
FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------
# Source parsing
# --------------------------------------------------------------------------
@dataclass
class Block:
    kind: str  # h1, h2, p, ul, ol, table, code
    text: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # table: rows[0] is the header


@dataclass
class Doc:
    code: str
    title: str
    document_type: str
    departments: list[str]
    access_level: int
    tags: list[str]
    language: str
    version: str
    effective_date: str
    format: str
    blocks: list[Block]
    source: Path

    @property
    def file(self) -> str:
        return f"{self.code}.{self.format}"

    @property
    def english(self) -> bool:
        return self.language == "en"

    def headings(self) -> list[str]:
        return [b.text for b in self.blocks if b.kind in ("h1", "h2")]


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_source(path: Path) -> Doc:
    raw = path.read_text(encoding="utf-8")
    if unicodedata.normalize("NFC", raw) != raw:
        raise ValueError(f"{path.name}: source is not NFC-normalised")
    if not raw.startswith("---\n"):
        raise ValueError(f"{path.name}: missing front matter")
    head, body = raw[4:].split("\n---\n", 1)
    meta: dict[str, str] = {}
    for line in head.splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    doc = Doc(
        code=meta["code"],
        title=meta["title"],
        document_type=meta["document_type"],
        departments=_split_list(meta["departments"]),
        access_level=int(meta["access_level"]),
        tags=_split_list(meta["tags"]),
        language=meta["language"],
        version=meta["version"],
        effective_date=meta["effective_date"],
        format=meta["format"],
        blocks=parse_body(body),
        source=path,
    )
    if path.stem != doc.code:
        raise ValueError(f"{path.name}: file name does not match code {doc.code}")
    return doc


_TABLE_SEP = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_OL_ITEM = re.compile(r"^\d+\.\s+(.*)$")


def _table_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def parse_body(body: str) -> list[Block]:
    blocks: list[Block] = []
    lines = body.splitlines()
    i = 0
    para: list[str] = []

    def flush_para():
        if para:
            blocks.append(Block("p", " ".join(para)))
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush_para()
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            blocks.append(Block("code", "\n".join(code)))
            i += 1
            continue
        if not stripped:
            flush_para()
        elif stripped.startswith("### "):
            flush_para()
            blocks.append(Block("h2", stripped[4:].strip()))
        elif stripped.startswith("## "):
            flush_para()
            blocks.append(Block("h1", stripped[3:].strip()))
        elif stripped.startswith("# "):
            raise ValueError("use the front matter title instead of a '# ' heading")
        elif stripped.startswith("|"):
            flush_para()
            if blocks and blocks[-1].kind == "table" and i > 0 and lines[i - 1].strip().startswith("|"):
                table = blocks[-1]
            else:
                table = Block("table")
                blocks.append(table)
            if not _TABLE_SEP.match(stripped):
                table.rows.append(_table_cells(stripped))
        elif stripped.startswith("- "):
            flush_para()
            if not (blocks and blocks[-1].kind == "ul" and lines[i - 1].strip()):
                blocks.append(Block("ul"))
            blocks[-1].items.append(stripped[2:].strip())
        elif _OL_ITEM.match(stripped):
            flush_para()
            if not (blocks and blocks[-1].kind == "ol" and lines[i - 1].strip()):
                blocks.append(Block("ol"))
            blocks[-1].items.append(_OL_ITEM.match(stripped).group(1).strip())
        else:
            para.append(stripped)
        i += 1
    flush_para()
    for b in blocks:
        if b.kind == "table":
            width = len(b.rows[0])
            for row in b.rows:
                if len(row) != width:
                    raise ValueError(f"table row has {len(row)} cells, header has {width}: {row}")
    return blocks


def load_docs() -> list[Doc]:
    docs = [parse_source(p) for p in sorted(SOURCE_DIR.glob("*.md"))]
    return sorted(docs, key=lambda d: d.code)


def load_taxonomy() -> dict:
    return json.loads(TAXONOMY.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------
_INLINE_CODE = re.compile(r"`([^`]+)`")


def plain(text: str) -> str:
    """Text without inline Markdown markers."""
    return _INLINE_CODE.sub(r"\1", text)


def inline_parts(text: str) -> list[tuple[str, bool]]:
    """Split text into (segment, is_code) parts."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in _INLINE_CODE.finditer(text):
        if m.start() > pos:
            parts.append((text[pos:m.start()], False))
        parts.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


def company(doc: Doc) -> str:
    return COMPANY_EN if doc.english else COMPANY_VI


def meta_line(doc: Doc, taxonomy: dict) -> str:
    eff = dt.date.fromisoformat(doc.effective_date)
    if doc.english:
        owners = ", ".join(DEPT_NAMES_EN[d] for d in doc.departments)
        return (f"Document code: {doc.code} | Version: {doc.version} | "
                f"Effective date: {eff.isoformat()} | Owner: {owners} | "
                f"Classification: {ACCESS_LABELS_EN[doc.access_level]}")
    names = {d["code"]: d["name"] for d in taxonomy["departments"]}
    owners = ", ".join(names[d] for d in doc.departments)
    return (f"Mã tài liệu: {doc.code} | Phiên bản: {doc.version} | "
            f"Ngày hiệu lực: {eff.strftime('%d/%m/%Y')} | Đơn vị ban hành: {owners} | "
            f"Phân loại: {ACCESS_LABELS_VI[doc.access_level]}")


def fixed_datetime(doc: Doc) -> dt.datetime:
    return dt.datetime.fromisoformat(doc.effective_date + "T08:00:00")


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


# --------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------
def render_md(doc: Doc, taxonomy: dict, out: Path) -> None:
    lines = [f"# {doc.title}", "", company(doc), "", meta_line(doc, taxonomy), ""]
    for b in doc.blocks:
        if b.kind == "h1":
            lines += [f"## {b.text}", ""]
        elif b.kind == "h2":
            lines += [f"### {b.text}", ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "ul":
            lines += [f"- {it}" for it in b.items] + [""]
        elif b.kind == "ol":
            lines += [f"{n}. {it}" for n, it in enumerate(b.items, 1)] + [""]
        elif b.kind == "code":
            lines += ["```", b.text, "```", ""]
        elif b.kind == "table":
            header, *rows = b.rows
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
    out.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def render_txt(doc: Doc, taxonomy: dict, out: Path) -> None:
    lines = [doc.title, "=" * min(len(doc.title), 78), "", company(doc), meta_line(doc, taxonomy), ""]
    for b in doc.blocks:
        if b.kind in ("h1", "h2"):
            lines += ["", plain(b.text), ""]
        elif b.kind == "p":
            lines += [plain(b.text), ""]
        elif b.kind == "ul":
            lines += [f"  - {plain(it)}" for it in b.items] + [""]
        elif b.kind == "ol":
            lines += [f"  {n}) {plain(it)}" for n, it in enumerate(b.items, 1)] + [""]
        elif b.kind == "code":
            lines += ["    " + ln for ln in b.text.splitlines()] + [""]
        elif b.kind == "table":
            header, *rows = b.rows
            lines.append(" | ".join(header))
            lines.append("-" * min(len(" | ".join(header)), 78))
            lines += [" | ".join(r) for r in rows]
            lines.append("")
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    out.write_text(text, encoding="utf-8")


_HTML_CSS = """
body { font-family: "Segoe UI", Arial, sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.5; color: #222; }
header .company { color: #0b5394; font-weight: bold; }
.doc-meta { font-size: 0.9rem; color: #555; border-left: 3px solid #0b5394; padding-left: 0.75rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #999; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #e8f0fe; }
pre { background: #f4f4f4; padding: 0.75rem; overflow-x: auto; }
footer { margin-top: 2rem; font-size: 0.8rem; color: #777; }
""".strip()


def _html_inline(text: str) -> str:
    return "".join(f"<code>{html.escape(s)}</code>" if is_code else html.escape(s, quote=False)
                   for s, is_code in inline_parts(text))


def render_html(doc: Doc, taxonomy: dict, out: Path) -> None:
    e = html.escape
    lang = "en" if doc.english else "vi"
    body: list[str] = []
    section_open = False
    for b in doc.blocks:
        if b.kind == "h1":
            if section_open:
                body.append("</section>")
            body.append("<section>")
            section_open = True
            body.append(f"<h2>{e(b.text, quote=False)}</h2>")
        elif b.kind == "h2":
            body.append(f"<h3>{e(b.text, quote=False)}</h3>")
        elif b.kind == "p":
            body.append(f"<p>{_html_inline(b.text)}</p>")
        elif b.kind in ("ul", "ol"):
            body.append(f"<{b.kind}>")
            body += [f"  <li>{_html_inline(it)}</li>" for it in b.items]
            body.append(f"</{b.kind}>")
        elif b.kind == "code":
            body.append(f"<pre><code>{e(b.text, quote=False)}</code></pre>")
        elif b.kind == "table":
            header, *rows = b.rows
            body.append("<table>")
            body.append("  <thead><tr>" + "".join(f"<th>{e(c, quote=False)}</th>" for c in header) + "</tr></thead>")
            body.append("  <tbody>")
            body += ["    <tr>" + "".join(f"<td>{e(c, quote=False)}</td>" for c in r) + "</tr>" for r in rows]
            body.append("  </tbody>")
            body.append("</table>")
    if section_open:
        body.append("</section>")
    footer = (f"© {doc.effective_date[:4]} SVTech. {ACCESS_LABELS_EN[doc.access_level]}."
              if doc.english else
              f"© {doc.effective_date[:4]} SVTech. Phân loại: {ACCESS_LABELS_VI[doc.access_level]}.")
    page = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(doc.title)}</title>",
        f'<meta name="document-code" content="{e(doc.code)}">',
        f'<meta name="version" content="{e(doc.version)}">',
        f'<meta name="effective-date" content="{e(doc.effective_date)}">',
        f'<meta name="keywords" content="{e(", ".join(doc.tags))}">',
        f"<style>\n{_HTML_CSS}\n</style>",
        "</head>",
        "<body>",
        "<header>",
        f'<p class="company">{e(company(doc))}</p>',
        f"<h1>{e(doc.title, quote=False)}</h1>",
        f'<p class="doc-meta">{e(meta_line(doc, taxonomy), quote=False)}</p>',
        "</header>",
        "<main>",
        *body,
        "</main>",
        f"<footer>{e(footer, quote=False)}</footer>",
        "</body>",
        "</html>",
    ]
    out.write_text("\n".join(page) + "\n", encoding="utf-8")


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


def _find_font_dir() -> Path:
    candidates = [Path("/usr/share/fonts/truetype/dejavu")]
    try:
        import matplotlib

        candidates.append(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:  # pragma: no cover - matplotlib is a runtime requirement
        pass
    for c in candidates:
        if (c / "DejaVuSans.ttf").exists() and (c / "DejaVuSans-Bold.ttf").exists():
            return c
    raise FileNotFoundError("DejaVuSans.ttf not found (install fonts-dejavu-core or matplotlib)")


_PDF_FONTS_READY = False


def _register_pdf_fonts() -> None:
    global _PDF_FONTS_READY
    if _PDF_FONTS_READY:
        return
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    font_dir = _find_font_dir()
    pdfmetrics.registerFont(TTFont("DejaVuSans", str(font_dir / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(font_dir / "DejaVuSans-Bold.ttf")))
    mono = font_dir / "DejaVuSansMono.ttf"
    pdfmetrics.registerFont(TTFont("DejaVuSansMono", str(mono if mono.exists() else font_dir / "DejaVuSans.ttf")))
    addMapping("DejaVuSans", 0, 0, "DejaVuSans")
    addMapping("DejaVuSans", 1, 0, "DejaVuSans-Bold")
    addMapping("DejaVuSans", 0, 1, "DejaVuSans")
    addMapping("DejaVuSans", 1, 1, "DejaVuSans-Bold")
    _PDF_FONTS_READY = True


def render_pdf(doc: Doc, taxonomy: dict, out: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (ListFlowable, ListItem, Paragraph, Preformatted, SimpleDocTemplate,
                                    Spacer, Table, TableStyle)

    _register_pdf_fonts()
    base = ParagraphStyle("base", fontName="DejaVuSans", fontSize=10, leading=14.5, alignment=TA_LEFT,
                          spaceAfter=5)
    styles = {
        "company": ParagraphStyle("company", parent=base, fontName="DejaVuSans-Bold", fontSize=10,
                                  textColor=colors.HexColor("#0B5394")),
        "title": ParagraphStyle("title", parent=base, fontName="DejaVuSans-Bold", fontSize=17, leading=22,
                                spaceBefore=6, spaceAfter=8),
        "meta": ParagraphStyle("meta", parent=base, fontSize=8, leading=11, textColor=colors.HexColor("#555555"),
                               spaceAfter=10),
        "h1": ParagraphStyle("h1", parent=base, fontName="DejaVuSans-Bold", fontSize=13, leading=17,
                             spaceBefore=10, spaceAfter=5, textColor=colors.HexColor("#0B5394")),
        "h2": ParagraphStyle("h2", parent=base, fontName="DejaVuSans-Bold", fontSize=11, leading=15,
                             spaceBefore=6, spaceAfter=4),
        "body": base,
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=11, spaceAfter=0),
        "cellh": ParagraphStyle("cellh", parent=base, fontName="DejaVuSans-Bold", fontSize=8.5, leading=11,
                                spaceAfter=0),
        "code": ParagraphStyle("code", parent=base, fontName="DejaVuSansMono", fontSize=8, leading=10.5,
                               backColor=colors.HexColor("#F4F4F4"), borderPadding=4, spaceBefore=4,
                               spaceAfter=8),
    }

    def para_markup(text: str) -> str:
        return "".join(f'<font face="DejaVuSansMono">{html.escape(s, quote=False)}</font>' if is_code
                       else html.escape(s, quote=False) for s, is_code in inline_parts(text))

    class Heading(Paragraph):
        def __init__(self, text, style, level):
            super().__init__(html.escape(text, quote=False), style)
            self.outline_text, self.outline_level = text, level

    class DocTemplate(SimpleDocTemplate):
        def afterFlowable(self, flowable):
            if isinstance(flowable, Heading):
                key = f"h{id(flowable)}"
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(flowable.outline_text, key, level=flowable.outline_level, closed=False)

    footer_text = f"SVTech | {doc.code} | " + (ACCESS_LABELS_EN if doc.english else ACCESS_LABELS_VI)[doc.access_level]

    def on_page(canvas, template):
        canvas.saveState()
        canvas.setFont("DejaVuSans", 7.5)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(18 * mm, 10 * mm, footer_text)
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"{canvas.getPageNumber()}")
        canvas.restoreState()

    story = [
        Paragraph(html.escape(company(doc), quote=False), styles["company"]),
        Heading(doc.title, styles["title"], 0),
        Paragraph(html.escape(meta_line(doc, taxonomy), quote=False), styles["meta"]),
    ]
    width = A4[0] - 36 * mm
    for b in doc.blocks:
        if b.kind == "h1":
            story.append(Heading(b.text, styles["h1"], 1))
        elif b.kind == "h2":
            story.append(Heading(b.text, styles["h2"], 2))
        elif b.kind == "p":
            story.append(Paragraph(para_markup(b.text), styles["body"]))
        elif b.kind in ("ul", "ol"):
            items = [ListItem(Paragraph(para_markup(it), styles["body"]), leftIndent=14) for it in b.items]
            kwargs = {"bulletType": "bullet", "start": "•"} if b.kind == "ul" else {"bulletType": "1", "bulletFormat": "%s."}
            story.append(ListFlowable(items, leftIndent=14, bulletFontName="DejaVuSans", bulletFontSize=9, **kwargs))
            story.append(Spacer(1, 3))
        elif b.kind == "code":
            story.append(Preformatted(b.text, styles["code"]))
        elif b.kind == "table":
            header, *rows = b.rows
            data = [[Paragraph(html.escape(c, quote=False), styles["cellh"]) for c in header]]
            data += [[Paragraph(html.escape(c, quote=False), styles["cell"]) for c in r] for r in rows]
            col_w = width / len(header)
            t = Table(data, colWidths=[col_w] * len(header), repeatRows=1)
            t.setStyle(TableStyle([
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DCE6F1")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]))
            story += [Spacer(1, 3), t, Spacer(1, 8)]

    pdf = DocTemplate(
        str(out), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
        title=doc.title, author=AUTHOR, subject=doc.document_type, keywords=", ".join(doc.tags),
        creator="documents/samples/build_samples.py", lang="en-US" if doc.english else "vi-VN", invariant=1,
    )
    pdf.build(story, onFirstPage=on_page, onLaterPages=on_page)


RENDERERS = {
    "docx": render_docx,
    "pdf": render_pdf,
    "html": render_html,
    "md": render_md,
    "txt": render_txt,
    "pptx": render_pptx,
    "xlsx": render_xlsx,
}


def build_manifest(docs: list[Doc], taxonomy: dict) -> dict:
    return {
        "documents": [
            {
                "code": d.code,
                "file": d.file,
                "title": d.title,
                "document_type": d.document_type,
                "departments": d.departments,
                "access_level": d.access_level,
                "tags": d.tags,
                "language": d.language,
                "version": d.version,
                "effective_date": d.effective_date,
            }
            for d in docs
        ],
        "departments": taxonomy["departments"],
        "tags": taxonomy["tags"],
    }


def build(docs: list[Doc], taxonomy: dict) -> None:
    FILES_DIR.mkdir(exist_ok=True)
    expected = {d.file for d in docs}
    for stale in FILES_DIR.iterdir():
        if stale.is_file() and stale.name not in expected:
            stale.unlink()
    for d in docs:
        RENDERERS[d.format](d, taxonomy, FILES_DIR / d.file)
        print(f"  wrote files/{d.file}")
    manifest = build_manifest(docs, taxonomy)
    MANIFEST.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"  wrote manifest.json ({len(docs)} documents)")


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------
class _HTMLText(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.tags: collections.Counter = collections.Counter()
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        if tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title"):
            self._skip -= 1
        self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def extract_text(path: Path) -> tuple[str, dict]:
    """Return (text, structure info) using the same libraries an ingester would use."""
    ext = path.suffix[1:]
    info: dict = {}
    if ext in ("md", "txt"):
        return path.read_text(encoding="utf-8"), info
    if ext == "html":
        p = _HTMLText()
        p.feed(path.read_text(encoding="utf-8"))
        info["h1"], info["h2"] = p.tags["h1"], p.tags["h2"]
        return "".join(p.parts), info
    if ext == "pdf":
        from pdfminer.high_level import extract_text as pdf_text

        return pdf_text(str(path)), info
    if ext == "docx":
        from docx import Document

        d = Document(str(path))
        parts = [p.text for p in d.paragraphs]
        info["Heading 1"] = sum(p.style.name == "Heading 1" for p in d.paragraphs)
        info["Heading 2"] = sum(p.style.name == "Heading 2" for p in d.paragraphs)
        for t in d.tables:
            for row in t.rows:
                parts.append(" | ".join(c.text for c in row.cells))
        return "\n".join(parts), info
    if ext == "pptx":
        from pptx import Presentation

        prs = Presentation(str(path))
        parts, titles = [], 0
        for slide in prs.slides:
            if slide.shapes.title is not None and slide.shapes.title.text.strip():
                titles += 1
            for shape in slide.shapes:
                if shape.has_text_frame:
                    parts.append(shape.text_frame.text)
                if getattr(shape, "has_table", False) and shape.has_table:
                    for row in shape.table.rows:
                        parts.append(" | ".join(c.text for c in row.cells))
        info["slides"], info["titled_slides"] = len(prs.slides), titles
        return "\n".join(parts), info
    if ext == "xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(str(path), read_only=True)
        parts = []
        info["sheets"] = wb.sheetnames
        for ws in wb.worksheets:
            for row in ws.iter_rows(values_only=True):
                vals = [str(v) for v in row if v is not None]
                if vals:
                    parts.append(" | ".join(vals))
        wb.close()
        return "\n".join(parts), info
    raise ValueError(ext)


_VI_CHARS = set("ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ")


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def count_words(text: str) -> int:
    return sum(1 for w in text.split() if re.search(r"\w", w))


def verify(docs: list[Doc], taxonomy: dict) -> bool:
    errors: list[str] = []
    dept_codes = {d["code"] for d in taxonomy["departments"]}
    tag_slugs = {t["slug"] for t in taxonomy["tags"]}
    for t in taxonomy["tags"]:
        if t["parent"] is not None and t["parent"] not in tag_slugs:
            errors.append(f"tag {t['slug']}: unknown parent {t['parent']}")

    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if manifest != build_manifest(docs, taxonomy):
        errors.append("manifest.json is out of date with source/ (run the build)")
    seen_codes = set()
    rows = []
    total_bytes = 0
    for d in docs:
        m = CODE_RE.match(d.code)
        if not m:
            errors.append(f"{d.code}: bad code")
        elif TYPE_CODES[d.document_type] != m.group(2) or d.departments[0] != m.group(1):
            errors.append(f"{d.code}: code does not match type/department")
        if d.code in seen_codes:
            errors.append(f"{d.code}: duplicate code")
        seen_codes.add(d.code)
        if d.document_type not in DOCUMENT_TYPES:
            errors.append(f"{d.code}: bad document_type {d.document_type}")
        if d.format not in FORMATS:
            errors.append(f"{d.code}: bad format {d.format}")
        if d.language not in LANGUAGES:
            errors.append(f"{d.code}: bad language {d.language}")
        if d.access_level not in (0, 1, 2, 3):
            errors.append(f"{d.code}: bad access_level")
        for dep in d.departments:
            if dep not in dept_codes:
                errors.append(f"{d.code}: unknown department {dep}")
        for tag in d.tags:
            if tag not in tag_slugs:
                errors.append(f"{d.code}: unknown tag {tag}")
        dt.date.fromisoformat(d.effective_date)

        path = FILES_DIR / d.file
        if not path.exists():
            errors.append(f"{d.code}: missing files/{d.file}")
            continue
        total_bytes += path.stat().st_size
        try:
            text, info = extract_text(path)
        except Exception as exc:  # noqa: BLE001 - report any failure to open
            errors.append(f"{d.code}: cannot open/extract {d.file}: {exc!r}")
            continue
        flat = _collapse(text)
        missing = [h for h in [d.title] + d.headings() if _collapse(plain(h)) not in flat]
        if missing:
            errors.append(f"{d.code}: headings not found in extracted text: {missing[:3]}")
        vi_chars = len(_VI_CHARS & set(flat.lower()))
        if d.language != "en" and vi_chars < 15:
            errors.append(f"{d.code}: only {vi_chars} distinct Vietnamese letters survived extraction")
        if d.language == "en" and vi_chars > 3:
            errors.append(f"{d.code}: English document contains Vietnamese letters")
        if unicodedata.normalize("NFC", text) != text:
            errors.append(f"{d.code}: extracted text is not NFC")
        words = count_words(text)
        if not MIN_WORDS <= words <= MAX_WORDS:
            errors.append(f"{d.code}: {words} words, outside {MIN_WORDS}-{MAX_WORDS}")
        n_h1 = sum(b.kind == "h1" for b in d.blocks)
        n_h2 = sum(b.kind == "h2" for b in d.blocks)
        if d.format == "docx" and (info["Heading 1"], info["Heading 2"]) != (n_h1, n_h2):
            errors.append(f"{d.code}: docx heading styles {info} != ({n_h1}, {n_h2})")
        if d.format == "html" and (info["h1"] != 1 or info["h2"] != n_h1):
            errors.append(f"{d.code}: html headings {info}")
        if d.format == "pptx" and info["titled_slides"] != info["slides"]:
            errors.append(f"{d.code}: pptx slides without title")
        has_marker = "Mục đích" in flat or "Purpose" in flat
        rows.append((d, words, len(flat), has_marker))

    # ---- counts table -----------------------------------------------------
    def counter(key):
        c = collections.Counter()
        for d in docs:
            for v in key(d):
                c[v] += 1
        return c

    tables = {
        "document_type": counter(lambda d: [d.document_type]),
        "access_level": counter(lambda d: [d.access_level]),
        "department": counter(lambda d: d.departments),
        "format": counter(lambda d: [d.format]),
        "language": counter(lambda d: [d.language]),
    }
    print()
    print(f"{'code':<24} {'fmt':<5} {'type':<16} {'lvl':>3} {'lang':<6} {'dept':<12} {'words':>5}")
    for d, words, _, _ in rows:
        print(f"{d.code:<24} {d.format:<5} {d.document_type:<16} {d.access_level:>3} {d.language:<6} "
              f"{','.join(d.departments):<12} {words:>5}")
    print()
    for name, c in tables.items():
        print(f"{name:<14} " + ", ".join(f"{k}={v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))))
    long_docs = sum(1 for _, w, _, _ in rows if w >= LONG_WORDS)
    print(f"{'documents':<14} {len(docs)} ({long_docs} with >= {LONG_WORDS} words)")
    print(f"{'tags':<14} {len(taxonomy['tags'])} ({sum(t['parent'] is None for t in taxonomy['tags'])} roots)")
    print(f"{'files size':<14} {total_bytes / 1024:.0f} KiB")

    # ---- minimums -----------------------------------------------------------
    if len(docs) < MIN_DOCUMENTS:
        errors.append(f"only {len(docs)} documents (< {MIN_DOCUMENTS})")
    for t in DOCUMENT_TYPES:
        if tables["document_type"][t] < MIN_PER_TYPE:
            errors.append(f"type {t}: {tables['document_type'][t]} < {MIN_PER_TYPE}")
    for lvl in range(4):
        if tables["access_level"][lvl] < MIN_PER_LEVEL:
            errors.append(f"access level {lvl}: {tables['access_level'][lvl]} < {MIN_PER_LEVEL}")
    if len(tables["department"]) < MIN_DEPARTMENTS_USED:
        errors.append(f"only {len(tables['department'])} departments used")
    for fmt, n in MIN_PER_FORMAT.items():
        if tables["format"][fmt] < n:
            errors.append(f"format {fmt}: {tables['format'][fmt]} < {n}")
    for lang, n in MIN_PER_LANGUAGE.items():
        if tables["language"][lang] < n:
            errors.append(f"language {lang}: {tables['language'][lang]} < {n}")
    if long_docs < MIN_LONG_DOCS:
        errors.append(f"only {long_docs} long documents")
    if total_bytes > MAX_TOTAL_BYTES:
        errors.append(f"files/ is {total_bytes} bytes (> {MAX_TOTAL_BYTES})")
    if not 15 <= len(taxonomy["tags"]) <= 25:
        errors.append(f"{len(taxonomy['tags'])} tags, expected 15-25")

    print()
    if errors:
        print("VERIFY FAILED:")
        for e in errors:
            print("  -", e)
        return False
    print("verify: OK (all files open, titles/headings and Vietnamese diacritics survive extraction, minimums met)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify files/ and manifest.json")
    args = parser.parse_args(argv)
    taxonomy = load_taxonomy()
    docs = load_docs()
    if not args.check:
        build(docs, taxonomy)
    return 0 if verify(docs, taxonomy) else 1


if __name__ == "__main__":
    sys.exit(main())
