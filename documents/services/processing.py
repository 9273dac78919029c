"""Processing one document: extract → normalise → chunk → keywords → store →
hand off to embedding.

Status moves pending → processing → ready | failed. Chunks are replaced in one
transaction, so a failure at any step leaves the previous state or none —
never half a document. The original file is never touched. While a document
is processed its worker holds the document's advisory lock and renews its
heartbeat (documents.services.heartbeat); a worker that dies mid-way loses the
lock with its connection, and the redelivered task — or the recovery sweep
(documents.services.recovery) — takes the document over, up to
PORTAL_INGEST_MAX_ATTEMPTS attempts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from documents import signals
from documents.models import Chunk, Document, DocumentStatus, ProcessingStep, TitleSource
from documents.services import chunking, extraction, keywords, tokens
from documents.services.heartbeat import Heartbeat, new_holder
from portal.tasking import is_transient

log = logging.getLogger(__name__)


@dataclass
class ChunkingPolicy:
    """What chunks are counted with and how large they may be."""

    model_path: str
    max_tokens: int
    overlap: int


def current_chunking_policy() -> ChunkingPolicy:
    """The model whose tokenizer counts chunk budgets: what the function named by
    settings.CHUNKING_MODEL_RESOLVER returns (the search app's: the active space's
    model); without one (or no active space) EMBEDDING_MODEL, else the offline
    all-MiniLM-L6-v2. Configured by dotted path: documents never imports search."""
    resolver = getattr(settings, "CHUNKING_MODEL_RESOLVER", None)
    model_path = import_string(resolver)() if resolver else None
    model_path = model_path or settings.EMBEDDING_MODEL or str(tokens.default_model_path())
    counter = tokens.token_counter(str(model_path))
    return ChunkingPolicy(str(model_path), counter.budget(settings.CHUNK_MAX_TOKENS),
                          min(settings.CHUNK_OVERLAP_TOKENS, counter.budget(settings.CHUNK_MAX_TOKENS) // 4))


class ProcessingInterrupted(Exception):
    """An outage (database, broker) stopped processing after the document was claimed.
    `holder` lets the retry resume without counting another attempt."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


class Superseded(Exception):
    """Another worker took the document over, or a re-ingest was requested meanwhile."""


def _set_progress(doc_id: int, holder: str, progress: int, message: str) -> None:
    Document.objects.filter(pk=doc_id, holder=holder).update(progress=progress, status_message=message,
                                                             heartbeat_at=timezone.now())


# How long a task waits for a document's lock that is held: the session of a worker that
# was just killed takes a moment to end.
LOCK_WAIT_SECONDS = 2.0


def _claim(doc_id: int, holder: str, lock_held: bool, resume_holder: str = "") -> Document | None:
    """Take the document for processing, or None if it is not ours to process.

    With the document's lock in hand, any earlier holder is gone (its session
    ended) and the document is taken over at once, whatever its heartbeat says.
    Without it, someone alive holds the lock: only a heartbeat older than the
    lease (a machine that vanished while its connection lingers) lets us in.
    `resume_holder`: the claim of our own attempt that an outage interrupted —
    resuming it is not another attempt."""
    lease = timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    with transaction.atomic():
        doc = Document.objects.select_for_update().filter(pk=doc_id).first()
        if doc is None or doc.status in (DocumentStatus.READY, DocumentStatus.FAILED):
            return None  # deleted, or a duplicate delivery of finished work
        if not lock_held and not (doc.status == DocumentStatus.PROCESSING and (
                doc.heartbeat_at is None or timezone.now() - doc.heartbeat_at >= lease)):
            return None  # another worker is on it right now
        resuming = bool(resume_holder) and doc.holder == resume_holder
        if not resuming and doc.attempts >= settings.INGEST_MAX_ATTEMPTS:
            _fail(doc, f"Gave up after {doc.attempts} attempts: the worker stopped each time "
                       f"(out of memory, killed, or over the {settings.INGEST_TIME_LIMIT} s time limit?). "
                       "Re-ingest to try again.")
            return None
        if doc.status == DocumentStatus.PROCESSING:
            log.warning("document %s: taking over from %s", doc.code, doc.holder or "a lost worker")
        doc.status = DocumentStatus.PROCESSING
        doc.attempts += 0 if resuming else 1
        doc.holder = holder
        doc.heartbeat_at = timezone.now()
        doc.progress, doc.status_message, doc.error = 5, ProcessingStep.EXTRACTING, ""
        doc.save(update_fields=["status", "attempts", "holder", "heartbeat_at", "progress", "status_message",
                                "error"])
        return doc


