"""BM25 keyword search inside core PostgreSQL (no extensions).

Index: one posting per (term, chunk) with the BM25 term weight baked in
    weight = tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))
(STACK-NOTES "BM25 inside core PostgreSQL": 3.5–4× faster than joining chunk
statistics). Every token is indexed twice: as written ("nghỉ") and accent-folded
("~nghi", its own df), so a query typed without accents still finds the text
while exact matches rank higher. A reserved term '#len' holds one posting per
chunk whose weight is the chunk's length: the delete trigger of migration
search/0002 uses it, with the postings' term ids, to keep df, the chunk count
and the total length right whenever postings are deleted (re-indexing, or a
document's cascade delete).

Query: score = Σ over query terms of qw · idf(df) · weight, with Lucene's idf
log(1 + (N − df + 0.5)/(df + 0.5)); qw = EXACT_WEIGHT for the term as written
and FOLD_WEIGHT for its folded form (other weights when the whole query has no
diacritics). The access rule is applied inside the SQL, best result first, until
the limit is filled from allowed documents. Queries that would read many postings
are scored in two phases: the rarest tokens pick the candidates (a very common
term is read only as far as its TERM_CAP heaviest postings, through the impact
index), the other tokens are added for those candidates only.

Writers (index_document, remove_document, rebuild, the trigger) serialise on one
transaction-level advisory lock, so df updates never deadlock.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Callable

from django.db import connection, transaction
from django.utils import timezone

from documents.models import Chunk, DocumentStatus
from documents.services.chunking import embedding_text
from search.models import KeywordPosting, KeywordStats, KeywordTerm
from documents.services.text import fold as _fold
from documents.services.text import has_diacritics, tokenize
from documents.services.text import syllable_matches as words

__all__ = ["tokenize", "fold", "index_document", "remove_document", "rebuild", "keyword_search", "suggest"]

K1, B = 1.2, 0.75
LOCK_KEY = 7_236_501_100  # also in migration search/0002 (the delete trigger)
LEN_TERM = "#len"
FOLD_PREFIX = "~"
# Query-term weights, chosen on vicov19qa (bench/keyword_vicov19qa.py --grid), MRR@10:
# accented questions, fold weight 0 / 0.15 / 0.3 / 0.5 / 1.0 → .311 .311 .311 .308 .301
# (0.3: best Hit@1 while still finding folded-only matches); the same questions
# typed without accents, exact weight 0 / 0.3 / 0.5 / 1.0 → .261 .264 .253 .222.
EXACT_WEIGHT, FOLD_WEIGHT = 1.0, 0.3  # a query with diacritics: the exact form dominates
ACCENTLESS_EXACT_WEIGHT, ACCENTLESS_FOLD_WEIGHT = 0.3, 1.0  # typed without accents
# Exact scoring for short queries and for queries reading few postings; else two
# phases. Phase 1: the rarest tokens (df ≤ 5% of chunks, at most MAX_RARE_TOKENS,
# at most ~RARE_POSTINGS_BUDGET postings read, but at least the 2 rarest), each
# term read at most TERM_CAP postings deep, heaviest first (search_posting_impact),
# pick max(CANDIDATES, CANDIDATES_PER_RESULT · limit) candidates; phase 2 scores
# the other tokens, and the cut terms in full, for them. Measured in
# docs/benchmarks.md (BM25 at 1M chunks: p95 314 → 83 ms, MRR@10 as exact on the gate).
SHORT_QUERY_TOKENS, TWO_PHASE_POSTINGS = 3, 50_000
RARE_DF_SHARE, MIN_RARE_TOKENS, MAX_RARE_TOKENS = 0.05, 2, 12
RARE_POSTINGS_BUDGET, TERM_CAP = 50_000, 20_000
CANDIDATES, CANDIDATES_PER_RESULT = 500, 5
SUGGEST_CAP, SUGGEST_KEEP_RATIO = 2000, 3.0
REBUILD_BATCH = 2000

POSTINGS = KeywordPosting._meta.db_table
TERMS = KeywordTerm._meta.db_table
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@lru_cache(maxsize=500_000)
def fold(token: str) -> str:
    """Accent- and case-folded form: 'Nghỉ phép' → 'nghi phep', 'Đ' → 'd'."""
    return _fold(token)


def _analyse(text: str) -> tuple[Counter, int]:
    """Term frequencies (exact and '~'-folded) and the length in tokens."""
    tokens = tokenize(text)
    exact = Counter(tokens)
    counts = Counter(exact)
    for token, n in exact.items():
        counts[FOLD_PREFIX + fold(token)] += n
    return counts, len(tokens)


def _norm(length: int, avg: float) -> float:
    return K1 * (1 - B + B * length / avg) if avg > 0 else K1


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _folded_column(term: str) -> str | None:
    return None if term.startswith((FOLD_PREFIX, "#")) else fold(term)


def _lock(cur) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def _stats() -> KeywordStats:
    stats = KeywordStats.objects.order_by("pk").first()
    return stats or KeywordStats.objects.create()


# --- writing ----------------------------------------------------------------

def _upsert_terms(cur, df: Counter) -> dict[str, int]:
    terms = sorted(df)
    cur.execute(
        f"""INSERT INTO {TERMS} (term, df, folded)
            SELECT * FROM unnest(%s::text[], %s::int[], %s::text[]) ORDER BY 1
            ON CONFLICT (term) DO UPDATE SET df = {TERMS}.df + EXCLUDED.df
            RETURNING id, term""",
        [terms, [df[t] for t in terms], [_folded_column(t) for t in terms]])
    return {term: pk for pk, term in cur.fetchall()}


def index_document(document_id: int) -> int:
    """(Re)index a document's chunks: its old postings go first (idempotent).
    Returns the number of term postings written."""
    with transaction.atomic(), connection.cursor() as cur:
        _lock(cur)
        cur.execute(f"DELETE FROM {POSTINGS} WHERE document_id = %s", [document_id])  # trigger: df, stats
        analysed = [(pk, *_analyse(embedding_text(text, path))) for pk, text, path in
                    Chunk.objects.filter(document_id=document_id).values_list("id", "text", "heading_path")]
        if not analysed:
            return 0
        stats = _stats()
        stats.chunk_count += len(analysed)
        stats.total_length += sum(length for _, _, length in analysed)
        avg = stats.total_length / stats.chunk_count  # the current average: drifts from the baked one
        if not stats.avg_length_at_build:
            stats.avg_length_at_build = avg
        stats.save(update_fields=["chunk_count", "total_length", "avg_length_at_build"])

        df = Counter({LEN_TERM: len(analysed)})
        for _, counts, _ in analysed:
            df.update(counts.keys())
        ids = _upsert_terms(cur, df)
        term_ids, chunk_ids, weights = [], [], []
        for chunk_id, counts, length in analysed:
            norm = _norm(length, avg)
            for term, tf in counts.items():
                term_ids.append(ids[term]), chunk_ids.append(chunk_id), weights.append(tf * (K1 + 1) / (tf + norm))
            term_ids.append(ids[LEN_TERM]), chunk_ids.append(chunk_id), weights.append(float(length))
        cur.execute(
            f"""INSERT INTO {POSTINGS} (term_id, chunk_id, document_id, weight)
                SELECT t, c, %s, w FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) AS u(t, c, w)""",
            [document_id, term_ids, chunk_ids, weights])
        return len(term_ids) - len(analysed)


def remove_document(document_id: int) -> int:
    """Drop a document's postings (df and statistics follow, by the trigger);
    returns the number of rows deleted (with the '#len' rows)."""
    with transaction.atomic(), connection.cursor() as cur:
        _lock(cur)
        cur.execute(f"DELETE FROM {POSTINGS} WHERE document_id = %s", [document_id])
        return cur.rowcount


def _ready_chunks(progress: Progress | None, phase: str, total: int):
    """(chunk id, document id, index text) of chunks of ready documents, in
    keyset batches (no server-side cursor: COPY needs the connection between batches)."""
    last, done = 0, 0
    while True:
        batch = list(Chunk.objects.filter(document__status=DocumentStatus.READY, id__gt=last).order_by("id")
                     .values_list("id", "document_id", "text", "heading_path")[:REBUILD_BATCH])
        if not batch:
            return
        yield [(pk, doc, embedding_text(text, path)) for pk, doc, text, path in batch]
        last, done = batch[-1][0], done + len(batch)
        if progress:
            progress(phase, done, total)


def _detach_postings_constraints(cur) -> list[str]:
    """Drop the postings' unique/foreign-key constraints and secondary indexes for
    a bulk load; return the statements that re-create them."""
    cur.execute("""SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC""", [POSTINGS])
    constraints = cur.fetchall()
    cur.execute("""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
                   WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""", [POSTINGS])
    indexes = cur.fetchall()
    for name, _ in constraints:
        cur.execute(f'ALTER TABLE {POSTINGS} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f"DROP INDEX {name}")
    return ([f'ALTER TABLE {POSTINGS} ADD CONSTRAINT "{name}" {definition}' for name, definition in constraints]
            + [definition for _, definition in indexes])


def rebuild(progress: Progress | None = None) -> int:
    """Rebuild every posting of the ready documents with the current average
    length. Pass 1 measures lengths, pass 2 streams postings with COPY into the
    table stripped of its indexes, which are rebuilt at the end. Searches wait
    for it (TRUNCATE). Returns the number of term postings written."""
    total = Chunk.objects.filter(document__status=DocumentStatus.READY).count()
    written = 0
    with transaction.atomic(), connection.cursor() as cur:
        _lock(cur)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks: TRUNCATE/ALTER refuse them
        cur.execute(f"TRUNCATE {POSTINGS}, {TERMS} RESTART IDENTITY")
        lengths: dict[int, int] = {}
        for batch in _ready_chunks(progress, "lengths", total):
            lengths.update((pk, len(tokenize(text))) for pk, _, text in batch)
        avg = sum(lengths.values()) / len(lengths) if lengths else 0.0
        recreate = _detach_postings_constraints(cur)
        ids: dict[str, int] = {LEN_TERM: 1}
        df: Counter = Counter()
        for batch in _ready_chunks(progress, "postings", total):
            lines = []
            for chunk_id, doc_id, text in batch:
                if chunk_id not in lengths:  # appeared after pass 1: indexed by its own task
                    continue
                counts, length = _analyse(text)
                norm = _norm(length, avg)
                for term, tf in counts.items():
                    term_id = ids.setdefault(term, len(ids) + 1)
                    df[term_id] += 1
                    lines.append(f"{term_id}\t{chunk_id}\t{doc_id}\t{tf * (K1 + 1) / (tf + norm)!r}\n")
                lines.append(f"1\t{chunk_id}\t{doc_id}\t{length}\n")
                written += len(counts)
            with cur.copy(f"COPY {POSTINGS} (term_id, chunk_id, document_id, weight) FROM STDIN") as copy:
                copy.write("".join(lines))
        df[1] = len(lengths)
        with cur.copy(f"COPY {TERMS} (id, term, df, folded) FROM STDIN") as copy:
            for term, term_id in ids.items():
                copy.write_row((term_id, term, df[term_id], _folded_column(term)))
        cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [TERMS, len(ids) + 1])
        for statement in recreate:
            cur.execute(statement)
        KeywordStats.objects.all().delete()
        KeywordStats.objects.create(chunk_count=len(lengths), total_length=sum(lengths.values()),
                                    avg_length_at_build=avg, rebuilt_at=timezone.now())
    if not connection.in_atomic_block:  # index-only scans need the visibility map
        with connection.cursor() as cur:
            cur.execute(f"VACUUM (ANALYZE) {POSTINGS}, {TERMS}")
    return written


# --- reading ----------------------------------------------------------------

def _query_terms(query: str) -> dict[str, Counter]:
    """Per distinct query token, its terms (as written, '~'-folded) and their
    query weights; a repeated token counts again, as in BM25Okapi."""
    tokens = tokenize(query)
    accentless = not any(has_diacritics(t) for t in tokens)
    exact_w, fold_w = ((ACCENTLESS_EXACT_WEIGHT, ACCENTLESS_FOLD_WEIGHT) if accentless
                       else (EXACT_WEIGHT, FOLD_WEIGHT))
    groups: dict[str, Counter] = {}
    for token in tokens:
        group = groups.setdefault(token, Counter())
        group[token] += exact_w
        group[FOLD_PREFIX + fold(token)] += fold_w
    return groups


# Scored first, best first, then checked against the allowed documents one
# result at a time until the LIMIT is filled: a nested loop over the documents'
# primary key instead of hashing every visible document before ranking (at 1M
# chunks, 100k documents: 40 ms of a 112 ms query). Same rows as filtering first.
_SCORE = """SELECT s.chunk_id, s.score, s.partial FROM (
        SELECT p.chunk_id, min(p.document_id) AS document_id, SUM(q.w * p.weight) AS score,
               SUM(q.w * p.weight) FILTER (WHERE q.reads IS NOT NULL) AS partial
        FROM unnest(%s::bigint[], %s::float8[], %s::bigint[]) AS q(term_id, w, reads)
        CROSS JOIN LATERAL (SELECT x.chunk_id, x.document_id, x.weight FROM {postings} x
                            WHERE x.term_id = q.term_id ORDER BY x.weight DESC LIMIT q.reads) p
        GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id OFFSET 0) s
    WHERE s.document_id IN ({allowed})
    ORDER BY s.score DESC, s.chunk_id LIMIT %s"""

# Phase 2: the other tokens' scores for the candidates, and the capped terms'
# scores again in full (phase 1 saw only their heaviest postings: `partial`).
_TWO_PHASE = """WITH candidates AS MATERIALIZED ({score})
    SELECT c.chunk_id, c.score - COALESCE(c.partial, 0) + COALESCE(common.s, 0) AS total FROM candidates c
    LEFT JOIN LATERAL (SELECT SUM(q.w * p.weight) AS s FROM unnest(%s::bigint[], %s::float8[]) AS q(term_id, w)
                       JOIN {postings} p ON p.term_id = q.term_id AND p.chunk_id = c.chunk_id) common ON true
    ORDER BY total DESC, c.chunk_id LIMIT %s"""


def keyword_search(query: str, allowed_documents_sql: str, params, limit: int = 100, *,
                   exact: bool | None = None) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) best first, over chunks of the documents selected by
    `allowed_documents_sql` (`SELECT id FROM documents_document WHERE …`, with
    `params`), filtered inside the query. `exact`: None = exact scoring for
    queries of ≤ SHORT_QUERY_TOKENS distinct tokens or reading ≤ TWO_PHASE_POSTINGS
    postings, else two-phase; True/False force either."""
    groups = _query_terms(query)
    if not groups or limit <= 0:
        return []
    with connection.cursor() as cur:
        cur.execute(f"""SELECT t.term, t.id, t.df, (SELECT s.chunk_count FROM {KeywordStats._meta.db_table} s
                        ORDER BY s.id LIMIT 1) FROM {TERMS} t WHERE t.term = ANY(%s) AND t.df > 0""",
                    [sorted({term for group in groups.values() for term in group})])
        found = {term: (pk, df, n) for term, pk, df, n in cur.fetchall()}
        if not found:
            return []
        n = max(max(n or 0, df) for _, df, n in found.values())
        # per token: (df of its dominant term, [(term id, query weight·idf, df)])
        tokens = []
        for group in groups.values():
            present = [(found[term], w) for term, w in group.items() if term in found and w > 0]
            if present:
                dominant_df = max(present, key=lambda p: (p[1], p[0][1]))[0][1]
                tokens.append((dominant_df, [(pk, w * _idf(df, n), df) for (pk, df, _), w in present]))
        if not tokens:
            return []
        tokens.sort(key=lambda t: t[0])
        if exact is None:
            exact = (len(groups) <= SHORT_QUERY_TOKENS
                     or sum(df for t in tokens for _, _, df in t[1]) <= TWO_PHASE_POSTINGS)
        if exact:
            rare, common = [(pk, w, None) for t in tokens for pk, w, _ in t[1]], []  # None: read all
        else:
            # Phase 1: the rarest tokens, each term read at most TERM_CAP postings
            # (its heaviest: the impact index), within the budget; phase 2 adds the
            # other tokens for the candidates.
            chosen, reading = 0, 0
            for i, t in enumerate(tokens):
                cost = sum(min(df, TERM_CAP) for _, _, df in t[1])
                if i >= MIN_RARE_TOKENS and (t[0] > RARE_DF_SHARE * n or i >= MAX_RARE_TOKENS
                                             or reading + cost > RARE_POSTINGS_BUDGET):
                    break
                chosen, reading = i + 1, reading + cost
            rare = [(pk, w, TERM_CAP if df > TERM_CAP else None) for t in tokens[:chosen] for pk, w, df in t[1]]
            common = ([(pk, w) for t in tokens[chosen:] for pk, w, _ in t[1]]
                      + [(pk, w) for pk, w, cap in rare if cap is not None])
        score = _SCORE.format(postings=POSTINGS, allowed=allowed_documents_sql)
        phase1 = [[t[0] for t in rare], [t[1] for t in rare], [t[2] for t in rare]]
        if not common:
            cur.execute(f"SELECT chunk_id, score FROM ({score}) ranked ORDER BY score DESC, chunk_id",
                        [*phase1, *params, limit])
        else:
            cur.execute(_TWO_PHASE.format(score=score, postings=POSTINGS),
                        [*phase1, *params, max(CANDIDATES, CANDIDATES_PER_RESULT * limit),
                         [t[0] for t in common], [t[1] for t in common], limit])
        return [(chunk_id, float(s)) for chunk_id, s in cur.fetchall()]


