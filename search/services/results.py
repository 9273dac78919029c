"""One search, from the words a person typed to the page they see:
`run_search` is the single entry point of the portal page, the API and
evaluation.

query cleaned → scope (the access function + filters) → ranking by the mode
registry → grouped by document (best chunk first, a few more chunks of the
same document attached, so one document cannot flood a page) → the page's hits
with snippets → facet counts over all results → "did you mean" → logged.
"""
from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field

from django.db import connection

from documents.models import Chunk, Document
from documents.services.text import nfc
from search.models import EmbeddingSpace, SearchMode
from search.services import keyword_engine
from search.services.filters import SearchFilters, SearchScope, search_scope
from search.services.modes import ranked_chunks
from search.services.retrieval import Ranked
from search.services.snippets import Snippets
from search.services.spaces import space_for

PAGE_SIZE = 10
MAX_PAGE = 50
MAX_QUERY_CHARS = 500
MORE_PER_DOCUMENT = 2


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
    ranked: Ranked = field(default_factory=list)  # every ranked chunk, before grouping
    search_id: int | None = None  # the SearchLog row, when the search was logged


def clean_query(query: str) -> str:
    """What is searched: NFC, no invisible or control characters (a NUL byte
    cannot even be stored), single spaces, at most MAX_QUERY_CHARS."""
    text = "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in nfc(query or ""))
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def run_search(user, query: str, mode: str = SearchMode.HYBRID, filters: SearchFilters | None = None, *,
               k: int = 100, page: int = 1, page_size: int = PAGE_SIZE, client_id: str | None = None,
               space: EmbeddingSpace | None = None, scope: SearchScope | None = None, via: str | None = None,
               materialise: bool = True) -> SearchResult:
    """Search as `user` (None: anonymous) and, with `via` ("portal", "api"),
    log it. `scope` replaces the user's (evaluation of all documents);
    `materialise=False` stops after the ranking (evaluation reads `ranked`).
    `client_id` keeps an anonymous visitor in one A/B bucket."""
    started = time.perf_counter()
    query = clean_query(query)
    space = space or space_for(user, client_id)
    scope = scope or search_scope(user, filters)
    page = min(max(1, page), MAX_PAGE)  # ?page=10000 must not ask for 100,000 candidates
    ranked, notice = ranked_chunks(query, mode, scope, space, depth=max(k, page * page_size)) if query else ([], "")
    if not materialise:
        return SearchResult(query=query, mode=mode, space=space, hits=[], page=1, pages=1, total_documents=0,
                            suggestion=None, facets={}, latency_ms=(time.perf_counter() - started) * 1000,
                            notice=notice, ranked=ranked)
    groups = _group_by_document(ranked)
    pages = max(1, -(-len(groups) // page_size))
    page = min(page, pages)
    shown = groups[(page - 1) * page_size:page * page_size]
    hits = _materialise(shown, Snippets(query), offset=(page - 1) * page_size)
    suggestion = keyword_engine.suggest(query, scope) if query else None
    result = SearchResult(
        query=query, mode=mode, space=space, hits=hits, page=page, pages=pages, total_documents=len(groups),
        suggestion=suggestion, facets=result_facets([doc_id for doc_id, _ in groups]),
        latency_ms=(time.perf_counter() - started) * 1000, notice=notice, ranked=ranked)
    if via:
        from search.services.search_log import log_search

        result.search_id = log_search(result, user, filters, via=via, client_id=client_id).pk
    return result


def _group_by_document(ranked: Ranked) -> list[tuple[int, Ranked]]:
    doc_of = dict(Chunk.objects.filter(pk__in=[c for c, _ in ranked]).values_list("pk", "document_id"))
    groups: dict[int, Ranked] = {}
    for chunk_id, score in ranked:
        doc_id = doc_of.get(chunk_id)
        if doc_id is not None:
            groups.setdefault(doc_id, []).append((chunk_id, score))
    return list(groups.items())  # dicts keep first-seen order: best chunk's rank


def _materialise(groups, matcher: Snippets, offset: int) -> list[Hit]:
    chunk_ids = [c for _, chunks in groups for c, _ in chunks[:1 + MORE_PER_DOCUMENT]]
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=chunk_ids).select_related("document")}
    docs = {d.pk: d for d in Document.objects.filter(pk__in=[d for d, _ in groups]).defer("content")
            .prefetch_related("departments", "tags")}
    hits = []
    for doc_id, ranked in groups:
        best_id, score = ranked[0]
        if doc_id not in docs or best_id not in chunks:
            # Deleted or re-ingested since it was ranked (a migration's backfill, an
            # upload meanwhile): the page shows what is still there, not an error.
            continue
        more = [chunks[c] for c, _ in ranked[1:1 + MORE_PER_DOCUMENT] if c in chunks]
        hits.append(Hit(rank=offset + len(hits) + 1, score=round(float(score), 6), document=docs[doc_id],
                        chunk=chunks[best_id], snippet="", more_chunks=more))
    _add_snippets(hits, matcher)
    return hits


