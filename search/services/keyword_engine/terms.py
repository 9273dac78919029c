"""Word statistics from the tantivy index: the document frequencies that weigh
a query's words for the relevance floor, and the counts behind "did you mean"
— so neither needs the PostgreSQL postings tables.

- `document_frequencies`: a term in the postings tables' spelling ("nghỉ" as
  written, "~nghi" folded) → the number of indexed chunks holding it
  (`Searcher.doc_freq` on the `text` or `folded` field), and the chunk count.
  tantivy counts a deleted chunk until its segment is merged: a word weight may
  lag a deletion a little, as the PostgreSQL df never does.
- `suggest`: a query typed without diacritics → its accented forms, counted
  over the chunks the scope allows (the key filter inside the index's counts),
  chosen by the same rule as the PostgreSQL engine
  (keyword_index.choose_suggestion). A form is suggested only if the access
  SQL confirms a chunk the user may read holds it: a stale index entry can hide
  a suggestion, never reveal a word from a hidden document.
"""
from __future__ import annotations

from functools import lru_cache

import tantivy
from tantivy import Occur, Query

from search.services import keyword_index
from search.services.keyword_index import fold  # cached per syllable
from search.services.filters import SearchScope
from search.services.keyword_engine import store
from search.services.keyword_engine.searching import key_filter_query, recheck

CONFIRM_HITS = 20  # chunks of a suggested form read back and checked against the access SQL


def document_frequencies(index: tantivy.Index, terms: set[str]) -> tuple[dict[str, int], int]:
    searcher = index.searcher()
    df = {}
    for term in terms:
        if term.startswith(keyword_index.FOLD_PREFIX):
            n = searcher.doc_freq("folded", term[len(keyword_index.FOLD_PREFIX):])
        else:
            n = searcher.doc_freq("text", term)
        if n:
            df[term] = int(n)
    return df, int(searcher.num_docs)


VIETNAMESE_ACCENTED = ("àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ")


@lru_cache(maxsize=64)
def _variants(letter: str) -> tuple[str, ...]:
    """The Vietnamese letters that fold to `letter` ("a" → a à á ả ã ạ ă ằ …; "n" → n)."""
    return (letter, *(c for c in VIETNAMESE_ACCENTED if fold(c) == letter))


def written_forms(searcher: tantivy.Searcher, folded: str) -> list[str]:
    """Every term of the `text` field whose folded form is `folded`: the term
    dictionary walked from the prefixes up to the first letter that has
    accented variants ("nghi" → "nghi", "nghì", "nghí", "nghỉ", "nghĩ", "nghị")."""
    cut = next((i for i, ch in enumerate(folded) if len(_variants(ch)) > 1), None)
    prefixes = [folded] if cut is None else [folded[:cut] + v for v in _variants(folded[cut])]
    forms = []
    for prefix in prefixes:
        for term, _ in searcher.terms_with_prefix("text", prefix):
            if fold(term) == folded:
                forms.append(term)
    return forms


def _count(searcher: tantivy.Searcher, terms: list[str], restriction: Query | None) -> int:
    parts = [(Occur.Must, Query.term_query(store.SCHEMA, "text", t)) for t in terms]
    if restriction is not None:
        parts.append((Occur.Must, restriction))
    return int(searcher.search(Query.boolean_query(parts), limit=1, count=True).count)


def _readable(searcher: tantivy.Searcher, term: str, restriction: Query | None, scope: SearchScope) -> bool:
    parts = [(Occur.Must, Query.term_query(store.SCHEMA, "text", term))]
    if restriction is not None:
        parts.append((Occur.Must, Query.const_score_query(restriction, 0.0)))
    hits = searcher.search(Query.boolean_query(parts), limit=CONFIRM_HITS, count=False).hits
    chunk_ids = searcher.fast_field_values("chunk_id", [address for _, address in hits]) if hits else []
    return bool(recheck([(int(c), 0.0) for c in chunk_ids], scope))


def suggest(index: tantivy.Index, query: str, scope: SearchScope) -> str | None:
    found = keyword_index.suggestion_tokens(query)
    if found is None:
        return None
    matches, tokens = found
    searcher = index.searcher()
    restriction = key_filter_query(scope.key_filter)
    forms = {token: [(term, term) for term in written_forms(searcher, token)] for token in set(tokens)}
    counts = {term: _count(searcher, [term], restriction) for fs in forms.values() for term, _ in fs}
    options = keyword_index.suggestion_options(tokens, forms, counts)
    pairs = {(a[1], b[1]) for left, right in zip(options, options[1:]) for a in left for b in right}
    together = {pair: _count(searcher, list(pair), restriction) for pair in pairs}
    suggestion = keyword_index.choose_suggestion(query, matches, tokens, forms, counts, options, together)
    if suggestion is None:
        return None
    changed = {w for w in (m.group().lower() for m in keyword_index.words(suggestion)) if w not in tokens}
    if not all(_readable(searcher, term, restriction, scope) for term in changed):
        return None
    return suggestion
