"""PDF renderer (reportlab, embedded DejaVuSans, outline bookmarks, invariant mode)."""
from __future__ import annotations

import html
from pathlib import Path

from .common import ACCESS_LABELS_EN, ACCESS_LABELS_VI, AUTHOR, company, inline_parts, meta_line
from .source import Doc


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

    # creator names the entry point as before the split: it is written into every PDF.
    pdf = DocTemplate(
        str(out), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
        title=doc.title, author=AUTHOR, subject=doc.document_type, keywords=", ".join(doc.tags),
        creator="documents/samples/build_samples.py", lang="en-US" if doc.english else "vi-VN", invariant=1,
    )
    pdf.build(story, onFirstPage=on_page, onLaterPages=on_page)
