"""What the tantivy index reads from a chunk and from a query: the portal's own
syllable tokenizer (documents.services.text: NFC, invisible characters dropped,
lower case, compounds like "13/2023/nđ-cp" kept whole beside their parts), so
the index, the PostgreSQL index, snippets and the relevance floors all cut text
the same way. The tokens reach tantivy joined by spaces and split there on
whitespace only: tantivy's own tokenizers would split an NFD "nghỉ" at its
combining marks and know no compounds.

Two fields per text: `text`, the syllables as written ("nghỉ"), and `folded`,
the same syllables accent-folded ("nghi"), so "nghi phep" finds "nghỉ phép".
A query weighs the two as the PostgreSQL engine does (exact dominates when the
query has diacritics; folded dominates when it has none).

ANALYZER_VERSION names the index folder: change anything here that changes
what is indexed, bump it, and the new version is built beside the old one.
"""
from __future__ import annotations

from documents.services.text import fold, tokenize
from search.services.keyword_index import FOLD_PREFIX, _query_terms

ANALYZER_VERSION = "vi-syllables-1"
TITLE_WEIGHT = 0.2  # a query syllable in the document's title (folded), beside the chunk's text


def index_fields(text: str) -> tuple[str, str]:
    """(exact, folded): the text's tokens joined by spaces, as written and folded."""
    tokens = tokenize(text)
    return " ".join(tokens), " ".join(fold(t) for t in tokens)


def folded_tokens(text: str) -> str:
    return " ".join(fold(t) for t in tokenize(text))


def query_terms(query: str) -> list[tuple[str, str, float]]:
    """(field, term, weight) for every query token, in the PostgreSQL engine's
    weights (search.services.keyword_index: a repeated token counts again)."""
    out = []
    for group in _query_terms(query).values():
        for term, weight in group.items():
            if weight <= 0:
                continue
            if term.startswith(FOLD_PREFIX):
                out.append(("folded", term[len(FOLD_PREFIX):], weight))
                out.append(("title", term[len(FOLD_PREFIX):], weight * TITLE_WEIGHT))
            else:
                out.append(("text", term, weight))
    return out