def _fail(doc: Document, reason: str) -> None:
    with transaction.atomic():
        Chunk.objects.filter(document=doc).delete()
        Document.objects.filter(pk=doc.pk).update(
            status=DocumentStatus.FAILED, error=reason, progress=100, status_message=ProcessingStep.FAILED,
            heartbeat_at=None, holder="", processed_at=timezone.now(), content="")
    log.warning("document %s failed: %s", doc.code, reason)


def preload_libraries() -> None:
    """Import the parsers' and the tokenizer's libraries before the first task (a worker
    calls this when its process starts): a soft time limit that fires in the middle of a
    first import leaves a half-initialised module (torch) behind, and every later task
    of that process would fail on it."""
    import importlib

    for name in ("torch", "transformers",
                 *(f"unstructured.partition.{kind}" for kind in ("text", "md", "html", "pdf", "docx", "pptx", "xlsx"))):
        try:
            importlib.import_module(name)
        except ImportError:
            log.warning("could not preload %s", name, exc_info=True)
    extraction.use_offline_nlp()


def _still_to_do(document_id: int) -> bool:
    """Cheap first look, without a lock: duplicates of finished work end here."""
    status = Document.objects.filter(pk=document_id).values_list("status", flat=True).first()
    return status in (DocumentStatus.PENDING, DocumentStatus.PROCESSING)


def process_document(document_id: int, *, resume_holder: str = "") -> str:
    """Run the pipeline for one document. Returns the outcome for logs and tests.

    Raises ProcessingInterrupted when an outage stops it after the claim (the
    task retries), and re-raises other unexpected errors after recording them
    (the document fails once it has used up its attempts)."""
    if not _still_to_do(document_id):
        return "skipped"
    beat = Heartbeat(document_id, new_holder())
    try:
        doc = _claim(document_id, beat.holder, beat.acquire(wait=LOCK_WAIT_SECONDS), resume_holder)
        if doc is None:
            return "skipped"
        beat.start()
        try:
            return _run_pipeline(doc, beat)
        except Superseded:
            return "superseded"
        except SoftTimeLimitExceeded:
            _fail_if_held(doc, beat.holder, f"Processing took longer than the limit of {settings.INGEST_TIME_LIMIT} s "
                                            "(PORTAL_INGEST_TIME_LIMIT). Split the document, or raise the limit "
                                            "and re-ingest.")
            return "failed"
        except Exception as exc:
            if is_transient(exc):
                raise ProcessingInterrupted(beat.holder) from exc
            if _after_unexpected_error(doc, beat.holder, exc) == "failed":
                log.exception("document %s failed with an internal error", doc.code)
                return "failed"
            raise
    finally:
        beat.stop()


def _step(doc: Document, beat: Heartbeat, progress: int, message: str) -> None:
    if beat.lost.is_set():
        raise Superseded()
    _set_progress(doc.pk, beat.holder, progress, message)


