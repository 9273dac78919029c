"""Celery tasks for ingestion: thin wrappers over documents.services."""
import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from documents.services import processing

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def process_document_task(self, document_id: int) -> str:
    try:
        return processing.process_document(document_id)
    except Exception as exc:  # an unexpected error (a bug, the database went away)
        log.exception("processing document %s raised", document_id)
        from documents.models import Document

        attempts = Document.objects.filter(pk=document_id).values_list("attempts", flat=True).first() or 0
        if attempts >= settings.INGEST_MAX_ATTEMPTS:
            processing.mark_failed(document_id, f"Internal error after {attempts} attempts: "
                                                f"{exc.__class__.__name__}: {exc}")
            return "failed"
        Document.objects.filter(pk=document_id).update(status="pending", heartbeat_at=None)
        raise self.retry(exc=exc, countdown=min(60, 5 * attempts))


@shared_task
def recover_stale_documents_task() -> list[int]:
    return processing.recover_stale_documents()


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    # A worker that died left its documents 'processing'; the next worker to start picks
    # them up — now, and once more when a lease taken just before the crash has run out.
    recover_stale_documents_task.delay()
    recover_stale_documents_task.apply_async(countdown=settings.INGEST_LEASE_SECONDS + 1)
