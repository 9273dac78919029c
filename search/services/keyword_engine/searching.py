"""BM25 in tantivy, with the access rule and the facets inside the query.

The query is `Must(the query's terms, any of them) AND Must(filter)`, the filter
scoring nothing: tantivy ranks only chunks that pass it (block-max WAND skips
the others), so a user who may see 10% of the corpus still gets a full page.
The ids it returns are then checked against the access function's SQL, as
vector search does: an index entry that is stale (an access change, a deleted
chunk, before the writer has applied them) can only hide a result, never show one.
"""
from __future__ import annotations

from django.db import connection

import tantivy
from tantivy import FieldType, Occur, Query

from documents.models import AccessLevel
from search.services.filters import KeyFilter, SearchScope
from search.services.keyword_engine import store
from search.services.keyword_engine.analysis import query_terms

Ranked = list[tuple[int, float]]


def _any_of(field: str, values) -> Query:
    return Query.term_set_query(store.SCHEMA, field, list(values))


def key_filter_query(key: KeyFilter) -> Query | None:
    """The scope as a tantivy query over the access key and facet fields; None: no restriction."""
    s, parts = store.SCHEMA, []
    access = key.access
    if access is not None:
        allowed = [_any_of("access_level", access.levels)]
        if access.owner_id is not None:
            allowed.append(Query.term_query(s, "owner_id", int(access.owner_id)))
        if access.restricted_departments:
            allowed.append(Query.boolean_query([
                (Occur.Must, Query.term_query(s, "access_level", int(AccessLevel.RESTRICTED))),
                (Occur.Must, _any_of("department_ids", access.restricted_departments))]))
        if access.granted:
            allowed.append(_any_of("document_id", access.granted))
        parts.append(Query.boolean_query([(Occur.Should, q) for q in allowed]))
    if key.document_types:
        parts.append(_any_of("document_type", key.document_types))
    if key.department_ids is not None:
        parts.append(_any_of("department_ids", key.department_ids or [-1]))
    if key.tag_ids is not None:
        parts.append(_any_of("tag_ids", key.tag_ids or [-1]))
    if key.languages:
        parts.append(_any_of("language", key.languages))
    if key.date_from or key.date_to:
        parts.append(Query.range_query(s, "effective_day", FieldType.Integer,
                                       key.date_from.toordinal() if key.date_from else -(2 ** 62),
                                       key.date_to.toordinal() if key.date_to else 2 ** 62))
    if not parts:
        return None
    return Query.boolean_query([(Occur.Must, q) for q in parts])


def bm25_query(query: str, key: KeyFilter) -> Query | None:
    terms = query_terms(query)
    if not terms:
        return None
    text = Query.boolean_query([(Occur.Should, Query.boost_query(Query.term_query(store.SCHEMA, field, term), w))
                                for field, term, w in terms])
    restriction = key_filter_query(key)
    if restriction is None:
        return text
    return Query.boolean_query([(Occur.Must, text), (Occur.Must, Query.const_score_query(restriction, 0.0))])


def ranked_in_index(index: tantivy.Index, query: str, key: KeyFilter, limit: int) -> Ranked:
    """(chunk id, score) best first, from the index alone (no SQL check)."""
    q = bm25_query(query, key)
    if q is None or limit <= 0:
        return []
    searcher = index.searcher()
    hits = searcher.search(q, limit=limit, count=False).hits
    if not hits:
        return []
    chunk_ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
    ranked = [(int(c), float(score)) for (score, _), c in zip(hits, chunk_ids)]
    ranked.sort(key=lambda r: (-r[1], r[0]))
    return ranked


def recheck(ranked: Ranked, scope: SearchScope) -> Ranked:
    """Keep the chunks that exist and whose document the scope's SQL allows (the
    access function's query), in the same order."""
    if not ranked:
        return []
    with connection.cursor() as cur:
        cur.execute(f"SELECT c.id FROM documents_chunk c WHERE c.id = ANY(%s) AND c.document_id IN ({scope.allowed_sql})",
                    [[c for c, _ in ranked], *scope.params])
        allowed = {row[0] for row in cur.fetchall()}
    return [(c, s) for c, s in ranked if c in allowed]


def keyword_search(query: str, scope: SearchScope, limit: int) -> Ranked | None:
    """BM25 over this machine's copy, checked against the SQL; None when there is
    no copy yet (or the scope carries no key filter): the caller asks PostgreSQL."""
    if scope.key_filter is None:
        return None
    index = store.reader()
    if index is None:
        return None
    return recheck(ranked_in_index(index, query, scope.key_filter, limit), scope)
