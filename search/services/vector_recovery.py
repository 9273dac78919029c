"""The embedding recovery sweep: ready documents whose vectors are missing in a
serving space (a lost embed message, retries used up during an outage, a killed
worker) get their embedding queued again (beat runs it every
PORTAL_RECOVERY_SWEEP_SECONDS; each worker when it starts, over every document).

A document counts when it became ready after the space was created (older ones
are the space's backfill's work, not the hand-off's) and nobody holds its
(space, document) advisory lock (nobody is writing its vectors now). It is
queued again when its hand-off was never queued (the broker was away), or its
embed queue is empty and the document is fresh (its message was lost: nothing
waits), or its last hand-off is older than PORTAL_RECOVERY_REQUEUE_SECONDS (lost
behind a backlog, or failing: retried at that pace, never in a tight loop).
Embedding is idempotent (ON CONFLICT), so a duplicate task only costs a query.

The same sweep re-indexes the keywords of ready documents that have chunks but
no postings (the inline indexing and its queued task were both lost: a killed
worker, a database and broker outage at once). It does that work itself, a
bounded batch per sweep, so a lost document is never queued twice.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from portal.advisory import EMBED_BASE, held_keys
from portal.tasking import queue_length, send

log = logging.getLogger(__name__)

# The periodic sweep looks at documents processed this recently; the sweep at worker
# start looks at all of them (a full anti-join over every chunk is too heavy every minute).
RECENT = timedelta(days=7)
KEYWORD_BATCH = 50  # documents re-indexed per sweep (one document is one short transaction)


def missing_vector_documents(*, everything: bool = False) -> dict[int, list[int]]:
    """{document id: [space ids]} of documents to queue again, marked queued now."""
    from search.services.spaces import serving_spaces

    now = timezone.now()
    grace = now - timedelta(seconds=2 * settings.INGEST_HEARTBEAT_SECONDS)
    requeue = now - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS)
    queue_idle = queue_length(settings.TASK_QUEUES["embed"]) == 0
    wanted: dict[int, list[int]] = defaultdict(list)
    for space in serving_spaces():
        since = space.created_at if everything else max(space.created_at, now - RECENT)
        busy = sorted(held_keys(EMBED_BASE + space.pk))
        with connection.cursor() as cur:
            cur.execute(
                """
                SELECT d.id FROM documents_document d
                WHERE d.status = 'ready' AND d.processed_at >= %(since)s
                  AND (d.id %% 2147483648) <> ALL(%(busy)s)
                  AND (d.queued_at IS NULL OR d.queued_at < %(requeue)s
                       OR (%(queue_idle)s AND d.queued_at < %(grace)s AND d.processed_at >= %(requeue)s))
                  AND EXISTS (SELECT 1 FROM documents_chunk c WHERE c.document_id = d.id
                              AND NOT EXISTS (SELECT 1 FROM search_chunkembedding e
                                              WHERE e.space_id = %(space)s AND e.chunk_id = c.id))
                """,
                {"since": since, "busy": busy, "requeue": requeue, "queue_idle": queue_idle, "grace": grace,
                 "space": space.pk})
            for (doc_id,) in cur.fetchall():
                wanted[doc_id].append(space.pk)
    if not wanted:
        return {}
    with connection.cursor() as cur:  # mark them; a sweep running beside this one skips them
        cur.execute("UPDATE documents_document SET queued_at = %s WHERE id = ANY(%s) "
                    "AND (queued_at IS NULL OR queued_at < %s) RETURNING id", [now, list(wanted), grace])
        marked = {row[0] for row in cur.fetchall()}
    return {doc_id: spaces for doc_id, spaces in wanted.items() if doc_id in marked}


def queue_embedding(document_id: int, space_id: int) -> bool:
    """Queue one (document, space) embedding and note when; on a broker failure leave
    the document marked unqueued so the next sweep tries at once."""
    from documents.models import Document
    from search.tasks import embed_document_task

    queued = send(embed_document_task, document_id, space_id)
    Document.objects.filter(pk=document_id).update(queued_at=timezone.now() if queued else None)
    return queued


def recover_missing_vectors(*, everything: bool = False) -> list[tuple[int, int]]:
    queued = []
    for doc_id, space_ids in sorted(missing_vector_documents(everything=everything).items()):
        for space_id in space_ids:
            log.warning("document %s has chunks without vectors in space %s; queueing its embedding",
                        doc_id, space_id)
            queue_embedding(doc_id, space_id)
            queued.append((doc_id, space_id))
    return queued


def missing_keyword_documents(*, everything: bool = False, limit: int = KEYWORD_BATCH) -> list[int]:
    """Ready documents, settled for a while (their inline indexing had its chance),
    with chunks and not one posting. Waits at most a few seconds behind a keyword
    rebuild (it truncates the postings): the next sweep looks again."""
    now = timezone.now()
    settled = now - timedelta(seconds=2 * settings.INGEST_HEARTBEAT_SECONDS)
    since = None if everything else now - RECENT
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '5s'")
            cur.execute(
                """
                SELECT d.id FROM documents_document d
                WHERE d.status = 'ready' AND d.processed_at < %(settled)s
                  AND (%(since)s::timestamptz IS NULL OR d.processed_at >= %(since)s)
                  AND EXISTS (SELECT 1 FROM documents_chunk c WHERE c.document_id = d.id)
                  AND NOT EXISTS (SELECT 1 FROM search_keywordposting p WHERE p.document_id = d.id)
                ORDER BY d.id LIMIT %(limit)s
                """, {"settled": settled, "since": since, "limit": limit})
            return [row[0] for row in cur.fetchall()]
    except OperationalError as exc:
        if "lock timeout" in str(exc):
            log.info("keyword recovery waits for the keyword rebuild")
            return []
        raise


def recover_missing_keywords(*, everything: bool = False) -> list[int]:
    from search.services import keyword_index

    recovered = []
    for doc_id in missing_keyword_documents(everything=everything):
        log.warning("document %s is ready but has no keyword postings; indexing it", doc_id)
        if keyword_index.index_document(doc_id):
            recovered.append(doc_id)
    return recovered
