"""The sample corpus: its promised spread, and `load_samples` ingesting all of it."""
import json
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command

from documents.models import Chunk, Document, Tag

SAMPLES = Path(__file__).resolve().parent.parent / "documents" / "samples"


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
