"""Processing one document: extract → normalise → chunk → keywords → store →
hand off to embedding.

Status moves pending → processing → ready | failed. Chunks are replaced in one
transaction, so a failure at any step leaves the previous state or none —
never half a document. The original file is never touched. A worker that dies
mid-way leaves the document 'processing' with a stale heartbeat;
`recover_stale_documents` (run when a worker starts and periodically) queues
it again, up to PORTAL_INGEST_MAX_ATTEMPTS attempts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from documents import signals
from documents.models import Chunk, Document, DocumentStatus, TitleSource
from documents.services import chunking, extraction, keywords, tokens

log = logging.getLogger(__name__)


@dataclass
class ChunkingPolicy:
    """What chunks are counted with and how large they may be."""

    model_path: str
    max_tokens: int
    overlap: int


def current_chunking_policy() -> ChunkingPolicy:
    """The model whose tokenizer counts chunk budgets. The search app may
    register a resolver (the active space's model); otherwise EMBEDDING_MODEL
    or the offline default."""
    model_path = _policy_resolver() if _policy_resolver else None
    model_path = model_path or settings.EMBEDDING_MODEL or str(tokens.default_model_path())
    counter = tokens.token_counter(str(model_path))
    return ChunkingPolicy(str(model_path), counter.budget(settings.CHUNK_MAX_TOKENS),
                          min(settings.CHUNK_OVERLAP_TOKENS, counter.budget(settings.CHUNK_MAX_TOKENS) // 4))


_policy_resolver = None


def set_chunking_model_resolver(resolver) -> None:
    global _policy_resolver
    _policy_resolver = resolver


def _set_progress(doc_id: int, progress: int, message: str) -> None:
    Document.objects.filter(pk=doc_id).update(progress=progress, status_message=message,
                                              heartbeat_at=timezone.now())


def _claim(doc_id: int) -> Document | None:
    """Take the document for processing, or None if it is not ours to process."""
    lease = timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    with transaction.atomic():
        doc = Document.objects.select_for_update().filter(pk=doc_id).first()
        if doc is None or doc.status in (DocumentStatus.READY, DocumentStatus.FAILED):
            return None  # deleted, or a duplicate delivery of finished work
        if (doc.status == DocumentStatus.PROCESSING and doc.heartbeat_at
                and timezone.now() - doc.heartbeat_at < lease):
            return None  # another worker is on it right now
        if doc.attempts >= settings.INGEST_MAX_ATTEMPTS:
            _fail(doc, f"Gave up after {doc.attempts} attempts: the worker stopped each time "
                       "(out of memory or killed?). Re-ingest to try again.")
            return None
        doc.status = DocumentStatus.PROCESSING
        doc.attempts += 1
        doc.heartbeat_at = timezone.now()
        doc.progress, doc.status_message, doc.error = 5, "Extracting text", ""
        doc.save(update_fields=["status", "attempts", "heartbeat_at", "progress", "status_message", "error"])
        return doc


def _fail(doc: Document, reason: str) -> None:
    with transaction.atomic():
        Chunk.objects.filter(document=doc).delete()
        Document.objects.filter(pk=doc.pk).update(
            status=DocumentStatus.FAILED, error=reason, progress=100, status_message="Failed",
            heartbeat_at=None, processed_at=timezone.now(), content="")
    log.warning("document %s failed: %s", doc.code, reason)


def mark_failed(document_id: int, reason: str) -> None:
    doc = Document.objects.filter(pk=document_id).first()
    if doc is not None:
        _fail(doc, reason)


def process_document(document_id: int) -> str:
    """Run the pipeline for one document. Returns the outcome for logs and tests."""
    doc = _claim(document_id)
    if doc is None:
        return "skipped"
    try:
        path = Path(doc.source_file.path)
        extracted = extraction.extract(
            path, doc.original_filename, max_bytes=settings.UPLOAD_MAX_BYTES,
            max_unpacked=settings.INGEST_MAX_UNPACKED_BYTES,
            max_ratio=settings.INGEST_MAX_COMPRESSION_RATIO)
    except extraction.ExtractionError as exc:
        _fail(doc, str(exc))
        return "failed"
    except FileNotFoundError:
        _fail(doc, "The stored original file is missing from storage.")
        return "failed"

    _set_progress(doc.pk, 50, "Chunking")
    policy = current_chunking_policy()
    counter = tokens.token_counter(policy.model_path)
    try:
        content, drafts = chunking.chunk_sections(extracted.sections, counter.count, max_tokens=policy.max_tokens,
                                                  overlap=policy.overlap, max_chunks=settings.INGEST_MAX_CHUNKS)
    except chunking.TooManyChunks as exc:
        _fail(doc, str(exc))
        return "failed"
    _set_progress(doc.pk, 75, "Extracting keywords")
    chunk_keywords = keywords.keywords_for_chunks([d.text for d in drafts])

    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=doc.pk)
        if locked.checksum != doc.checksum or locked.status != DocumentStatus.PROCESSING:
            return "superseded"  # a new file was uploaded meanwhile; its own task will run
        Chunk.objects.filter(document=doc).delete()
        Chunk.objects.bulk_create([
            Chunk(document=doc, ordinal=i, text=d.text, token_count=d.token_count,
                  heading_path=d.heading_path, char_start=d.char_start, char_end=d.char_end,
                  keywords=kw)
            for i, (d, kw) in enumerate(zip(drafts, chunk_keywords))
        ])
        own_title = {}
        if extracted.title and locked.title_source != TitleSource.UPLOADER:  # a typed title is never replaced
            own_title = {"title": extracted.title, "title_source": TitleSource.DOCUMENT}
        Document.objects.filter(pk=doc.pk).update(
            content=content, status=DocumentStatus.READY, progress=100, status_message="Ready",
            error="", heartbeat_at=None, processed_at=timezone.now(), **own_title)
        transaction.on_commit(lambda: signals.document_chunked.send(
            sender=Document, document_id=doc.pk, chunk_count=len(drafts)))
    log.info("document %s ready: %d chunks", doc.code, len(drafts))
    return "ready"


def recover_stale_documents() -> list[int]:
    """Queue again every document whose worker died: 'processing' with a
    heartbeat older than the lease, or 'pending' and untouched for that long
    (its queue message was lost)."""
    from documents.services.intake import enqueue_processing

    cutoff = timezone.now() - timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    stale = list(Document.objects.filter(status=DocumentStatus.PROCESSING, heartbeat_at__lt=cutoff)
                 .values_list("pk", flat=True))
    stale += list(Document.objects.filter(status=DocumentStatus.PENDING, updated_at__lt=cutoff)
                  .values_list("pk", flat=True))
    for pk in stale:
        log.warning("document %s: worker lost or message lost; queueing it again", pk)
        enqueue_processing(pk)
    return stale
