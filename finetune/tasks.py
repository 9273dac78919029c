"""Celery tasks for fine-tuning: thin wrappers over finetune.services (the
finetune queue; settings.CELERY_TASK_ROUTES).

A killed worker: the job's lock ends with its connection and the sweep (beat,
every minute; and each worker at start) queues the job again, which resumes from
its last checkpoint. An outage (database or broker away) retries with backoff
(portal.tasking); the retry resumes the same attempt.
"""
import logging

from celery import shared_task
from celery.signals import worker_ready

from portal import tasking

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_finetune_job_task(self, job_id: int, after_outage: bool = False) -> str:
    from finetune.services import pipeline

    try:
        return pipeline.run_job(job_id, after_outage=after_outage)
    except Exception as exc:
        if not tasking.is_transient(exc):
            raise
        return tasking.retry_later(self, exc, args=(job_id,), kwargs={"after_outage": True})


@shared_task(bind=True, acks_late=True)
def recover_stale_finetune_jobs_task(self) -> list[int]:
    from finetune.services import recovery

    try:
        return recovery.recover_jobs()
    except Exception as exc:
        if tasking.is_transient(exc):  # the next sweep tries again
            log.warning("fine-tuning recovery sweep skipped: %s", exc)
            return []
        raise


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    from finetune.services import recovery

    tasking.send(recover_stale_finetune_jobs_task)
    tasking.send_later(recover_stale_finetune_jobs_task, recovery.heartbeat_grace().total_seconds() + 1)
