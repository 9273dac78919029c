"""Embedding chunks into a space: batched, idempotent (a vector per chunk, window
and space, written with ON CONFLICT), resumable (only chunks without a vector in the
space are embedded), with progress stored on the space."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from django.db import connection, transaction

from documents.models import Chunk, DocumentStatus
from portal.advisory import EMBED_BASE, SessionLock
from search.models import EmbeddingSpace, SpaceStatus
from search.services import encoders
from search.services.windows import chunk_windows

log = logging.getLogger(__name__)

BATCH = 64


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def write_vectors(space: EmbeddingSpace, rows: list[tuple], *, replace: bool = True) -> int:
    """Write (chunk id, document id, vector) or (chunk id, document id, window,
    vector) rows of one space in ONE transaction: every window of a chunk is in the
    same call, so a chunk is embedded whole or not at all. `replace`: upsert, and
    drop windows of these chunks beyond those written; otherwise a chunk that
    already has vectors is left as it is. Returns the chunks written."""
    rows = [(r[0], r[1], 0, r[2]) if len(r) == 3 else tuple(r) for r in rows]
    if not rows:
        return 0
    dim = int(space.dimension)
    windows: dict[int, int] = {}
    for chunk_id, _, window, _ in rows:
        windows[chunk_id] = max(windows.get(chunk_id, 0), window + 1)
    conflict = 'DO UPDATE SET embedding = EXCLUDED.embedding' if replace else "DO NOTHING"
    with transaction.atomic(), connection.cursor() as cur:
        # The insert trigger share-locks each row's document (see search/0004); taking
        # them first, in id order, narrows the window for a deadlock with a bulk
        # access change of the same documents.
        cur.execute("SELECT 1 FROM documents_document WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                    [sorted({doc_id for _, doc_id, _, _ in rows})])
        if not replace:  # chunks with vectors already (another writer was first) stay as they are
            cur.execute("SELECT DISTINCT chunk_id FROM search_chunkembedding WHERE space_id = %s "
                        "AND chunk_id = ANY(%s)", [space.pk, list(windows)])
            have = {row[0] for row in cur.fetchall()}
            rows = [r for r in rows if r[0] not in have]
            windows = {c: n for c, n in windows.items() if c not in have}
        if not rows:
            return 0
        cur.executemany(
            'INSERT INTO search_chunkembedding (space_id, chunk_id, document_id, "window", embedding) '
            f"VALUES (%s, %s, %s, %s, %s::vector({dim})) "
            f'ON CONFLICT (space_id, chunk_id, "window") {conflict}',
            [(space.pk, chunk_id, doc_id, window, vector_literal(vec)) for chunk_id, doc_id, window, vec in rows])
        if replace and windows:
            cur.execute('DELETE FROM search_chunkembedding e USING unnest(%s::bigint[], %s::int[]) AS w(chunk_id, n) '
                        'WHERE e.space_id = %s AND e.chunk_id = w.chunk_id AND e."window" >= w.n',
                        [list(windows), list(windows.values()), space.pk])
    return len(windows)


@dataclass
class Encoded:
    """A batch of chunks encoded for one space: one row per window."""
    rows: list[tuple[int, int, int, np.ndarray]]  # (chunk id, document id, window, vector)

    def of(self, chunk_ids) -> list[tuple[int, int, int, np.ndarray]]:
        keep = set(chunk_ids)
        return [row for row in self.rows if row[0] in keep]


def encode_chunks(space: EmbeddingSpace, chunks: list) -> Encoded:
    """Every window of every chunk (search.services.windows: only what fits the
    space's model), encoded in one call."""
    items = [(c, n, text) for c in chunks
             for n, text in enumerate(chunk_windows(space, c.text, c.heading_path))]
    if not items:
        return Encoded([])
    vectors = encoders.encode_passages(space, [text for _, _, text in items])
    if vectors.shape[1] != space.dimension:
        raise ValueError(f"model produced {vectors.shape[1]} dims, space {space.name} expects {space.dimension}")
    return Encoded([(c.pk, c.document_id, n, v) for (c, n, _), v in zip(items, vectors)])


def embed_chunks(space: EmbeddingSpace, chunks: Iterable[Chunk]) -> int:
    chunks = list(chunks)
    if not chunks:
        return 0
    encoded = encode_chunks(space, chunks)
    # The chunk may have been replaced by a re-ingest while we encoded: write only live ones.
    live = set(Chunk.objects.filter(pk__in=[c.pk for c in chunks]).values_list("pk", flat=True))
    write_vectors(space, encoded.of(live))
    return len(live)


def embedded_chunks(space: EmbeddingSpace, **filters) -> int:
    """Chunks with vectors in `space` (every embedded chunk has a window 0)."""
    return space.embeddings.filter(window=0, **filters).count()


def missing_chunks(space: EmbeddingSpace, document_id: int | None = None):
    qs = Chunk.objects.filter(document__status=DocumentStatus.READY).exclude(embeddings__space=space)
    if document_id is not None:
        qs = qs.filter(document_id=document_id)
    return qs.order_by("pk").only("pk", "document_id", "text", "heading_path")


def embed_document(space: EmbeddingSpace, document_id: int) -> int:
    done = 0
    chunks = list(missing_chunks(space, document_id))
    for start in range(0, len(chunks), BATCH):
        done += embed_chunks(space, chunks[start:start + BATCH])
    return done


@dataclass
class StepResult:
    written: int
    more: bool  # chunks still missing: queue another step
    busy: bool = False  # another worker holds this document's vectors in this space


def embed_document_step(space: EmbeddingSpace, document_id: int, max_chunks: int) -> StepResult:
    """Write at most `max_chunks` of the document's missing vectors, holding the
    (space, document) advisory lock meanwhile: the recovery sweep leaves a document
    alone while its lock is held, and a duplicate task finds it busy. A large
    document is embedded in steps, each queued behind other work."""
    with SessionLock(EMBED_BASE + space.pk, document_id) as lock:
        if not lock.try_acquire():
            return StepResult(0, False, busy=True)
        chunks = list(missing_chunks(space, document_id)[:max_chunks + 1])
        written = 0
        todo = chunks[:max_chunks]
        for start in range(0, len(todo), BATCH):
            written += embed_chunks(space, todo[start:start + BATCH])
    return StepResult(written, more=len(chunks) > max_chunks)


def backfill(space: EmbeddingSpace, progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every chunk the space lacks (resumable: re-running skips what is done)."""
    total_missing = missing_chunks(space).count()
    done = 0
    while True:
        batch = list(missing_chunks(space)[:BATCH])
        if not batch:
            break
        done += embed_chunks(space, batch)
        count = embedded_chunks(space)
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            embedded_chunks=count, status_message=f"Embedded {done}/{total_missing} missing chunks")
        if progress:
            progress(done, total_missing)
    EmbeddingSpace.objects.filter(pk=space.pk).update(embedded_chunks=embedded_chunks(space),
                                                      status_message="Up to date")
    if space.status == SpaceStatus.BUILDING:
        EmbeddingSpace.objects.filter(pk=space.pk, status=SpaceStatus.BUILDING).update(status=SpaceStatus.READY)
    return done


def document_progress(space: EmbeddingSpace | None, document_id: int) -> tuple[int, int] | None:
    """(chunks with a vector in `space`, chunks) of a document whose vectors are
    still being written; None when there is nothing to wait for."""
    if space is None:
        return None
    total = Chunk.objects.filter(document_id=document_id).count()
    done = embedded_chunks(space, document_id=document_id)
    return (done, total) if total and done < total else None
