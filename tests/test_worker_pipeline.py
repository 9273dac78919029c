"""Upload → real Celery worker → chunks, keyword postings and vectors in every
serving space → found by search. Embedding is idempotent across redelivery."""
import io

import pytest

from documents.models import Document
from documents.services.intake import UploadMetadata, register_upload
from search.models import ChunkEmbedding, KeywordPosting
from search.services import embedding, spaces
from search.services.results import run_search
from search.tasks import embed_document_task
from tests.conftest import wait_until

pytestmark = pytest.mark.worker

TEXT = ("# Quy trình cấp laptop\n\n## 1. Đề nghị\n\nNhân viên mới gửi đề nghị cấp laptop qua Jira Service Desk.\n\n"
        "## 2. Bàn giao\n\nPhòng IT bàn giao laptop đã cài VPN và phần mềm diệt virus trong 2 ngày.\n")


def test_upload_is_chunked_indexed_and_embedded_by_the_worker(start_worker, minilm_path, wide_model_path):
    active = spaces.activate(spaces.create_space("active", minilm_path))
    candidate = spaces.create_space("candidate", wide_model_path)  # building: dual-write
    start_worker()
    doc = register_upload(io.BytesIO(TEXT.encode()), "laptop.md",
                          UploadMetadata(code="IT_PROC_2026_009", access_level=0)).document
    n_chunks = wait_until(lambda: Document.objects.get(pk=doc.pk).status == "ready" and doc.chunks.count(), 90,
                          0.2, message="chunks")
    for space in (active, candidate):
        wait_until(lambda: ChunkEmbedding.objects.filter(space=space, document=doc).count() == n_chunks, 120, 0.2,
                   message=f"vectors in {space.name}")
    wait_until(lambda: KeywordPosting.objects.filter(document=doc).exists(), 60, 0.2, message="postings")
    for mode in ("keyword", "vector", "hybrid"):
        result = run_search(None, "cấp laptop cho nhân viên mới", mode)
        assert result.hits and result.hits[0].document.pk == doc.pk, mode
    # a redelivered embed task (worker lost after writing) changes nothing
    before = ChunkEmbedding.objects.count()
    assert embed_document_task(doc.pk, active.pk) == 0
    embedding.embed_chunks(active, doc.chunks.all())
    assert ChunkEmbedding.objects.count() == before
