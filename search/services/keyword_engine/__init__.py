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
