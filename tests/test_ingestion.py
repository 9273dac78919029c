"""The ingestion pipeline end to end: statuses, chunks, bad input, duplicates,
atomicity, and recovery after a worker is lost."""
import io
from datetime import timedelta

import pytest
from django.utils import translation
from django.utils import timezone

from documents import signals
from documents.models import Chunk, Document, DocumentStatus
from documents.services import processing
from documents.services.intake import UploadMetadata, register_upload, request_reprocessing
from tests import files
from tests.conftest import wait_until
from tests.test_extraction import BAD, blank_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English (the msgids): the default interface
    language is Vietnamese, and its catalog translates them once the i18n work lands."""
    with translation.override("en"):
        yield


def upload(data: bytes, name: str, **meta):
    return register_upload(io.BytesIO(data), name, UploadMetadata(**meta))


def test_good_document_becomes_ready_with_chunks_and_hands_off_to_embedding():
    received = []

    def on_chunked(sender, document_id, chunk_count, **kw):
        received.append((document_id, chunk_count))

    signals.document_chunked.connect(on_chunked)
    try:
        result = upload(files.docx_bytes(), "chinh-sach.docx", code="IT_POLICY_2024_009", access_level=1)
        doc = result.document
        assert result.created and doc.status == DocumentStatus.PENDING
        from django.db import transaction

        with transaction.atomic():  # run on_commit hooks as a real commit would
            outcome = processing.process_document(doc.pk)
        assert outcome == "ready"
    finally:
        signals.document_chunked.disconnect(on_chunked)
    doc.refresh_from_db()
    assert (doc.status, doc.progress, doc.error, doc.attempts) == (DocumentStatus.READY, 100, "", 1)
    chunks = list(doc.chunks.all())
    assert chunks and all(c.keywords for c in chunks)
    assert "Nghị định 13/2023/NĐ-CP" in doc.content
    assert any(c.heading_path[-1] == "2. Phạm vi áp dụng" for c in chunks)
    for c in chunks:
        assert doc.content[c.char_start:c.char_end] == c.text


def test_code_is_made_from_the_file_name_when_missing():
    doc = upload(files.md_bytes(), "Quy định Đào tạo 2025.md").document
    assert doc.code == "QUY_DINH_DAO_TAO_2025"
    assert doc.title == "Quy định Đào tạo 2025"


# Refused at the request already (tests/test_upload_limits.py); the worker's own
# checks of these are in tests/test_extraction.py.
REFUSED_AT_REQUEST = {"empty", "unsupported", "no_extension"}


@pytest.mark.parametrize("case", sorted(set(BAD) - REFUSED_AT_REQUEST))
def test_bad_input_fails_with_reason_keeps_file_and_leaves_no_chunks(case):
    name, make, reason = BAD[case]
    data = blank_pdf() if make is None else make()
    from django.test import override_settings

    doc = upload(data, name).document
    # too_large: accepted under the limit of its upload day, processed after the limit was lowered
    with override_settings(UPLOAD_MAX_BYTES=5 * 1024 * 1024, INGEST_MAX_UNPACKED_BYTES=20 * 1024 * 1024):
        assert processing.process_document(doc.pk) == "failed"
    doc.refresh_from_db()
    assert doc.status == DocumentStatus.FAILED
    assert reason in doc.error
    assert doc.source_file.open("rb").read() == data
    assert not Chunk.objects.filter(document=doc).exists()
    # the next upload works
    nxt = upload(files.md_bytes(), "next.md").document
    assert processing.process_document(nxt.pk) == "ready"


def test_identical_bytes_are_recognised():
    first = upload(files.md_bytes(), "a.md", code="A_1")
    again = upload(files.md_bytes(), "copy-of-a.md", code="B_2")
    assert again.duplicate and again.document.pk == first.document.pk
    assert Document.objects.count() == 1


def test_same_code_needs_replace_and_replacing_reprocesses():
    from django.core.exceptions import ValidationError

    first = upload(files.md_bytes(), "a.md", code="HR_POLICY_2024_001").document
    processing.process_document(first.pk)
    with pytest.raises(ValidationError):
        upload(files.txt_bytes(), "a.txt", code="HR_POLICY_2024_001")
    result = register_upload(io.BytesIO(files.txt_bytes()), "a.txt", UploadMetadata(code="HR_POLICY_2024_001"),
                             replace=True)
    assert result.replaced and result.document.pk == first.pk
    assert result.document.status == DocumentStatus.PENDING
    assert processing.process_document(first.pk) == "ready"


def test_unknown_department_or_tag_is_a_clear_error():
    from django.core.exceptions import ValidationError

    from django.utils import translation

    with translation.override("en"), pytest.raises(ValidationError) as err:
        upload(files.md_bytes(), "a.md", departments=["NOPE"], tags=["missing"])
    assert "Unknown department(s): NOPE" in str(err.value)
    assert "Unknown tag(s): missing" in str(err.value)
    with translation.override("vi"), pytest.raises(ValidationError) as err:
        upload(files.md_bytes(), "a.md", departments=["NOPE"], access_level=9)
    assert "Phòng ban không tồn tại: NOPE" in str(err.value) and "Cấp truy cập phải là" in str(err.value)
    assert Document.objects.count() == 0


def test_a_crash_while_writing_chunks_leaves_the_previous_chunks(monkeypatch):
    doc = upload(files.md_bytes(), "a.md").document
    processing.process_document(doc.pk)
    before = list(doc.chunks.values_list("text", flat=True))
    request_reprocessing(Document.objects.filter(pk=doc.pk))

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Chunk.objects, "bulk_create", explode)
    with pytest.raises(RuntimeError):
        processing.process_document(doc.pk)
    assert list(doc.chunks.values_list("text", flat=True)) == before


def test_a_live_holder_is_respected_and_a_lost_one_taken_over_at_once(monkeypatch):
    from portal.advisory import INGEST, SessionLock

    monkeypatch.setattr(processing, "LOCK_WAIT_SECONDS", 0)
    doc = upload(files.md_bytes(), "a.md").document
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.PROCESSING, attempts=1, holder="w:1:x",
                                              heartbeat_at=timezone.now())
    with SessionLock(INGEST, doc.pk) as live_worker:  # a worker is on it right now
        assert live_worker.try_acquire()
        assert processing.process_document(doc.pk) == "skipped"
    # That worker died: its lock ended with its session. Its heartbeat is fresh, but
    # the document is taken over at once instead of waiting for the lease.
    assert processing.process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    assert doc.attempts == 2 and doc.holder == ""


def test_a_stale_heartbeat_is_taken_over_even_while_the_lock_lingers(monkeypatch):
    """A worker on a machine that vanished: its connection (and lock) may linger, its heartbeat stops."""
    from portal.advisory import INGEST, SessionLock

    monkeypatch.setattr(processing, "LOCK_WAIT_SECONDS", 0)
    doc = upload(files.md_bytes(), "a.md").document
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.PROCESSING, attempts=1, holder="w:1:x",
                                              heartbeat_at=timezone.now() - timedelta(hours=2))
    with SessionLock(INGEST, doc.pk) as lingering:
        assert lingering.try_acquire()
        assert processing.process_document(doc.pk) == "ready"


def test_stale_documents_are_queued_again(monkeypatch):
    queued = []
    monkeypatch.setattr("documents.services.intake.enqueue_processing", queued.append)
    stale = upload(files.md_bytes(), "a.md").document
    fresh = upload(files.txt_bytes(), "b.txt").document
    Document.objects.filter(pk=stale.pk).update(status=DocumentStatus.PROCESSING,
                                                heartbeat_at=timezone.now() - timedelta(hours=1))
    Document.objects.filter(pk=fresh.pk).update(status=DocumentStatus.PROCESSING, heartbeat_at=timezone.now())
    assert processing.recover_stale_documents() == [stale.pk]
    assert queued == [stale.pk]


def test_gives_up_after_max_attempts(settings):
    settings.INGEST_MAX_ATTEMPTS = 2
    doc = upload(files.md_bytes(), "a.md").document
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.PROCESSING, attempts=2,
                                              heartbeat_at=timezone.now() - timedelta(hours=1))
    assert processing.process_document(doc.pk) == "skipped"
    doc.refresh_from_db()
    assert doc.status == DocumentStatus.FAILED and "Gave up after 2 attempts" in doc.error


@pytest.mark.worker
def test_real_worker_processes_an_upload(start_worker):
    start_worker()
    doc = upload(files.docx_bytes(), "policy.docx").document  # committed: transactional_db
    wait_until(lambda: Document.objects.get(pk=doc.pk).status == DocumentStatus.READY, 90,
               message="the worker to finish the document")
    assert Document.objects.get(pk=doc.pk).chunks.exists()


@pytest.mark.worker
def test_document_survives_losing_its_worker_mid_task(start_worker):
    env = {"PORTAL_INGEST_LEASE_SECONDS": 5, "PORTAL_INGEST_HEARTBEAT_SECONDS": 1, "PORTAL_TASK_VISIBILITY_TIMEOUT": 8}
    first = start_worker(**env)
    doc = upload(files.pdf_bytes(), "report.pdf").document
    wait_until(lambda: Document.objects.get(pk=doc.pk).status == DocumentStatus.PROCESSING, 60, 0.01,
               message="processing to start")
    first.kill()  # the machine dies mid-task: no acknowledgement, no cleanup
    stuck = Document.objects.get(pk=doc.pk)
    assert stuck.status == DocumentStatus.PROCESSING and stuck.attempts == 1
    assert not stuck.chunks.exists()

    start_worker(**env)
    final = wait_until(lambda: Document.objects.filter(pk=doc.pk, status__in=["ready", "failed"]).first(), 120,
                       0.2, message="a second worker to recover the document")
    assert final.status == DocumentStatus.READY, final.error
    assert final.attempts == 2
    ordinals = list(final.chunks.values_list("ordinal", flat=True))
    assert ordinals == list(range(len(ordinals)))  # written once, no duplicates


def test_a_document_over_the_chunk_limit_fails_with_the_count_and_the_limit(settings):
    settings.INGEST_MAX_CHUNKS = 20
    long_text = "\n\n".join(f"Điều {i}. Nhân viên được nghỉ phép năm có hưởng lương theo quy định của Bộ luật "
                            f"Lao động và quy chế nội bộ của công ty, mục {i}." for i in range(300)).encode()
    doc = upload(long_text, "so-tay-rat-dai.txt").document
    assert processing.process_document(doc.pk) == "failed"
    doc.refresh_from_db()
    assert doc.status == DocumentStatus.FAILED
    assert "it would need about" in doc.error and "over the limit of 20" in doc.error
    assert "PORTAL_INGEST_MAX_CHUNKS" in doc.error and "Split it" in doc.error
    assert not doc.chunks.exists() and doc.source_file.open("rb").read() == long_text
    settings.INGEST_MAX_CHUNKS = 3000
    request_reprocessing(Document.objects.filter(pk=doc.pk))
    assert processing.process_document(doc.pk) == "ready"  # an admin raised the limit: it goes through
