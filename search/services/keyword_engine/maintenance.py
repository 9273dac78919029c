"""Reports on the tantivy index and housekeeping of the change log: `status`
(each copy's lag: log entries it has not applied, and the age of the oldest),
`verify` (this machine's copy against PostgreSQL: counts and a sample) and
`prune` (log entries every live copy has applied)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from tantivy import Query

from search.keyword_models import KeywordChange, KeywordIndexCopy
from search.services.keyword_engine import rows, store

COPY_RETENTION = timedelta(days=7)  # a copy silent this long is forgotten: it rebuilds when it returns


@dataclass
class Lag:
    copy_id: str
    host: str
    entries: int
    oldest_seconds: float | None  # age of the oldest entry not applied; None: none
    applied_at: object = None
    chunks: int = 0
    local: bool = False  # this machine's current copy


def lag_of(copy: KeywordIndexCopy) -> Lag:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), min(created_at) FROM search_keywordchange WHERE (xid, id) > (%s, %s)",
                    [copy.cursor_xid, copy.cursor_id])
        entries, oldest = cur.fetchone()
    age = (timezone.now() - oldest).total_seconds() if oldest else None
    current = store.current_copy()
    return Lag(copy.copy_id, copy.host, entries, age, copy.applied_at, copy.chunks,
               local=current is not None and current.name == copy.copy_id)


def status() -> list[Lag]:
    return [lag_of(copy) for copy in KeywordIndexCopy.objects.all()]


@dataclass
class Verification:
    indexed: int = 0
    expected: int = 0
    lag: int = 0
    sampled: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(sample: int = 200) -> Verification:
    """Count and sample this machine's copy against PostgreSQL. Differences while
    the copy lags behind the log are expected; `lag` says how many entries."""
    out = Verification()
    copy = store.current_copy()
    if copy is None:
        out.problems.append("no copy of the index on this machine")
        return out
    known = KeywordIndexCopy.objects.filter(copy_id=copy.name).first()
    out.lag = lag_of(known).entries if known else -1
    index = store.open_index(copy)
    searcher = index.searcher()
    out.indexed, out.expected = searcher.num_docs, rows.count_indexable()
    if out.indexed != out.expected:
        out.problems.append(f"{out.indexed} chunks in the index, {out.expected} in PostgreSQL")
    with connection.cursor() as cur:
        cur.execute("SELECT c.id, d.id, d.access_level FROM documents_chunk c JOIN documents_document d "
                    "ON d.id = c.document_id WHERE d.status = 'ready' ORDER BY random() LIMIT %s", [sample])
        expected = cur.fetchall()
    for chunk_id, doc_id, level in expected:
        hits = searcher.search(Query.term_query(store.SCHEMA, "chunk_id", chunk_id), limit=2).hits
        if len(hits) != 1:
            out.problems.append(f"chunk {chunk_id}: {len(hits)} entries in the index")
            continue
        address = [hits[0][1]]
        got = (searcher.fast_field_values("document_id", address)[0], searcher.fast_field_values("access_level", address)[0])
        if got != (doc_id, level):
            out.problems.append(f"chunk {chunk_id}: index has document/level {got}, PostgreSQL {(doc_id, level)}")
    out.sampled = len(expected)
    # and the other way: a sample of what the index holds must exist and be ready
    if out.indexed:
        picks = random.sample(range(out.indexed), min(sample, out.indexed))
        hits = searcher.search(Query.all_query(), limit=out.indexed, count=False).hits if out.indexed <= 100_000 else []
        addresses = [hits[i][1] for i in picks if i < len(hits)]
        indexed_ids = [int(c) for c in searcher.fast_field_values("chunk_id", addresses)]
        with connection.cursor() as cur:
            cur.execute("SELECT c.id FROM documents_chunk c JOIN documents_document d ON d.id = c.document_id "
                        "WHERE c.id = ANY(%s) AND d.status = 'ready'", [indexed_ids])
            present = {row[0] for row in cur.fetchall()}
        out.problems += [f"chunk {c}: in the index, not a ready chunk in PostgreSQL"
                         for c in indexed_ids if c not in present]
    return out


def prune() -> int:
    """Delete log entries that every live copy has applied; forget copies silent
    for COPY_RETENTION (they rebuild when they come back). With no copy at all,
    every entry of an ended transaction goes (a first build reads PostgreSQL)."""
    KeywordIndexCopy.objects.filter(applied_at__lt=timezone.now() - COPY_RETENTION).delete()
    copies = list(KeywordIndexCopy.objects.values_list("cursor_xid", "cursor_id"))
    with connection.cursor() as cur:
        if copies:
            xid, pk = min(copies)
            cur.execute("DELETE FROM search_keywordchange WHERE (xid, id) <= (%s, %s)", [xid, pk])
        else:
            cur.execute("DELETE FROM search_keywordchange "
                        "WHERE xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return cur.rowcount


__all__ = ["Lag", "Verification", "status", "verify", "prune", "KeywordChange"]
