"""Fusing the vector and keyword rankings with per-space weights.

A weight of 0 turns a side off, so calibration can always fall back to the
best single mode: hybrid is then never worse than it on the calibration set.
"""
from __future__ import annotations

Ranked = list[tuple[int, float]]


def rrf(vector: Ranked, keyword: Ranked, *, vector_weight: float, keyword_weight: float, k: int) -> Ranked:
    scores: dict[int, float] = {}
    for weight, ranked in ((vector_weight, vector), (keyword_weight, keyword)):
        if weight <= 0:
            continue
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda cs: (-cs[1], cs[0]))


def _minmax(ranked: Ranked) -> dict[int, float]:
    if not ranked:
        return {}
    values = [s for _, s in ranked]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return {c: (s - lo) / span for c, s in ranked}


def score_fusion(vector: Ranked, keyword: Ranked, *, vector_weight: float, keyword_weight: float) -> Ranked:
    """Min-max normalised scores, weighted and summed (a missing side counts 0)."""
    scores: dict[int, float] = {}
    for weight, ranked in ((vector_weight, vector), (keyword_weight, keyword)):
        if weight <= 0:
            continue
        for chunk_id, s in _minmax(ranked).items():
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * s
    return sorted(scores.items(), key=lambda cs: (-cs[1], cs[0]))


def fuse(vector: Ranked, keyword: Ranked, *, method: str, vector_weight: float, keyword_weight: float,
         rrf_k: int = 60) -> Ranked:
    if method == "score":
        return score_fusion(vector, keyword, vector_weight=vector_weight, keyword_weight=keyword_weight)
    return rrf(vector, keyword, vector_weight=vector_weight, keyword_weight=keyword_weight, k=rrf_k)
