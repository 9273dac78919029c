"""The sample corpus: its promised spread, its headings and titles as the
sources say, and `load_samples` ingesting all of it."""
import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from django.core.management import call_command

from documents.models import Chunk, Document, Tag
from documents.services import extraction

SAMPLES = Path(__file__).resolve().parent.parent / "documents" / "samples"
MANIFEST = {d["code"]: d for d in json.loads((SAMPLES / "manifest.json").read_text())["documents"]}
LIMITS = dict(max_bytes=50 * 1024 * 1024, max_unpacked=300 * 1024 * 1024, max_ratio=200)


@lru_cache(maxsize=None)
def extracted(code: str) -> extraction.ExtractedDocument:
    """The sample file extracted as the worker extracts it (cached: several tests read it)."""
    path = SAMPLES / "files" / MANIFEST[code]["file"]
    return extraction.extract(path, path.name, **LIMITS)


def source_headings(code: str) -> list[str]:
    """The headings the sample was written with (documents/samples/source/<code>.md)."""
    found, fenced = [], False
    for line in (SAMPLES / "source" / f"{code}.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif (match := re.match(r"^#{1,6}\s+(.*)$", line)) and not fenced:
            found.append(extraction.normalise(match.group(1)))
    return found


@pytest.mark.parametrize("code", sorted(MANIFEST))
def test_sample_headings_and_title_are_those_of_its_source(code):
    """No table cell ("8 giờ"), list item, wrapped line or company name is taken for a
    heading, and every heading of the source is found (the title heading of an HTML
    page sits in its <header>, which the parser leaves out)."""
    doc = extracted(code)
    title = MANIFEST[code]["title"]
    assert doc.title == title
    found = {h for section in doc.sections for h in section.heading_path}
    if MANIFEST[code]["file"].endswith(".xlsx"):
        return  # headings are the sheet names
    wanted = set(source_headings(code))
    assert found - {title} <= wanted, f"not headings in the source: {found - wanted - {title}}"
    assert wanted <= found, f"headings missed: {wanted - found}"


def test_manifest_spread():
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    docs = manifest["documents"]
    assert len(docs) >= 24
    types = Counter(d["document_type"] for d in docs)
    assert all(types[t] >= 6 for t in ("policy", "procedure", "technical_guide", "report")), types
    assert all(Counter(d["access_level"] for d in docs)[level] >= 1 for level in range(4))
    assert len({dept for d in docs for dept in d["departments"]}) >= 4
    formats = Counter(Path(d["file"]).suffix for d in docs)
    assert {".docx", ".pdf", ".html", ".md", ".txt", ".pptx", ".xlsx"} <= set(formats)
    langs = Counter(d["language"] for d in docs)
    assert langs["en"] >= 1 and langs["mixed"] >= 1
    for d in docs:
        assert (SAMPLES / "files" / d["file"]).exists(), d["file"]


@pytest.mark.django_db
def test_load_samples_ingests_everything_and_is_idempotent():
    call_command("load_samples", "--sync")
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    assert Document.objects.filter(status="ready").count() == len(manifest["documents"])
    assert not Document.objects.exclude(status="ready").exists()
    assert Chunk.objects.count() > len(manifest["documents"])
    assert Tag.objects.filter(parent__isnull=False).exists()
    leave = Document.objects.get(code="HR_POLICY_2024_001")
    assert leave.chunks.filter(text__contains="nghỉ phép").exists()
    call_command("load_samples", "--sync")  # again: nothing new
    assert Document.objects.count() == len(manifest["documents"])


@pytest.fixture(scope="module")
def counter():
    from documents.services.tokens import default_model_path, token_counter

    return token_counter(str(default_model_path()))


@pytest.mark.parametrize("max_tokens, overlap", [(254, 48), (64, 16)], ids=["model-budget", "small-budget"])
@pytest.mark.parametrize("code", sorted(MANIFEST))
def test_sample_chunks_keep_every_invariant(code, counter, max_tokens, overlap):
    """Every sample, extracted as the worker does and chunked with the real tokenizer,
    at the model's budget and at a small one (so that sections split into several
    chunks): exact slices, within budget, no heading crossed, overlap within its
    limit, and every word of the text in some chunk (tests/chunk_invariants.py)."""
    from documents.services.chunking import chunk_sections
    from tests.chunk_invariants import check_chunks

    sections = extracted(code).sections
    content, chunks = chunk_sections(sections, counter.count, max_tokens=max_tokens, overlap=overlap)
    check_chunks(sections, content, chunks, counter.count, max_tokens=max_tokens, overlap=overlap)
    if max_tokens == 64:
        by_section = Counter(tuple(c.heading_path) for c in chunks)
        assert max(by_section.values()) > 2, "the small budget must split some section into 3+ chunks"