def _allowed_counts(cur, term_ids: list[int], allowed_sql: str, params) -> dict[int, int]:
    """Chunks of allowed documents containing each term (capped at SUGGEST_CAP)."""
    cur.execute(f"""SELECT c.id, (SELECT count(*) FROM (SELECT 1 FROM {POSTINGS} p WHERE p.term_id = c.id
                        AND p.document_id IN ({allowed_sql}) LIMIT %s) s)
                    FROM unnest(%s::bigint[]) AS c(id)""", [*params, SUGGEST_CAP, term_ids])
    return dict(cur.fetchall())


def _pair_counts(cur, pairs: list[tuple[int, int]], allowed_sql: str, params) -> dict[tuple[int, int], int]:
    if not pairs:
        return {}
    cur.execute(f"""SELECT x.a, x.b, (SELECT count(*) FROM (SELECT 1 FROM {POSTINGS} p1
                        JOIN {POSTINGS} p2 ON p2.term_id = x.b AND p2.chunk_id = p1.chunk_id
                        WHERE p1.term_id = x.a AND p1.document_id IN ({allowed_sql}) LIMIT %s) s)
                    FROM unnest(%s::bigint[], %s::bigint[]) AS x(a, b)""",
                [*params, SUGGEST_CAP, [a for a, _ in pairs], [b for _, b in pairs]])
    return {(a, b): c for a, b, c in cur.fetchall()}


