"""Celery tasks for search: thin wrappers over search.services.

Every task retries an outage (unreachable database or broker, a deadlock with a
concurrent access change) with backoff (portal.tasking); what the retries cannot
save, the embedding recovery sweep finds (search.services.vector_recovery).
"""
import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from portal import tasking
from search.models import EmbeddingSpace
from search.services import embedding, keyword_index, vector_recovery

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def embed_document_task(self, document_id: int, space_id: int) -> int:
    """One step of a document's embedding (PORTAL_EMBED_TASK_CHUNKS vectors at most);
    the rest is queued as a new task behind whatever else waits in the embed queue."""
    try:
        space = EmbeddingSpace.objects.filter(pk=space_id).first()
        if space is None or space.status == "retired":
            return 0
        step = embedding.embed_document_step(space, document_id, settings.EMBED_TASK_CHUNKS)
        if step.more:
            vector_recovery.queue_embedding(document_id, space_id)
        return step.written
    except SoftTimeLimitExceeded as exc:  # the vectors written so far are kept; go on later
        log.error("embedding document %s in space %s hit the %s s time limit", document_id, space_id,
                  settings.EMBED_TIME_LIMIT)
        return tasking.retry_later(self, exc)
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def backfill_space_task(self, space_id: int) -> int:
    try:
        return embedding.backfill(EmbeddingSpace.objects.get(pk=space_id))
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def index_keywords_task(self, document_id: int) -> int:
    try:
        return keyword_index.index_document(document_id)
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, acks_late=True)
def recover_missing_vectors_task(self, everything: bool = False) -> int:
    try:
        keywords = vector_recovery.recover_missing_keywords(everything=everything)
        return len(vector_recovery.recover_missing_vectors(everything=everything)) + len(keywords)
    except Exception as exc:
        if tasking.is_transient(exc):  # the next sweep tries again
            log.warning("embedding recovery sweep skipped: %s", exc)
            return 0
        raise


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    # Every document once (the periodic sweep looks at recent ones), and the recent ones
    # again when a hand-off queued just before a crash is past the sweep's grace.
    tasking.send(recover_missing_vectors_task, everything=True)
    tasking.send_later(recover_missing_vectors_task, 2 * settings.INGEST_HEARTBEAT_SECONDS + 1)



@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def space_migration_step_task(self, migration_id: int, token: str) -> str:
    """One step of a migration between spaces (search.services.migration_worker)."""
    from search.services import migration_worker

    try:
        return migration_worker.run_step(migration_id, token)
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, acks_late=True)
def recover_stalled_migrations_task(self) -> list[int]:
    from search.services import migration_watchdog

    try:
        return migration_watchdog.recover_migrations()
    except Exception as exc:
        if tasking.is_transient(exc):  # the next sweep tries again
            log.warning("migration watchdog sweep skipped: %s", exc)
            return []
        raise


@worker_ready.connect
def _recover_migrations_on_worker_start(sender=None, **kwargs):
    tasking.send(recover_stalled_migrations_task)
    tasking.send_later(recover_stalled_migrations_task, 2 * settings.MIGRATION_HEARTBEAT_SECONDS + 1)


@worker_process_init.connect
def _preload(**kwargs):
    # An import interrupted by a time limit breaks the process (processing.preload_libraries).
    if tasking.consumes(settings.TASK_QUEUES["embed"]):
        import sentence_transformers  # noqa: F401


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def compare_spaces_task(self, migration_id: int, token: str) -> str:
    """Calibrate a migration's target and score both spaces (search.services.migration_gate)."""
    from search.services import migration_gate

    try:
        return migration_gate.run_compare(migration_id, token)
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def retire_space_task(self, migration_id: int, token: str) -> str:
    """Retire a promoted migration's old space (search.services.migration_retire)."""
    from search.services import migration_retire

    try:
        return migration_retire.run_retire(migration_id, token)
    except Exception as exc:
        if tasking.is_transient(exc):
            return tasking.retry_later(self, exc)
        raise


@shared_task(bind=True, ignore_result=True)
def sync_keyword_index_task(self) -> int:
    """Apply the keyword change log to this machine's tantivy index (beat runs it
    every PORTAL_KEYWORD_SYNC_SECONDS; a worker that finds another writer busy
    skips). Nothing to do with the postgres engine."""
    if settings.KEYWORD_ENGINE != "tantivy":
        return 0
    from search.services.keyword_engine import writer

    try:
        return writer.sync().entries
    except Exception as exc:
        if tasking.is_transient(exc):  # the next run goes on from the cursor
            log.warning("keyword index sync skipped: %s", exc)
            return 0
        raise


@shared_task(bind=True, ignore_result=True)
def prune_keyword_change_log_task(self) -> int:
    from search.services.keyword_engine import maintenance

    try:
        return maintenance.prune()
    except Exception as exc:
        if tasking.is_transient(exc):
            log.warning("keyword change log pruning skipped: %s", exc)
            return 0
        raise
