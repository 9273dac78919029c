"""A migration's backfill (issue 11): the target's vectors for every chunk, in
batches over a keyset cursor (chunk id).

Each batch is encoded outside any transaction, then written in ONE transaction
together with the cursor and the progress: a worker killed at any point leaves
the cursor at the last batch whose vectors are committed, and the next step goes
on from there — no chunk is skipped, and none is written twice (ON CONFLICT DO
NOTHING covers a chunk the dual-write path wrote meanwhile). Chunks that already
have a vector in the target are passed over without encoding.

Documents added or re-ingested during the backfill get new chunk ids, above the
cursor: the walk reaches them (and their dual-write embedding may be first).
Deleted chunks take their vectors with them (a cascade), and a chunk deleted
between encoding and writing is not written (its row is locked and checked in the
write transaction).
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import connection, transaction

from search.migration_models import MigrationState, SpaceMigration
from search.models import ChunkEmbedding, EmbeddingSpace
from search.services.embedding import Encoded, encode_chunks, write_vectors
from search.services.space_migration import TakenOver, _chunks_to_embed

log = logging.getLogger(__name__)

RECOUNT_EVERY = 20  # batches between two recounts of the chunks still ahead of the cursor


class Cancelled(Exception):
    """A cancel was requested: the backfill stops here (nothing of this batch is written)."""


def next_batch(space: EmbeddingSpace, cursor: int, size: int) -> list:
    return list(_chunks_to_embed(space).filter(pk__gt=cursor).order_by("pk")
                .only("pk", "document_id", "text", "heading_path")[:size])


def remaining(space: EmbeddingSpace, cursor: int) -> int:
    return _chunks_to_embed(space).filter(pk__gt=cursor).count()


def encode(space: EmbeddingSpace, chunks: list) -> Encoded:
    """Every window of every chunk (only what fits the target's model)."""
    return encode_chunks(space, chunks)


def write_batch(migration_id: int, token: str, space: EmbeddingSpace, cursor: int, batch: list, encoded: list,
                vectors: Encoded | None, *, total: int | None, rate: float | None) -> dict:
    """Write one batch's vectors and move the cursor past it, in one transaction.
    Refuses (nothing written) when the step was superseded, a cancel was requested,
    or the cursor is not where this step left it."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT step_token, cancel_requested, state, cursor, done_chunks, embedded_chunks, total_chunks "
                    "FROM search_spacemigration WHERE id = %s FOR UPDATE", [migration_id])
        row_token, cancel, state, row_cursor, done, embedded, row_total = cur.fetchone()
        if row_token != token or state != MigrationState.BACKFILLING or row_cursor != cursor:
            raise TakenOver(f"migration {migration_id}: another step owns the backfill now")
        if cancel:
            raise Cancelled()
        written = 0
        if encoded:
            # As embedding.write_vectors: the documents first, in id order (the vector rows'
            # insert trigger share-locks them), then the chunks still there, kept until commit.
            cur.execute("SELECT 1 FROM documents_document WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                        [sorted({c.document_id for c in encoded})])
            cur.execute("SELECT id FROM documents_chunk WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
                        [[c.pk for c in encoded]])
            live = {row[0] for row in cur.fetchall()}
            # DO NOTHING for a chunk the dual-write path embedded meanwhile
            written = write_vectors(space, vectors.of(live), replace=False)
        new_cursor = batch[-1].pk
        done += len(batch)
        total = max(done, total if total is not None else row_total)
        eta = int((total - done) / rate) if rate else None
        cur.execute("UPDATE search_spacemigration SET cursor = %s, done_chunks = %s, embedded_chunks = %s, "
                    "total_chunks = %s, chunks_per_second = %s, eta_seconds = %s, heartbeat_at = now(), stalls = 0 "
                    "WHERE id = %s",
                    [new_cursor, done, embedded + written, total, rate, eta, migration_id])
    return {"cursor": new_cursor, "done": done, "written": written, "total": total}


def run_batches(migration: SpaceMigration, token: str, check, *, deadline: float) -> bool:
    """Backfill batch after batch until the walk is done (False) or the step's time is
    up (True: more to do, queue the next step). `check()` raises when the step must stop."""
    space = EmbeddingSpace.objects.get(pk=migration.target_id)
    cursor = migration.cursor
    started, passed = time.monotonic(), 0
    total = migration.done_chunks + remaining(space, cursor)
    for number in range(10**9):
        step_began = time.monotonic()
        check()
        batch = next_batch(space, cursor, settings.MIGRATION_BATCH)
        if not batch:
            return False
        have = set(ChunkEmbedding.objects.filter(space=space, chunk_id__in=[c.pk for c in batch])
                   .values_list("chunk_id", flat=True))
        encoded = [c for c in batch if c.pk not in have]
        began = time.monotonic()
        vectors = encode(space, encoded) if encoded else None
        encode_seconds = time.monotonic() - began
        check()
        passed += len(batch)
        elapsed = time.monotonic() - started
        rate = round(passed / elapsed, 2) if elapsed > 0 else None
        if number and number % RECOUNT_EVERY == 0:
            total = migration.done_chunks + passed + remaining(space, batch[-1].pk)
        result = write_batch(migration.pk, token, space, cursor, batch, encoded, vectors, total=total, rate=rate)
        # where a batch's time goes (bench/migration.py sums these: the encoding's share)
        log.info("backfill batch: %d chunks, %d encoded in %.3f s, batch done in %.3f s", len(batch),
                 len(encoded), encode_seconds, time.monotonic() - step_began)
        cursor = result["cursor"]
        total = result["total"]
        if time.monotonic() >= deadline:
            return True
    return True


def missing_chunks(space: EmbeddingSpace):
    """Chunks the walk passed that still have no vector in the target (the safety net
    before the index is built: a dual-write lost with its worker, a delete rolled back)."""
    return (_chunks_to_embed(space).exclude(embeddings__space=space).order_by("pk")
            .only("pk", "document_id", "text", "heading_path"))


def catch_up(migration: SpaceMigration, token: str, check) -> int:
    """Embed every chunk still missing in the target; returns how many were written."""
    space = EmbeddingSpace.objects.get(pk=migration.target_id)
    written = 0
    while True:
        check()
        batch = list(missing_chunks(space)[:settings.MIGRATION_BATCH])
        if not batch:
            return written
        vectors = encode(space, batch)
        with transaction.atomic():
            row = SpaceMigration.objects.select_for_update().get(pk=migration.pk)
            if row.step_token != token:
                raise TakenOver(f"migration {migration.pk}: superseded")
            if row.cancel_requested:
                raise Cancelled()
            live = set(type(batch[0]).objects.filter(pk__in=[c.pk for c in batch]).values_list("pk", flat=True))
            write_vectors(space, vectors.of(live))
            SpaceMigration.objects.filter(pk=migration.pk).update(embedded_chunks=row.embedded_chunks + len(live))
        written += len(live)
        if not live:  # every one of them was deleted meanwhile; look again
            continue


def delete_vectors(space: EmbeddingSpace, *, batch: int = 5000) -> int:
    """Remove a space's vectors in short transactions (no long lock on the shared table)."""
    removed = 0
    while True:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM search_chunkembedding WHERE id IN (SELECT id FROM search_chunkembedding "
                        "WHERE space_id = %s LIMIT %s)", [space.pk, batch])
            count = cur.rowcount
        removed += count
        if count < batch:
            return removed
