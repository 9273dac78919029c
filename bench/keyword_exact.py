"""Exact BM25 over bench/search_data.distinct_texts, in numpy (scipy sparse),
from the token statistics: the reference that bench/keyword_engines.py measures
both keyword engines' top 10 against.

Scoring is the portal's BM25 (k1 1.2, b 0.75, idf log(1 + (N − df + 0.5)/(df + 0.5)))
over the two fields both engines index — the chunk's syllables as written and
accent-folded (documents.services.text.tokenize, fold) — with the query-term
weights both engines use (search.services.keyword_engine.analysis.query_terms:
exact 1.0 / folded 0.3, swapped for a query without diacritics). Statistics
(N, df, average length) over the whole corpus; ranking over the chunks visible
in a scenario. The tantivy engine's title field is left out: the bench titles
("Tài liệu thử nghiệm <id>") are in every document, so their idf is ~0.

A chunk is its sentences joined by spaces, so its tokens are its sentences'
tokens in order: each pool sentence is tokenized once (checked on a sample
against tokenizing the joined text).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import sparse

K1, B = 1.2, 0.75


class ExactBM25:
    def __init__(self, sentences: list[str], compositions: list[tuple[int, ...]]):
        from documents.services.text import fold, tokenize

        self.vocab: dict[tuple[str, str], int] = {}
        per_sentence = []
        for s in sentences:
            ids = []
            for token in tokenize(s):
                ids.append(self.vocab.setdefault(("text", token), len(self.vocab)))
                ids.append(self.vocab.setdefault(("folded", fold(token)), len(self.vocab)))
            per_sentence.append(np.array(ids, dtype=np.int32))
        self.n = len(compositions)
        lengths_by_sentence = np.array([len(a) // 2 for a in per_sentence], dtype=np.int64)
        rows_per_chunk = np.array([2 * lengths_by_sentence[list(c)].sum() for c in compositions], dtype=np.int64)
        self.lengths = (rows_per_chunk // 2).astype(np.float64)
        cols = np.concatenate([per_sentence[i] for c in compositions for i in c])
        rows = np.repeat(np.arange(self.n, dtype=np.int32), rows_per_chunk)
        tf = sparse.csc_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                               shape=(self.n, len(self.vocab)))
        tf.sum_duplicates()
        self.tf = tf
        self.df = np.diff(tf.indptr)
        self.avg = float(self.lengths.mean())
        self._per_sentence, self._sentences = per_sentence, sentences

    def check(self, texts: list[str], sample: int = 200) -> None:
        """The tokens of a joined text are its sentences' tokens (else the reference is wrong)."""
        from documents.services.text import tokenize

        step = max(1, len(texts) // sample)
        for i in range(0, len(texts), step):
            expected = len(tokenize(texts[i]))
            assert expected == self.lengths[i], f"chunk {i}: {expected} tokens, the reference counted {self.lengths[i]}"

    def scores(self, query: str) -> np.ndarray:
        """Exact BM25 of every chunk (index = chunk id − 1) for the query."""
        from search.services.keyword_engine.analysis import query_terms

        out = np.zeros(self.n, dtype=np.float64)
        norm = K1 * (1 - B + B * self.lengths / self.avg)
        for field, term, weight in query_terms(query):
            col = self.vocab.get((field, term))
            if col is None:  # the title field (left out), or a term no chunk holds
                continue
            lo, hi = self.tf.indptr[col], self.tf.indptr[col + 1]
            docs, tf = self.tf.indices[lo:hi], self.tf.data[lo:hi].astype(np.float64)
            df = hi - lo
            idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
            out[docs] += weight * idf * tf * (K1 + 1) / (tf + norm[docs])
        return out


def tie_aware_overlap(found: list[int], exact: np.ndarray, mask: np.ndarray | None, k: int = 10) -> float | None:
    """Share of `found[:k]` (chunk ids) whose exact score reaches the k-th best exact
    score among the visible chunks (a result tied with the k-th counts); None when
    no visible chunk scores above 0."""
    visible = exact if mask is None else np.where(mask, exact, 0.0)
    positive = int((visible > 0).sum())
    if positive == 0:
        return None
    want = min(k, positive)
    kth = np.partition(visible, -want)[-want]
    tolerance = 1e-9 * max(1.0, kth)
    rows = [c - 1 for c in found[:k] if 0 < c <= len(exact)]
    return sum(1 for r in rows if visible[r] >= kth - tolerance) / want
