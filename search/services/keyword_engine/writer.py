"""The tantivy index writer: builds this machine's copy from PostgreSQL and
keeps it current from the change log (search/keyword_models.py).

One writer per index (a lock file, store.writer_lock); any number of readers.
`sync` applies the log after the copy's cursor in batches: for each document
named in a batch, every entry of that document is deleted (by document id) and
its chunks as they are NOW in PostgreSQL are added, then the batch is committed
and only then the cursor moves (a file in the copy, written atomically, and the
copy's row in PostgreSQL for the status report). A crash anywhere loses and
doubles nothing: uncommitted work is dropped by tantivy, and a batch committed
whose cursor was not written is applied again, which deletes before it adds.
Old segment files are garbage-collected after every commit.

Log entries are read in (xid, id) order and only once every older transaction
has ended (xid below the oldest running one), so one committing late under an
older id is never skipped (a long transaction holds the writer back, never
past it).
"""
from __future__ import annotations

import logging
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from search.keyword_models import KeywordIndexCopy
from search.services.keyword_engine import rows, store
from search.services.keyword_engine.analysis import ANALYZER_VERSION

log = logging.getLogger(__name__)
HEAP_BYTES = 128_000_000
Progress = Callable[[int, int], None]  # (done, total)

_PENDING = """SELECT id, xid, document_id FROM search_keywordchange
    WHERE (xid, id) > (%s, %s) AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    ORDER BY xid, id LIMIT %s"""


class IndexBusy(Exception):
    """Another process holds this index's writer lock."""


@dataclass
class SyncResult:
    entries: int = 0
    documents: int = 0
    chunks: int = 0
    batches: int = 0
    rebuilt: bool = False
    skipped: bool = False  # another writer has the lock
    cursor: tuple[int, int] | None = None
    errors: list[str] = field(default_factory=list)


def _register(copy, cursor: tuple[int, int], *, built: bool = False, chunks: int | None = None) -> None:
    values = {"host": socket.gethostname(), "analyzer": ANALYZER_VERSION, "path": str(copy),
              "cursor_xid": cursor[0], "cursor_id": cursor[1], "applied_at": timezone.now()}
    if built:
        values["built_at"] = timezone.now()
    if chunks is not None:
        values["chunks"] = chunks
    KeywordIndexCopy.objects.update_or_create(copy_id=copy.name, defaults=values)


def _save_cursor(copy, cursor: tuple[int, int], chunks: int) -> None:
    store.write_cursor(copy, cursor)
    _register(copy, cursor, chunks=chunks)


def _apply(writer, document_ids: list[int]) -> int:
    """Replace every entry of these documents by their chunks as PostgreSQL has them."""
    for doc_id in document_ids:
        writer.delete_documents_by_term("document_id", int(doc_id))
    added = 0
    for doc in rows.chunks_of(document_ids):
        writer.add_document(doc)
        added += 1
    return added


def sync(*, batch: int | None = None, max_batches: int | None = None, wait: bool = False) -> SyncResult:
    """Apply the change log to this machine's copy (built first when there is
    none, or when PostgreSQL no longer knows it: its log was pruned)."""
    batch = batch or settings.KEYWORD_SYNC_BATCH
    result = SyncResult()
    with store.writer_lock(wait) as held:
        if not held:
            result.skipped = True
            return result
        copy = store.current_copy()
        if copy is None or not KeywordIndexCopy.objects.filter(copy_id=copy.name).exists():
            log.warning("keyword index: %s; building this machine's copy",
                        "no copy here yet" if copy is None else f"copy {copy.name} unknown to the database")
            _rebuild_locked(None)
            copy, result.rebuilt = store.current_copy(), True
        cursor = store.read_cursor(copy)
        index = store.open_index(copy)
        while max_batches is None or result.batches < max_batches:
            with connection.cursor() as cur:
                cur.execute(_PENDING, [cursor[0], cursor[1], batch])
                entries = cur.fetchall()
            if not entries:
                break
            document_ids = sorted({doc for _, _, doc in entries})
            writer = index.writer(HEAP_BYTES, 1)
            try:
                result.chunks += _apply(writer, document_ids)
                writer.commit()
                writer.garbage_collect_files()
            except BaseException:
                writer.rollback()
                raise
            finally:
                del writer  # releases tantivy's own lock at once
            cursor = (entries[-1][1], entries[-1][0])
            index.reload()
            _save_cursor(copy, cursor, index.searcher().num_docs)
            result.entries += len(entries)
            result.documents += len(document_ids)
            result.batches += 1
        result.cursor = cursor
    return result


def rebuild(progress: Progress | None = None) -> SyncResult:
    """Build a new copy from PostgreSQL (one consistent snapshot), make it the
    one searched, and drop the old copies of this analyzer version on this
    machine. Searches go on answering from the old copy meanwhile."""
    with store.writer_lock(wait=True):
        return _rebuild_locked(progress)


def _rebuild_locked(progress: Progress | None) -> SyncResult:
    started = time.monotonic()
    old = store.current_copy()
    copy = store.new_copy_dir()
    index = store.open_index(copy)
    writer = index.writer(HEAP_BYTES, 1)
    added = 0
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            # Transactions below xmin have ended before any row is read: the build sees
            # them. The log from xmin on is applied after (some of it twice: harmless,
            # it deletes before it adds). Registered first, so pruning keeps that log.
            cursor = (cur.fetchone()[0], 0)
        _register(copy, cursor)
        nested = connection.in_atomic_block
        with transaction.atomic(), connection.cursor() as cur:
            if not nested:  # one snapshot for the whole build (also correct without)
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            total = rows.count_indexable()
            for docs in rows.all_chunks():
                for doc in docs:
                    writer.add_document(doc)
                added += len(docs)
                if progress:
                    progress(added, total)
        writer.commit()
        writer.garbage_collect_files()
        writer.wait_merging_threads()
    except BaseException:
        del writer
        shutil.rmtree(copy, ignore_errors=True)
        KeywordIndexCopy.objects.filter(copy_id=copy.name).delete()
        raise
    store.write_cursor(copy, cursor)
    _register(copy, cursor, built=True, chunks=added)
    store.make_current(copy)
    for stale in store.base_dir().iterdir():
        if stale.is_dir() and stale != copy:
            shutil.rmtree(stale, ignore_errors=True)
    if old is not None:
        KeywordIndexCopy.objects.filter(copy_id=old.name).delete()
    log.info("keyword index %s built: %s chunks in %.1f s", copy.name, added, time.monotonic() - started)
    return SyncResult(chunks=added, rebuilt=True, cursor=cursor)
