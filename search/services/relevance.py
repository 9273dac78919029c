"""When is a ranked chunk a result at all? The floors that let a search say
"nothing found".

- **Vector side:** every passage has a nearest neighbour, however unrelated;
  a neighbour less similar than the space's `similarity_floor` is not a result.
- **Found by meaning alone:** a small model's cosines put a passage on the same
  topic (another procedure, another policy) as close to a query as its answer,
  so in hybrid search a vector neighbour with no keyword evidence (not a keyword
  hit above the keyword floor) must also reach the `semantic_only_floor` — set
  above what the nearest wrong documents reach on the evaluation set — unless
  the query has a clear winner (its best neighbour more similar than its 10th
  by the `vector_gap_floor`, which off-topic probes do not reach).
- **Keyword side:** BM25 ranks any chunk sharing one syllable with the query,
  and Vietnamese syllables are shared by many words ("trình" in "quy trình"
  and "giải trình"). A keyword hit must match query syllables carrying at
  least the space's `keyword_floor` share of the query's weight (each distinct
  syllable weighted by its rarity, idf; a syllable found nowhere in the corpus
  weighs the most), counted phrase by phrase (search.services.matching): a
  passage with "quy trình" and a stray "nghỉ" and "phép" does not answer
  "quy trình nghỉ phép".

Both floors are calibrated per space on an evaluation set
(search.evaluation.floors); unset, a side keeps everything it ranks.
"""
from __future__ import annotations

import math

from django.db import connection

from documents.models import Chunk
from documents.services.chunking import embedding_text
from documents.services.text import fold, syllable_matches
from search.models import EmbeddingSpace
from search.services import keyword_engine
from search.services.embedding import vector_literal
from search.services.matching import QueryMatcher, exact_syllables

Ranked = list[tuple[int, float]]
GAP_RANK = 10  # a clear winner is measured against the query's 10th neighbour
FOLD_PREFIX = "~"  # the keyword index's folded terms (search.services.keyword_index)


def above_similarity_floor(space: EmbeddingSpace | None, ranked: Ranked) -> Ranked:
    floor = space.similarity_floor if space is not None else None
    return ranked if floor is None else [(c, s) for c, s in ranked if s >= floor]


def hybrid_vector_side(space: EmbeddingSpace | None, vector: Ranked, keyword_hits: Ranked) -> Ranked:
    """The vector side as hybrid search admits it (module docstring): above the
    similarity floor, and above the semantic-only floor unless the chunk is also
    one of `keyword_hits` (the keyword side, already floored) or the query has a
    clear winner. `vector`: the unfloored neighbours, best first."""
    if space is None:
        return vector
    floor = semantic_only_bar(vector, space.semantic_only_floor, space.vector_gap_floor)
    return admitted_by_meaning(above_similarity_floor(space, vector), keyword_hits, floor)


def vector_gap(vector: Ranked) -> float:
    """How far the query's best neighbour stands out: its similarity minus its
    GAP_RANK-th's (`vector` best first)."""
    if not vector:
        return 0.0
    return vector[0][1] - vector[min(GAP_RANK, len(vector)) - 1][1]


def semantic_only_bar(vector: Ranked, semantic_only_floor: float | None, vector_gap_floor: float | None):
    """The semantic-only floor as it applies to this query. A query about something
    the corpus holds has a clear winner: its best neighbour stands out from the
    next ones, where an off-topic query's neighbours sit in a flat band. Such a
    query keeps its neighbours above the similarity floor, ranked by fusion like
    any result; without a clear winner the floor applies passage by passage
    (docs/decisions.md, "A clear winner lifts the semantic-only floor")."""
    if semantic_only_floor is None or vector_gap_floor is None:
        return semantic_only_floor
    return None if vector_gap(vector) >= vector_gap_floor else semantic_only_floor


def admitted_by_meaning(vector: Ranked, keyword_hits: Ranked, semantic_only_floor: float | None) -> Ranked:
    """Vector neighbours kept by the semantic-only floor, passage by passage
    (search and the calibration share this one rule). Applying it per query
    instead (keep every neighbour once the query has any keyword evidence)
    was measured and refused: docs/decisions.md, "A third floor for meaning
    alone"."""
    if semantic_only_floor is None:
        return vector
    evidence = {c for c, _ in keyword_hits}
    return [(c, s) for c, s in vector if c in evidence or s >= semantic_only_floor]


def query_weights(query: str) -> dict[str, float]:
    """Distinct query syllables → idf; in a query typed without any diacritics a
    syllable is weighed by its folded form (it matches every accented form)."""
    tokens = list(dict.fromkeys(m.group().lower() for m in syllable_matches(query)))
    if not tokens:
        return {}
    terms = {t: (t if exact else FOLD_PREFIX + fold(t)) for t, exact in zip(tokens, exact_syllables(tokens))}
    df, chunks = keyword_engine.document_frequencies(set(terms.values()))  # the engine's own statistics
    n = max([chunks, *df.values(), 1])
    return {t: math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5)) for t, term in terms.items()}


def keyword_coverage(query: str, chunk_ids: list[int], weights: dict[str, float] | None = None) -> dict[int, float]:
    """chunk id → share of the query's weight that the chunk matches phrase by
    phrase (search.services.matching), reading what the keyword index reads
    (heading line and body) and the document's title. `weights`: the query's
    syllables weighted otherwise than by `query_weights` (answers weigh
    question words nothing: answers.services.support)."""
    weights, matcher = query_weights(query) if weights is None else weights, QueryMatcher(query)
    rows = Chunk.objects.filter(pk__in=chunk_ids).values_list("pk", "text", "heading_path", "document__title")
    found = {pk: matcher.matches(f"{title}\n{embedding_text(text, path)}") for pk, text, path, title in rows}
    compounds = set().union(*(m.phrase_positions for m in found.values())) if found else set()
    return {pk: matcher.coverage(m, weights, compounds) for pk, m in found.items()}


def above_keyword_floor(space: EmbeddingSpace | None, query: str, ranked: Ranked) -> Ranked:
    floor = space.keyword_floor if space is not None else None
    if floor is None or not ranked:
        return ranked
    covered = keyword_coverage(query, [c for c, _ in ranked])
    return [(c, s) for c, s in ranked if covered.get(c, 0.0) >= floor]


def chunk_similarities(space: EmbeddingSpace, query: str, chunk_ids: list[int]) -> dict[int, float]:
    """chunk id → cosine similarity of the query to the chunk in `space` (its best
    window's, as search ranks it: search.services.retrieval.vector_candidates);
    a chunk without a vector in the space is missing."""
    from search.services import encoders

    if not chunk_ids:
        return {}
    dim = int(space.dimension)
    qvec = vector_literal(encoders.encode_query(space, query))
    with connection.cursor() as cur:
        cur.execute(f"SELECT chunk_id, max(1 - (embedding::vector({dim}) <=> %s::vector({dim}))) "
                    f"FROM search_chunkembedding WHERE space_id = %s AND chunk_id = ANY(%s) GROUP BY chunk_id",
                    [qvec, space.pk, list(chunk_ids)])
        return {chunk_id: float(s) for chunk_id, s in cur.fetchall()}
