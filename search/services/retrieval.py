"""Search: `search(user, query, mode, filters, k, page)`.

Every mode filters by the user's access INSIDE the SQL that ranks (the allowed
document ids are a subquery of the candidate query), never by dropping rows
afterwards. Modes:

- vector: pgvector HNSW over the user's space, iterative scan so a selective
  filter still fills k rows;
- keyword: BM25 in PostgreSQL over exact and accent-folded syllables;
- hybrid (default): weighted fusion of both, weights stored on the space;
- rerank: hybrid candidates re-scored by a cross-encoder (when configured).

Results are grouped by document (best chunk first, a few more chunks of the
same document attached) so one document cannot flood a page.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections, transaction
from django.utils.translation import gettext

from documents.models import Chunk, Document
from search.models import EmbeddingSpace, SearchMode
from search.services import encoders, fusion, keyword_index
from search.services.embedding import vector_literal
from search.services.filters import SearchFilters, SearchScope, search_scope
from search.services.snippets import make_snippet
from search.services.spaces import space_for

PAGE_SIZE = 10
MAX_PAGE = 50
MORE_PER_DOCUMENT = 2
_search_threads: dict[int, ThreadPoolExecutor] = {}
_helper_connections: set = set()
_pool_lock = threading.Lock()


def _search_thread() -> ThreadPoolExecutor:
    """Helper threads for the vector side of hybrid search, per process (a pool
    inherited through fork has no thread, hence per pid). Each keeps its own
    database connection, reused like the request thread's (CONN_MAX_AGE)."""
    pid = os.getpid()
    with _pool_lock:
        return _search_threads.get(pid) or _new_pool(pid)


def _new_pool(pid: int) -> ThreadPoolExecutor:
    _search_threads.clear()
    _helper_connections.clear()
    # A thread starts only when the others are busy: one per concurrent request
    # (a sync gunicorn worker: one), each with its own connection.
    _search_threads[pid] = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vector-search")
    return _search_threads[pid]


def release_search_thread() -> None:
    """Close the helper threads' database connections and stop them (tests)."""
    pool = _search_threads.pop(os.getpid(), None)
    if pool:
        pool.shutdown(wait=True)
    while _helper_connections:  # the threads are gone: close their sockets directly
        wrapper = _helper_connections.pop()
        if wrapper.connection is not None:
            wrapper.connection.close()


def _vector_on_own_connection(space, query, scope, limit):
    close_old_connections()  # drop this thread's connection if it broke or outlived CONN_MAX_AGE
    _helper_connections.add(connections[DEFAULT_DB_ALIAS])
    return vector_candidates(space, query, scope, limit)


class SearchUnavailable(Exception):
    """Vector search was asked for but no embedding space is ready."""


@dataclass
class Hit:
    rank: int
    score: float
    document: Document
    chunk: Chunk
    snippet: str
    more_chunks: list[Chunk] = field(default_factory=list)


@dataclass
class SearchResult:
    query: str
    mode: str
    space: EmbeddingSpace | None
    hits: list[Hit]
    page: int
    pages: int
    total_documents: int
    suggestion: str | None
    facets: dict
    latency_ms: float
    notice: str = ""


_PREFER_INDEX_SCAN = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
_RESET_SEARCH_SETTINGS = ("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort; "
                          "RESET hnsw.iterative_scan; RESET hnsw.ef_search")
HNSW_MAX_EF_SEARCH = 1000  # pgvector refuses more; iterative scan still returns more rows


