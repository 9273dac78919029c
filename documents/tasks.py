"""Celery tasks for ingestion: thin wrappers over documents.services.

Outages: processing that meets an unreachable database or broker is retried with
backoff (portal.tasking); the error handler never queries the database, so the
retry is always reached. What a retry cannot save (a broker down as well, the
retries used up, a killed worker) the recovery sweep finds from the database.
"""
import logging

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from documents.services import processing, recovery
from portal import tasking

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def process_document_task(self, document_id: int, resume_holder: str = "") -> str:
    try:
        return processing.process_document(document_id, resume_holder=resume_holder)
    except processing.ProcessingInterrupted as exc:  # an outage after the claim: resume, not a new attempt
        return tasking.retry_later(self, exc.__cause__ or exc, args=(document_id,),
                                   kwargs={"resume_holder": exc.holder})
    except Exception as exc:  # an outage before the claim, or an unexpected error already recorded
        # (an outage keeps resume_holder: the retry that meets the database still down resumes too)
        keep = resume_holder if tasking.is_transient(exc) else ""
        return tasking.retry_later(self, exc, args=(document_id,), kwargs={"resume_holder": keep})


@shared_task(bind=True, acks_late=True)
def recover_stale_documents_task(self) -> list[int]:
    try:
        return recovery.recover_documents()
    except Exception as exc:
        if tasking.is_transient(exc):  # the next sweep (beat, every minute) tries again
            log.warning("recovery sweep skipped: %s", exc)
            return []
        raise


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    # A worker that died left its documents 'processing'; the next worker to start picks
    # them up now, and once more when a heartbeat of just before the crash is older than
    # the grace the sweep allows (beat's sweep does it every minute after that).
    tasking.send(recover_stale_documents_task)
    tasking.send_later(recover_stale_documents_task, recovery.heartbeat_grace().total_seconds() + 1)


@worker_process_init.connect
def _preload(**kwargs):
    if tasking.consumes(settings.TASK_QUEUES["ingest"]):
        processing.preload_libraries()