def suggestion_tokens(query: str):
    """(word matches, lower-case words) of a query a suggestion may rewrite; None
    when it has no words or already has diacritics."""
    matches = words(query)
    tokens = [m.group().lower() for m in matches]
    if not tokens or any(has_diacritics(t) for t in tokens):
        return None
    return matches, tokens


def suggest(query: str, allowed_documents_sql: str, params) -> str | None:
    """"Did you mean": for a query typed without diacritics, the query with each
    word replaced by its accented form that is much more frequent — counted only
    over postings of the allowed documents — choosing among a word's forms the
    one that co-occurs best with its neighbours' forms. None when nothing better."""
    found = suggestion_tokens(query)
    if found is None:
        return None
    matches, tokens = found
    with connection.cursor() as cur:
        cur.execute(f"SELECT id, term, folded FROM {TERMS} WHERE folded = ANY(%s) AND df > 0",
                    [sorted(set(tokens))])
        forms: dict[str, list[tuple[int, str]]] = {}
        for pk, term, folded in cur.fetchall():
            forms.setdefault(folded, []).append((pk, term))
        counts = _allowed_counts(cur, [pk for fs in forms.values() for pk, _ in fs], allowed_documents_sql, params)
        options = suggestion_options(tokens, forms, counts)
        pairs = {(a[1], b[1]) for left, right in zip(options, options[1:]) for a in left for b in right}
        together = _pair_counts(cur, sorted(pairs), allowed_documents_sql, params)
    return choose_suggestion(query, matches, tokens, forms, counts, options, together)