def vector_candidates(space: EmbeddingSpace, query: str, scope: SearchScope, limit: int,
                      query_vector: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(chunk_id, similarity) by cosine distance over the space's HNSW index.

    The scan tests the scope's prefilter on each vector row it reads (the access
    key copied onto the row: no join per row), with iterative scan so a selective
    filter still fills `limit`; the rows it returns are then checked against the
    access function's SQL. When the scan comes back short (a filter so selective
    that hnsw.max_scan_tuples ran out, or fewer visible rows than `limit`), the
    allowed rows are searched exactly instead."""
    qvec = vector_literal(encoders.encode_query(space, query) if query_vector is None else query_vector)
    dim, space_id = int(space.dimension), int(space.pk)
    distance = f"ce.embedding::vector({dim}) <=> %s::vector({dim})"
    # Literals, not parameters, for the space id and dimension: the partial index
    # predicate and expression must be visible to the planner in every plan.
    approximate = f"""
        WITH nearest AS MATERIALIZED (
            SELECT ce.chunk_id, ce.document_id, {distance} AS distance
            FROM search_chunkembedding ce
            WHERE ce.space_id = {space_id} AND {scope.prefilter_sql}
            ORDER BY {distance}
            LIMIT {int(limit)}
        )
        SELECT n.chunk_id, n.distance FROM nearest n
        WHERE n.document_id IN ({scope.allowed_sql}) ORDER BY n.distance"""
    # "+ 0": an ORDER BY the HNSW index cannot serve, so this plan is exact.
    exact = f"""
        SELECT ce.chunk_id, {distance} AS distance FROM search_chunkembedding ce
        WHERE ce.space_id = {space_id} AND ce.document_id IN ({scope.allowed_sql})
        ORDER BY ({distance}) + 0 LIMIT {int(limit)}"""
    ef_search = min(HNSW_MAX_EF_SEARCH, max(settings.SEARCH_EF_SEARCH, int(limit)))
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cur.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        # The HNSW scan, always: with a filter it believed selective the planner
        # chose a full scan + sort (90 ms at 100k rows, growing with N) — the exact
        # fallback below is the answer for filters that really are that selective.
        cur.execute(_PREFER_INDEX_SCAN)
        cur.execute(approximate, [qvec, *scope.prefilter_params, qvec, *scope.params])
        rows = cur.fetchall()
        # SET LOCAL in a savepoint lasts until the OUTER transaction ends: undo it
        # for the caller's next queries.
        cur.execute(_RESET_SEARCH_SETTINGS)
        if len(rows) < limit:
            cur.execute(exact, [qvec, *scope.params, qvec])
            rows = cur.fetchall()
        return [(chunk_id, 1.0 - float(d)) for chunk_id, d in rows]


def _rerank(query: str, ranked: list[tuple[int, float]], depth: int) -> list[tuple[int, float]]:
    from search.services.rerank import rerank

    head = ranked[:depth]
    texts = dict(Chunk.objects.filter(pk__in=[c for c, _ in head]).values_list("pk", "text"))
    rescored = rerank(query, [(c, texts[c]) for c, _ in head if c in texts])
    return rescored + ranked[depth:]


def ranked_chunks(query: str, mode: str, scope: SearchScope, space: EmbeddingSpace | None,
                  depth: int) -> tuple[list[tuple[int, float]], str]:
    """The fused candidate list (chunk_id, score), best first, and a notice.
    `scope` says what the caller may return (filters.search_scope)."""
    allowed_sql, params = scope.allowed_sql, scope.params
    notice = ""
    if mode in (SearchMode.VECTOR, SearchMode.HYBRID, SearchMode.RERANK) and space is None:
        if mode == SearchMode.VECTOR:
            raise SearchUnavailable(gettext("No embedding space is active yet."))
        mode, notice = SearchMode.KEYWORD, "no-space"
    if mode == SearchMode.KEYWORD:
        return keyword_index.keyword_search(query, allowed_sql, params, limit=depth), notice
    if mode == SearchMode.VECTOR:
        return vector_candidates(space, query, scope, depth), notice
    per_mode = max(depth, space.candidate_depth)
    # The vector side (encoding: CPU; then its HNSW query) runs on the search
    # thread while this thread waits for PostgreSQL's BM25: they overlap instead
    # of adding up. Inside a transaction (tests, callers' atomic blocks) another
    # connection could not see its rows, so only the encoding moves.
    vector_job = encoding = None
    if space.vector_weight > 0:
        if connection.in_atomic_block:
            encoding = _search_thread().submit(encoders.encode_query, space, query)
        else:
            vector_job = _search_thread().submit(_vector_on_own_connection, space, query, scope, per_mode)
    keyword = (keyword_index.keyword_search(query, allowed_sql, params, limit=per_mode)
               if space.keyword_weight > 0 else [])
    if vector_job:
        vector = vector_job.result()
    else:
        vector = vector_candidates(space, query, scope, per_mode, encoding.result()) if encoding else []
    fused = fusion.fuse(vector, keyword, method=space.fusion, vector_weight=space.vector_weight,
                        keyword_weight=space.keyword_weight, rrf_k=space.rrf_k)
    if mode == SearchMode.RERANK:
        if settings.RERANK_MODEL:
            fused = _rerank(query, fused, settings.RERANK_DEPTH)
        else:
            notice = "no-reranker"
    return fused, notice


def search(user, query: str, mode: str = SearchMode.HYBRID, filters: SearchFilters | None = None,
           k: int = 100, page: int = 1, page_size: int = PAGE_SIZE, session_key: str | None = None,
           space: EmbeddingSpace | None = None) -> SearchResult:
    started = time.perf_counter()
    query = " ".join(query.split())[:500]
    space = space or space_for(user, session_key)
    scope = search_scope(user, filters)
    allowed = (scope.allowed_sql, scope.params)
    page = min(max(1, page), MAX_PAGE)  # ?page=10000 must not ask for 100,000 candidates
    ranked, notice = ranked_chunks(query, mode, scope, space, depth=max(k, page * page_size))
    groups = _group_by_document(ranked)
    pages = max(1, -(-len(groups) // page_size))
    page = min(max(1, page), pages)
    shown = groups[(page - 1) * page_size:page * page_size]
    hits = _materialise(shown, query, offset=(page - 1) * page_size)
    suggestion = keyword_index.suggest(query, *allowed) if query else None
    return SearchResult(
        query=query, mode=mode, space=space, hits=hits, page=page, pages=pages, total_documents=len(groups),
        suggestion=suggestion, facets=_facets([doc_id for doc_id, _ in groups]),
        latency_ms=(time.perf_counter() - started) * 1000, notice=notice)


def _group_by_document(ranked: list[tuple[int, float]]) -> list[tuple[int, list[tuple[int, float]]]]:
    doc_of = dict(Chunk.objects.filter(pk__in=[c for c, _ in ranked]).values_list("pk", "document_id"))
    groups: dict[int, list[tuple[int, float]]] = {}
    for chunk_id, score in ranked:
        doc_id = doc_of.get(chunk_id)
        if doc_id is not None:
            groups.setdefault(doc_id, []).append((chunk_id, score))
    return list(groups.items())  # dicts keep first-seen order: best chunk's rank


def _materialise(groups, query: str, offset: int) -> list[Hit]:
    chunk_ids = [c for _, chunks in groups for c, _ in chunks[:1 + MORE_PER_DOCUMENT]]
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=chunk_ids).select_related("document")}
    docs = {d.pk: d for d in Document.objects.filter(pk__in=[d for d, _ in groups]).defer("content")
            .prefetch_related("departments", "tags")}
    terms = keyword_index.highlight_terms(query)
    hits = []
    for i, (doc_id, ranked) in enumerate(groups):
        best_id, score = ranked[0]
        best = chunks[best_id]
        more = [chunks[c] for c, _ in ranked[1:1 + MORE_PER_DOCUMENT] if c in chunks]
        hits.append(Hit(rank=offset + i + 1, score=round(float(score), 6), document=docs[doc_id], chunk=best,
                        snippet=make_snippet(best.text, terms), more_chunks=more))
    return hits


_FACETS_SQL = """
    SELECT 'document_type', d.document_type, count(*) FROM documents_document d
     WHERE d.id = ANY(%(ids)s) GROUP BY 2
    UNION ALL
    SELECT 'language', d.language, count(*) FROM documents_document d
     WHERE d.id = ANY(%(ids)s) GROUP BY 2
    UNION ALL
    SELECT 'department', dep.code, count(DISTINCT dd.document_id) FROM documents_document_departments dd
      JOIN documents_department dep ON dep.id = dd.department_id
     WHERE dd.document_id = ANY(%(ids)s) GROUP BY 2
    UNION ALL
    SELECT 'tag', t.slug, count(DISTINCT dt.document_id) FROM documents_document_tags dt
      JOIN documents_tag t ON t.id = dt.tag_id
     WHERE dt.document_id = ANY(%(ids)s) GROUP BY 2"""


def _facets(document_ids: list[int]) -> dict:
    """Counts over the result documents only — all of which the user may see —
    in one round trip."""
    facets: dict[str, dict] = {"document_type": {}, "department": {}, "language": {}, "tag": {}}
    if document_ids:
        with connection.cursor() as cur:
            cur.execute(_FACETS_SQL, {"ids": list(document_ids)})
            for facet, value, count in cur.fetchall():
                facets[facet][value] = count
    return facets
