"""Celery task: a thin wrapper over the runner (queued from the admin). An outage
(database or broker away) retries the run from the start with backoff; after the
last retry the run is marked failed with the reason."""
import logging

from celery import shared_task
from django.utils import timezone

from portal import tasking
from search.evaluation.models import EvaluationRun, RunStatus

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def evaluation_run_task(self, run_id: int) -> int | None:
    from search.evaluation import report, runner

    try:
        run = EvaluationRun.objects.filter(pk=run_id).first()
        if run is None or run.status == RunStatus.DONE:
            return None
        runner.execute(run)
        report.write_report([run], run.name or f"run-{run.pk}", title=f"Evaluation run #{run.pk}: {run.label}")
        return run.pk
    except Exception as exc:
        if not tasking.is_transient(exc):
            raise
        tasking.retry_later(self, exc)  # raises the retry; returns only when the retries are used up
        try:
            EvaluationRun.objects.filter(pk=run_id).exclude(status=RunStatus.DONE).update(
                status=RunStatus.FAILED, finished_at=timezone.now(),
                error=f"{type(exc).__name__}: {exc} (gave up after {self.request.retries} retries)")
        except Exception as still_down:
            log.error("evaluation run %s: gave up, and could not record it: %s", run_id, still_down)
        return None