def _run_pipeline(doc: Document, beat: Heartbeat) -> str:
    try:
        path = Path(doc.source_file.path)
        extracted = extraction.extract(
            path, doc.original_filename, max_bytes=settings.UPLOAD_MAX_BYTES,
            max_unpacked=settings.INGEST_MAX_UNPACKED_BYTES,
            max_ratio=settings.INGEST_MAX_COMPRESSION_RATIO)
    except extraction.ExtractionError as exc:
        if isinstance(exc.__cause__, SoftTimeLimitExceeded):  # the parser's catch-all wrapped it
            raise exc.__cause__
        _fail_if_held(doc, beat.holder, str(exc))
        return "failed"
    except FileNotFoundError:
        _fail_if_held(doc, beat.holder, "The stored original file is missing from storage.")
        return "failed"

    _step(doc, beat, 50, ProcessingStep.CHUNKING)
    policy = current_chunking_policy()
    counter = tokens.token_counter(policy.model_path)
    try:
        content, drafts = chunking.chunk_sections(extracted.sections, counter.count, max_tokens=policy.max_tokens,
                                                  overlap=policy.overlap, max_chunks=settings.INGEST_MAX_CHUNKS)
    except chunking.TooManyChunks as exc:
        _fail_if_held(doc, beat.holder, str(exc))
        return "failed"
    _step(doc, beat, 75, ProcessingStep.KEYWORDS)
    chunk_keywords = keywords.keywords_for_chunks([d.text for d in drafts])
    if beat.lost.is_set():
        raise Superseded()

    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=doc.pk)
        if (locked.checksum != doc.checksum or locked.status != DocumentStatus.PROCESSING
                or locked.holder != beat.holder):
            # a new file was uploaded, a re-ingest requested, or another worker took it over
            return "superseded"
        Chunk.objects.filter(document=doc).delete()
        Chunk.objects.bulk_create([
            Chunk(document=doc, ordinal=i, text=d.text, token_count=d.token_count,
                  heading_path=d.heading_path, char_start=d.char_start, char_end=d.char_end,
                  keywords=kw)
            for i, (d, kw) in enumerate(zip(drafts, chunk_keywords))
        ])
        now = timezone.now()
        own_title = {}
        if extracted.title and locked.title_source != TitleSource.UPLOADER:  # a typed title is never replaced
            own_title = {"title": extracted.title, "title_source": TitleSource.DOCUMENT}
        # queued_at: the hand-off to embedding is queued now (the sweep checks on it).
        Document.objects.filter(pk=doc.pk).update(
            content=content, status=DocumentStatus.READY, progress=100, status_message=ProcessingStep.READY,
            error="", heartbeat_at=None, holder="", processed_at=now, queued_at=now, **own_title)
        transaction.on_commit(lambda: signals.document_chunked.send(
            sender=Document, document_id=doc.pk, chunk_count=len(drafts)))
    log.info("document %s ready: %d chunks", doc.code, len(drafts))
    return "ready"


def _fail_if_held(doc: Document, holder: str, reason: str) -> None:
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk=doc.pk, holder=holder).first()
        if locked is not None:
            _fail(locked, reason)


def _after_unexpected_error(doc: Document, holder: str, exc: Exception) -> str:
    """A bug, or input the pipeline did not expect: fail the document once it has used
    up its attempts ("failed"), otherwise back to pending for the task's retry ("retry").
    Never raises."""
    try:
        with transaction.atomic():
            locked = Document.objects.select_for_update().filter(pk=doc.pk, holder=holder).first()
            if locked is None:
                return "retry"
            if locked.attempts >= settings.INGEST_MAX_ATTEMPTS:
                _fail(locked, f"Internal error after {locked.attempts} attempts: {exc.__class__.__name__}: {exc}")
                return "failed"
            Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.PENDING, heartbeat_at=None, holder="")
    except Exception:  # the database went away meanwhile: the retry or the sweep comes back to it
        log.exception("could not record the error of document %s", doc.pk)
    return "retry"


def recover_stale_documents() -> list[int]:
    """Kept for callers of the old name: the sweep lives in documents.services.recovery."""
    from documents.services.recovery import recover_documents

    return recover_documents()
