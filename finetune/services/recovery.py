"""The fine-tuning recovery sweep (beat runs it every PORTAL_RECOVERY_SWEEP_SECONDS;
each worker runs it when it starts): find every active job whose work was lost
and queue it again; it resumes from its last checkpoint.

Lost means:
- running (validating … packaging) while nobody holds the job's advisory lock
  (its worker died: the lock ended with its connection), with no heartbeat for
  two heartbeat intervals (after a database restart a live worker takes its lock
  again within one);
- running with no heartbeat for PORTAL_FINETUNE_LEASE_SECONDS even though the
  lock is held (a worker machine that vanished while its connection lingers);
- queued and never handed to the broker (it was away), or handed over more than
  PORTAL_RECOVERY_REQUEUE_SECONDS ago while nobody runs it (the message was lost,
  or waits behind a long job: a duplicate is harmless, the lock lets one run).

The job is marked queued (`queued_at`) in the statement that selects it, so two
sweeps at once queue it once. Each start counts an attempt; after
PORTAL_FINETUNE_MAX_ATTEMPTS the job fails with the reason.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from finetune.models import ACTIVE_JOB_STATUSES, JobStatus
from portal.advisory import FINETUNE, held_keys

log = logging.getLogger(__name__)


def heartbeat_grace() -> timedelta:
    return timedelta(seconds=2 * settings.FINETUNE_HEARTBEAT_SECONDS)


def lost_jobs() -> list[int]:
    now = timezone.now()
    grace = now - heartbeat_grace()
    lease = now - timedelta(seconds=settings.FINETUNE_LEASE_SECONDS)
    backlog = now - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS)
    alive = sorted(held_keys(FINETUNE))
    running = [s for s in ACTIVE_JOB_STATUSES if s != JobStatus.QUEUED]
    with connection.cursor() as cur:
        cur.execute(
            """
            UPDATE finetune_finetunejob SET queued_at = %(now)s
            WHERE id IN (
                SELECT id FROM finetune_finetunejob
                WHERE (status = ANY(%(running)s)
                       AND (heartbeat_at IS NULL OR heartbeat_at < %(grace)s)
                       AND ((id %% 2147483648) <> ALL(%(alive)s) OR heartbeat_at < %(lease)s))
                   OR (status = %(queued)s AND (id %% 2147483648) <> ALL(%(alive)s)
                       AND (queued_at IS NULL OR queued_at < %(backlog)s))
                FOR UPDATE SKIP LOCKED)
              AND (queued_at IS NULL OR queued_at < %(grace)s)
            RETURNING id
            """,
            {"now": now, "grace": grace, "lease": lease, "backlog": backlog, "alive": alive,
             "running": [str(s) for s in running], "queued": str(JobStatus.QUEUED)})
        return sorted(row[0] for row in cur.fetchall())


def recover_jobs() -> list[int]:
    """Queue every lost job again; returns their ids."""
    from finetune.tasks import run_finetune_job_task
    from portal import tasking

    lost = lost_jobs()
    for pk in lost:
        log.warning("fine-tuning job %s: its worker or message was lost; queueing it again", pk)
        if not tasking.send(run_finetune_job_task, pk):
            from finetune.models import FineTuneJob

            FineTuneJob.objects.filter(pk=pk).update(queued_at=None)  # the next sweep tries again
    return lost
