"""Re-open every generated file as an ingester would and check the corpus."""
from __future__ import annotations

import collections
import datetime as dt
import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

from .common import plain
from .source import FILES_DIR, MANIFEST, Doc, build_manifest

DOCUMENT_TYPES = ("policy", "procedure", "technical_guide", "report")
TYPE_CODES = {"policy": "POLICY", "procedure": "PROC", "technical_guide": "GUIDE", "report": "REPORT"}
FORMATS = ("docx", "pdf", "html", "md", "txt", "pptx", "xlsx")
LANGUAGES = ("vi", "en", "mixed")
CODE_RE = re.compile(r"^(HR|IT|FIN|OPS|LEGAL|SALES)_(POLICY|PROC|GUIDE|REPORT)_(20\d\d)_(\d{3})$")

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
