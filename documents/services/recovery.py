"""The ingestion recovery sweep: find every document whose processing was lost
and queue it again (beat runs it every PORTAL_RECOVERY_SWEEP_SECONDS; each
worker runs it when it starts).

Lost means:
- 'processing' while nobody holds the document's advisory lock (its worker died:
  the lock ended with its connection), with no heartbeat for two heartbeat
  intervals (after a database restart a live worker takes its lock again within
  one interval);
- 'processing' with no heartbeat for PORTAL_INGEST_LEASE_SECONDS even though the
  lock is held (a machine that vanished while its connection lingers);
- 'pending' and never queued (the broker was unreachable when it was uploaded);
- 'pending', queued a while ago, and the ingest queue is empty (its message was
  lost: nothing is waiting), or queued more than PORTAL_RECOVERY_REQUEUE_SECONDS
  ago even though the queue is busy (lost behind a backlog).

Each document is marked queued (`queued_at`) in the same statement that selects
it, so two sweeps running together (two workers starting at once) queue it once.
A duplicate message is harmless anyway: processing takes the document's lock
and a second delivery finds the work held or done.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from documents.models import DocumentStatus
from portal.advisory import INGEST, held_keys
from portal.tasking import queue_length

log = logging.getLogger(__name__)


def heartbeat_grace() -> timedelta:
    return timedelta(seconds=2 * settings.INGEST_HEARTBEAT_SECONDS)


def lost_documents() -> list[int]:
    """Ids of documents whose processing was lost, marked queued now."""
    now = timezone.now()
    grace = now - heartbeat_grace()
    lease = now - timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    backlog = now - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS)
    alive = sorted(held_keys(INGEST))
    queue_idle = queue_length(settings.TASK_QUEUES["ingest"]) == 0
    with connection.cursor() as cur:
        cur.execute(
            """
            UPDATE documents_document SET queued_at = %(now)s
            WHERE id IN (
                SELECT id FROM documents_document
                WHERE (status = %(processing)s
                       AND (heartbeat_at IS NULL OR heartbeat_at < %(grace)s)
                       AND ((id %% 2147483648) <> ALL(%(alive)s) OR heartbeat_at IS NULL
                            OR heartbeat_at < %(lease)s))
                   OR (status = %(pending)s AND (id %% 2147483648) <> ALL(%(alive)s)
                       AND (queued_at IS NULL OR queued_at < %(backlog)s
                            OR (%(queue_idle)s AND queued_at < %(grace)s)))
                FOR UPDATE SKIP LOCKED)
              AND (queued_at IS NULL OR queued_at < %(grace)s)
            RETURNING id
            """,
            {"now": now, "grace": grace, "lease": lease, "backlog": backlog, "alive": alive,
             "queue_idle": queue_idle, "processing": DocumentStatus.PROCESSING, "pending": DocumentStatus.PENDING})
        return sorted(row[0] for row in cur.fetchall())


def recover_documents() -> list[int]:
    """Queue every lost document again; returns their ids."""
    from documents.services.intake import enqueue_processing

    lost = lost_documents()
    for pk in lost:
        log.warning("document %s: its processing was lost (worker, message or broker); queueing it again", pk)
        enqueue_processing(pk)
    return lost
