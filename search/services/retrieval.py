"""Ranking chunks: the vector side (pgvector HNSW), the keyword side (BM25),
their fusion and the optional cross-encoder. Every ranking filters by the
user's access INSIDE the SQL that ranks (the allowed document ids are a
subquery of the candidate query), never by dropping rows afterwards.

Which of these a search runs is the mode registry's business
(search.services.modes); turning a ranking into a results page is
search.services.results.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections, transaction

from documents.models import Chunk
from search.models import EmbeddingSpace
from search.services import encoders, fusion, keyword_engine
from search.services.embedding import vector_literal
from search.services.filters import SearchScope
from search.services.relevance import above_keyword_floor, above_similarity_floor, hybrid_vector_side

Ranked = list[tuple[int, float]]
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


_PREFER_INDEX_SCAN = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
_RESET_SEARCH_SETTINGS = ("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort; "
                          "RESET hnsw.iterative_scan; RESET hnsw.ef_search")
HNSW_MAX_EF_SEARCH = 1000  # pgvector refuses more; iterative scan still returns more rows
# A space with windowed chunks (search.services.windows) has several rows per chunk:
# the scan reads this many times `limit` rows, grouped to the best window per chunk.
WINDOW_FETCH = 3


def has_windows(space: EmbeddingSpace) -> bool:
    """Whether some chunk has more than one vector row in the space (a partial index
    over windows after the first answers at once; it is empty in the usual case)."""
    with connection.cursor() as cur:
        cur.execute('SELECT EXISTS (SELECT 1 FROM search_chunkembedding WHERE space_id = %s AND "window" > 0)',
                    [space.pk])
        return bool(cur.fetchone()[0])


def vector_candidates(space: EmbeddingSpace, query: str, scope: SearchScope, limit: int,
                      query_vector: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(chunk_id, similarity) by cosine distance over the space's HNSW index.

    The scan tests the scope's prefilter on each vector row it reads (the access
    key copied onto the row: no join per row), with iterative scan so a selective
    filter still fills `limit`; the rows it returns are then checked against the
    access function's SQL. When the scan comes back short (a filter so selective
    that hnsw.max_scan_tuples ran out, or fewer visible rows than `limit`), the
    allowed rows are searched exactly instead.

    One result per chunk, with the similarity of its best window: in a space with
    windowed chunks the scan reads WINDOW_FETCH times as many rows and keeps each
    chunk's nearest."""
    qvec = vector_literal(encoders.encode_query(space, query) if query_vector is None else query_vector)
    dim, space_id = int(space.dimension), int(space.pk)
    fetch = int(limit) * (WINDOW_FETCH if has_windows(space) else 1)
    distance = f"ce.embedding::vector({dim}) <=> %s::vector({dim})"
    # Literals, not parameters, for the space id and dimension: the partial index
    # predicate and expression must be visible to the planner in every plan.
    approximate = f"""
        WITH nearest AS MATERIALIZED (
            SELECT ce.chunk_id, ce.document_id, {distance} AS distance
            FROM search_chunkembedding ce
            WHERE ce.space_id = {space_id} AND {scope.prefilter_sql}
            ORDER BY {distance}
            LIMIT {fetch}
        )
        SELECT n.chunk_id, min(n.distance) AS distance FROM nearest n
        WHERE n.document_id IN ({scope.allowed_sql})
        GROUP BY n.chunk_id ORDER BY distance, n.chunk_id LIMIT {int(limit)}"""
    # An aggregate the HNSW index cannot serve, so this plan is exact (every window).
    exact = f"""
        SELECT ce.chunk_id, min({distance}) AS distance FROM search_chunkembedding ce
        WHERE ce.space_id = {space_id} AND ce.document_id IN ({scope.allowed_sql})
        GROUP BY ce.chunk_id ORDER BY distance, ce.chunk_id LIMIT {int(limit)}"""
    ef_search = min(HNSW_MAX_EF_SEARCH, max(settings.SEARCH_EF_SEARCH, fetch))
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
            cur.execute(exact, [qvec, *scope.params])
            rows = cur.fetchall()
        return [(chunk_id, 1.0 - float(d)) for chunk_id, d in rows]


def vector_ranking(space: EmbeddingSpace, query: str, scope: SearchScope, depth: int,
                   query_vector: np.ndarray | None = None) -> Ranked:
    """Nearest chunks at or above the space's similarity floor (search.services.relevance)."""
    return above_similarity_floor(space, vector_candidates(space, query, scope, depth, query_vector))


def keyword_ranking(query: str, scope: SearchScope, depth: int, space: EmbeddingSpace | None = None) -> Ranked:
    """BM25 hits that cover enough of the query (the space's keyword floor)."""
    return above_keyword_floor(space, query, keyword_engine.keyword_search(query, scope, limit=depth))


def hybrid_ranking(space: EmbeddingSpace, query: str, scope: SearchScope, depth: int) -> Ranked:
    """Both sides fused with the space's weights; a chunk is a result when it is
    a keyword hit above the keyword floor, or a vector neighbour above the
    similarity floor — and, found by meaning alone, above the semantic-only floor."""
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
    keyword = keyword_ranking(query, scope, per_mode, space) if space.keyword_weight > 0 else []
    if vector_job:
        vector = vector_job.result()
    else:
        vector = vector_candidates(space, query, scope, per_mode, encoding.result()) if encoding else []
    # With the keyword side off (a space calibrated to vector alone), hybrid is vector search.
    vector = hybrid_vector_side(space, vector, keyword) if space.keyword_weight > 0 else \
        above_similarity_floor(space, vector)
    return fusion.fuse(vector, keyword, method=space.fusion,
                       vector_weight=space.vector_weight, keyword_weight=space.keyword_weight, rrf_k=space.rrf_k)


def reranked(query: str, ranked: Ranked, depth: int) -> Ranked:
    """The head of `ranked` re-scored by the cross-encoder (PORTAL_RERANK_MODEL)."""
    from search.services.rerank import rerank

    head = ranked[:depth]
    texts = dict(Chunk.objects.filter(pk__in=[c for c, _ in head]).values_list("pk", "text"))
    rescored = rerank(query, [(c, texts[c]) for c, _ in head if c in texts])
    return rescored + ranked[depth:]
