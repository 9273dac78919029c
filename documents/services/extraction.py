"""Extract text and heading structure from an uploaded file.

`unstructured` does the parsing. Before it sees a file, `inspect_file`
(inspection.py) rejects what it would choke on or what would hurt the worker
with a message a person can act on. headings.py decides which lines are
headings; titles.py finds the document's own title.

unstructured downloads the spaCy model `en_core_web_sm` on first use, which
fails offline. `use_offline_nlp()` swaps its loader for a blank multilingual
spaCy pipeline with a rule-based sentencizer: no download, and nothing of
value is lost for us (we use element categories from document structure, not
from part-of-speech heuristics).
"""
from __future__ import annotations

import logging
from pathlib import Path

from documents.services.headings import (  # noqa: F401  (re-exported: the extraction API)
    ExtractedDocument,
    Section,
    heading_depth,
    normalise,
    sections_from_elements,
)
from documents.services.inspection import (  # noqa: F401
    SUPPORTED_TYPES,
    ExtractionError,
    file_kind,
    inspect_file,
    read_text_file,
)
from documents.services.titles import fallback_title, meaningful, property_title

log = logging.getLogger(__name__)

LANGUAGES = ["vie", "eng"]  # tells unstructured what to expect; it skips language detection

_OFFLINE_NLP_INSTALLED = False


def use_offline_nlp() -> None:
    global _OFFLINE_NLP_INSTALLED
    if _OFFLINE_NLP_INSTALLED:
        return
    import spacy
    from unstructured.nlp import tokenize

    def blank_pipeline():
        nlp = spacy.blank("xx")
        nlp.add_pipe("sentencizer")
        return nlp

    tokenize._load_spacy_model = blank_pipeline
    tokenize._get_nlp.cache_clear()
    _OFFLINE_NLP_INSTALLED = True


def extract(path: Path, filename: str, **limits) -> ExtractedDocument:
    """Parse the file into sections (heading path + body text), NFC-normalised."""
    kind = inspect_file(path, filename, **limits)
    use_offline_nlp()
    try:
        elements = _partition(path, kind)
    except ExtractionError:
        raise
    except Exception as exc:  # parsers raise anything on damaged input
        log.warning("extraction of %s failed", filename, exc_info=True)
        raise ExtractionError(f"The {kind} file could not be read ({exc.__class__.__name__}: {exc}).") from exc
    # Plain text and PDF carry no heading markup; unstructured guesses titles from
    # part-of-speech cues (unavailable offline), so we decide from the line itself.
    own_title = meaningful(property_title(path, kind), filename)
    doc = sections_from_elements(elements, guess_headings=kind in ("text", "pdf"), kind=kind, title=own_title)
    doc.title = own_title or fallback_title(path, kind, doc, filename)
    if not doc.text.strip():
        raise ExtractionError(
            f"No text found in the {kind} file. If it is a scanned document, it needs OCR first.")
    return doc


def _partition(path: Path, kind: str):
    if kind == "text":
        from unstructured.partition.text import partition_text

        return partition_text(text=read_text_file(path), languages=LANGUAGES)
    if kind == "markdown":
        from unstructured.partition.md import partition_md

        return partition_md(text=read_text_file(path), languages=LANGUAGES)
    if kind == "html":
        from unstructured.partition.html import partition_html

        return partition_html(text=read_text_file(path), languages=LANGUAGES)
    if kind == "pdf":
        from unstructured.partition.pdf import partition_pdf

        return partition_pdf(filename=str(path), strategy="fast", languages=LANGUAGES)
    if kind == "docx":
        from unstructured.partition.docx import partition_docx

        return partition_docx(filename=str(path), languages=LANGUAGES)
    if kind == "pptx":
        from unstructured.partition.pptx import partition_pptx

        return partition_pptx(filename=str(path), languages=LANGUAGES)
    if kind == "xlsx":
        from unstructured.partition.xlsx import partition_xlsx

        return partition_xlsx(filename=str(path), find_subtable=False, languages=LANGUAGES)
    raise ExtractionError(f"No extractor for {kind}.")