def _has_content(matcher: Snippets, chunk: Chunk) -> bool:
    return matcher.has_content(chunk.text, masthead=chunk.ordinal == 0)


def _add_snippets(hits: list[Hit], matcher: Snippets, lookahead: int = 3) -> None:
    """Each hit's snippet, from its best chunk — or, when that chunk is only a
    masthead or document-control lines (a title page matches the title's words),
    from the next of its ranked chunks with content, else the document's next
    passages in order."""
    fallback: dict[tuple[int, int], Chunk] = {}
    needs = [h for h in hits if not any(_has_content(matcher, c) for c in [h.chunk, *h.more_chunks])]
    if needs:
        wanted = {(h.document.pk, h.chunk.ordinal + n) for h in needs for n in range(1, lookahead + 1)}
        for c in Chunk.objects.filter(document_id__in={d for d, _ in wanted},
                                      ordinal__in={o for _, o in wanted}):
            fallback[(c.document_id, c.ordinal)] = c
    sources = []
    for hit in hits:
        following = [fallback.get((hit.document.pk, hit.chunk.ordinal + n)) for n in range(1, lookahead + 1)]
        sources.append(next((c for c in [hit.chunk, *hit.more_chunks, *following]
                             if c is not None and _has_content(matcher, c)), hit.chunk))
    matcher.learn_compounds(text for hit in hits for text in (hit.chunk.text, *(c.text for c in hit.more_chunks)))
    for hit, source in zip(hits, sources):
        hit.snippet = matcher.snippet(source.text, masthead=source.ordinal == 0)


# A document counts for its tags and their ancestors (a tag filter includes its
# descendants): the recursive part walks each document's tags up the taxonomy.
_FACETS_SQL = """
    WITH RECURSIVE tagged(document_id, tag_id) AS (
        SELECT dt.document_id, dt.tag_id FROM documents_document_tags dt WHERE dt.document_id = ANY(%(ids)s)
        UNION
        SELECT tagged.document_id, t.parent_id FROM tagged JOIN documents_tag t ON t.id = tagged.tag_id
         WHERE t.parent_id IS NOT NULL)
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
    SELECT 'tag', t.slug, count(DISTINCT tagged.document_id) FROM tagged
      JOIN documents_tag t ON t.id = tagged.tag_id GROUP BY 2"""


def result_facets(document_ids: list[int]) -> dict:
    """Counts over the result documents — all of which the user may see — in
    one round trip."""
    facets: dict[str, dict] = {"document_type": {}, "department": {}, "language": {}, "tag": {}}
    if document_ids:
        with connection.cursor() as cur:
            cur.execute(_FACETS_SQL, {"ids": list(document_ids)})
            for facet, value, count in cur.fetchall():
                facets[facet][value] = count
    return facets
