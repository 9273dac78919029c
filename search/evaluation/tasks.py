"""Celery task: a thin wrapper over the runner (queued from the admin)."""
from celery import shared_task

from search.evaluation.models import EvaluationRun, RunStatus


@shared_task(acks_late=True, reject_on_worker_lost=True)
def evaluation_run_task(run_id: int) -> int | None:
    from search.evaluation import report, runner

    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is None or run.status == RunStatus.DONE:
        return None
    runner.execute(run)
    report.write_report([run], run.name or f"run-{run.pk}", title=f"Evaluation run #{run.pk}: {run.label}")
    return run.pk
