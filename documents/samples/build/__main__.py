"""Render the SVTech sample corpus from ``source/*.md`` into ``files/``.

Command line of the ``build`` package: render ``files/`` and ``manifest.json``
then verify, or verify only with ``--check``.  Entry point:
``documents/samples/build_samples.py`` (or ``python -m documents.samples.build``).
"""
from __future__ import annotations

import argparse
import json
import sys

from .render_office import render_docx, render_pptx, render_xlsx
from .render_pdf import render_pdf
from .render_text import render_html, render_md, render_txt
from .source import FILES_DIR, MANIFEST, Doc, build_manifest, load_docs, load_taxonomy
from .verify import verify


RENDERERS = {
    "docx": render_docx,
    "pdf": render_pdf,
    "html": render_html,
    "md": render_md,
    "txt": render_txt,
    "pptx": render_pptx,
    "xlsx": render_xlsx,
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
