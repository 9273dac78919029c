"""The migration stall watchdog (issue 11; beat runs it every
PORTAL_RECOVERY_SWEEP_SECONDS, and each worker when it starts): a migration whose
work stopped is queued again and goes on from its cursor.

Stopped means: the migration has work for a worker (planned, backfilling,
indexing, or any open state with a cancel to carry out), nobody holds its
advisory lock (its worker died: the lock ended with its connection) and its
heartbeat is older than two heartbeat intervals; and its last step was never
handed to the broker, or was handed over while the embed queue is now empty
(the message was lost), or longer ago than PORTAL_RECOVERY_REQUEUE_SECONDS (lost
behind a backlog). Also a step whose heartbeat is older than
PORTAL_MIGRATION_LEASE_SECONDS although its lock looks held (a vanished machine).

The row is marked in the statement that selects it (two sweeps at once queue it
once); each recovery counts a stall, and a migration that stalls
PORTAL_MIGRATION_MAX_STALLS times in a row without a batch of progress fails.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from portal.advisory import MIGRATION, held_keys
from portal.tasking import queue_length
from search.migration_models import OPEN_STATES, WORKER_STATES, MigrationStep, SpaceMigration

log = logging.getLogger(__name__)


def stalled_migrations() -> list[int]:
    now = timezone.now()
    grace = now - timedelta(seconds=2 * settings.MIGRATION_HEARTBEAT_SECONDS)
    lease = now - timedelta(seconds=settings.MIGRATION_LEASE_SECONDS)
    backlog = now - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS)
    queue_idle = queue_length(settings.TASK_QUEUES["embed"]) == 0
    alive = sorted(held_keys(MIGRATION))
    with connection.cursor() as cur:
        cur.execute(
            """
            UPDATE search_spacemigration SET queued_at = %(now)s, stalls = stalls + 1
            WHERE id IN (
                SELECT id FROM search_spacemigration
                WHERE (state = ANY(%(working)s) OR (cancel_requested AND state = ANY(%(open)s)))
                  AND (heartbeat_at IS NULL OR heartbeat_at < %(grace)s)
                  AND (((id %% 2147483648) <> ALL(%(alive)s)
                        AND (queued_at IS NULL OR queued_at < %(backlog)s
                             OR (%(queue_idle)s AND queued_at < %(grace)s)))
                       OR heartbeat_at < %(lease)s)
                FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            {"now": now, "grace": grace, "lease": lease, "backlog": backlog, "alive": alive,
             "queue_idle": queue_idle, "working": [str(s) for s in WORKER_STATES],
             "open": [str(s) for s in OPEN_STATES]})
        return sorted(row[0] for row in cur.fetchall())


def recover_migrations() -> list[int]:
    """Queue every stalled migration's next step again; returns their ids."""
    from search.services import space_migration

    stalled = stalled_migrations()
    for pk in stalled:
        migration = SpaceMigration.objects.get(pk=pk)
        log.warning("migration %s (%s): its worker or message was lost; queueing it again", pk, migration.state)
        space_migration.record(migration, MigrationStep.STALLED, None,
                               f"last heartbeat {migration.heartbeat_at.isoformat(timespec='seconds')}"
                               if migration.heartbeat_at else "never started")
        space_migration.queue_step(migration)
    return stalled
