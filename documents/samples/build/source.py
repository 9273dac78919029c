"""Parse ``source/<CODE>.md`` and ``source/_taxonomy.json``; build the manifest."""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # documents/samples
SOURCE_DIR = ROOT / "source"
FILES_DIR = ROOT / "files"
MANIFEST = ROOT / "manifest.json"
TAXONOMY = SOURCE_DIR / "_taxonomy.json"


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