def suggestion_options(tokens: list[str], forms: dict, counts: dict) -> list[list[tuple[int, object, str]]]:
    """Per token: its top 3 forms seen in allowed documents, [(count, key, term)];
    `forms`: folded word → [(key, term)], `counts`: key → allowed chunks holding it
    (a key is whatever names a term to its engine: a term id, or the term)."""
    options = []
    for token in tokens:
        seen = sorted(((counts.get(key, 0), key, term) for key, term in forms.get(token, [])), reverse=True)
        options.append([o for o in seen if o[0] > 0][:3])
    return options


def choose_suggestion(query: str, matches, tokens: list[str], forms: dict, counts: dict, options: list,
                      together: dict) -> str | None:
    """The suggestion from the counts (both engines): the best sequence of forms by
    co-occurrence with the previous word (`together`: (key, key) → chunks holding
    both), then frequency; a word keeps its own spelling unless a form is
    SUGGEST_KEEP_RATIO times more frequent. None when nothing changes."""
    best: list[tuple[float, list]] = [(0.0, [])]
    for opts in options:
        if not opts:
            score, path = max(best, key=lambda s: s[0])
            best = [(score, path + [None])]
            continue
        step = []
        for o in opts:
            scored = [(score + (math.log1p(together.get((path[-1][1], o[1]), 0)) if path and path[-1] else 0)
                       + 0.01 * math.log1p(o[0]), path + [o]) for score, path in best]
            step.append(max(scored, key=lambda s: s[0]))
        best = step
    path = max(best, key=lambda s: s[0])[1]
    replaced, changed = [], False
    for token, choice in zip(tokens, path):
        plain = next((counts.get(key, 0) for key, term in forms.get(token, []) if term == token), 0)
        if choice is None or choice[2] == token or plain * SUGGEST_KEEP_RATIO >= choice[0]:
            replaced.append(token)
        else:
            replaced.append(choice[2])
            changed = True
    if not changed:
        return None
    out, pos = [], 0
    for m, new in zip(matches, replaced):
        old = m.group()
        new = new.upper() if old.isupper() and len(old) > 1 else new.capitalize() if old[:1].isupper() else new
        out += [query[pos:m.start()], new]
        pos = m.end()
    return "".join(out) + query[pos:]
