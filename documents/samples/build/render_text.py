"""Renderers for the plain-text family: md, txt and html."""
from __future__ import annotations

import html
import re
from pathlib import Path

from .common import ACCESS_LABELS_EN, ACCESS_LABELS_VI, company, inline_parts, meta_line, plain
from .source import Doc


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
