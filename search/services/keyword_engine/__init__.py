"""Keyword search through the engine PORTAL_KEYWORD_ENGINE names: `postgres`
(the postings tables, search.services.keyword_index) or `tantivy` (this
package: an index on the machine's disk fed from PostgreSQL's change log).
Callers ask `keyword_search` and get (chunk id, score) best first, filtered by
the scope inside the engine's query and checked against the access SQL."""
from __future__ import annotations

import logging

from django.conf import settings

from search.services import keyword_index
from search.services.filters import SearchScope

log = logging.getLogger(__name__)


def keyword_search(query: str, scope: SearchScope, limit: int = 100) -> list[tuple[int, float]]:
    if settings.KEYWORD_ENGINE == "tantivy":
        from search.services.keyword_engine import searching

        ranked = searching.keyword_search(query, scope, limit)
        if ranked is not None:
            return ranked
        log.warning("no tantivy keyword index on this machine yet: PostgreSQL answers "
                    "(manage.py keyword_index rebuild)")
    return keyword_index.keyword_search(query, scope.allowed_sql, scope.params, limit=limit)


def _tantivy_copy():
    """This machine's tantivy copy when the engine is tantivy and one is built; else None."""
    if settings.KEYWORD_ENGINE != "tantivy":
        return None
    from search.services.keyword_engine import store

    return store.reader()


def suggest(query: str, scope: SearchScope) -> str | None:
    """"Did you mean" (keyword_index.suggest's rule) from the engine's own counts."""
    index = _tantivy_copy()
    if index is not None and scope.key_filter is not None:
        from search.services.keyword_engine import terms

        return terms.suggest(index, query, scope)
    return keyword_index.suggest(query, scope.allowed_sql, scope.params)


def document_frequencies(terms: set[str]) -> tuple[dict[str, int], int]:
    """term ("nghỉ" as written, "~nghi" folded) → chunks holding it (absent: none),
    and the number of chunks: the word weights of the relevance floor."""
    index = _tantivy_copy()
    if index is not None:
        from search.services.keyword_engine import terms as tantivy_terms

        return tantivy_terms.document_frequencies(index, terms)
    from search.models import KeywordStats, KeywordTerm

    df = dict(KeywordTerm.objects.filter(term__in=terms, df__gt=0).values_list("term", "df"))
    stats = KeywordStats.objects.order_by("pk").first()
    return df, stats.chunk_count if stats else 0


def rebuild() -> None:
    """Rebuild the keyword index from PostgreSQL: the postings tables (still
    written with either engine), and this machine's tantivy copy with the
    tantivy engine (evaluation corpora in a scratch database, benchmarks)."""
    keyword_index.rebuild()
    if settings.KEYWORD_ENGINE == "tantivy":
        from search.services.keyword_engine import writer

        writer.rebuild()
