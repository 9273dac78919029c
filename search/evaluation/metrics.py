"""Ranking metrics, per query and averaged. Conventions (those of
sentence-transformers' InformationRetrievalEvaluator and trec_eval, checked in
tests/test_evaluation.py):

- MRR@k: 1/rank of the first relevant result within the top k, else 0;
- Hit@k: 1 if any relevant result is within the top k;
- Recall@k: relevant results in the top k / all relevant;
- nDCG@k: linear gains (grade / log2(rank + 1)), ideal = the grades sorted;
- MAP@k: Σ precision@rank over relevant ranks ≤ k, / min(k, |relevant|).

`ranking` is a list of ids best first (already cut to what the system
returned); `relevant` maps id → grade (> 0).
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

CUTOFFS_HIT = (1, 5, 10)
CUTOFFS_RECALL = (10, 50, 100)


def first_relevant_rank(ranking: Sequence[Hashable], relevant: dict) -> int | None:
    for i, x in enumerate(ranking, start=1):
        if relevant.get(x, 0) > 0:
            return i
    return None


def reciprocal_rank(ranking, relevant, k: int = 10) -> float:
    rank = first_relevant_rank(ranking[:k], relevant)
    return 1.0 / rank if rank else 0.0


def hit(ranking, relevant, k: int) -> float:
    return 1.0 if first_relevant_rank(ranking[:k], relevant) else 0.0


def recall(ranking, relevant, k: int) -> float:
    wanted = sum(1 for g in relevant.values() if g > 0)
    return sum(1 for x in ranking[:k] if relevant.get(x, 0) > 0) / wanted if wanted else 0.0


def ndcg(ranking, relevant, k: int = 10) -> float:
    dcg = sum(relevant.get(x, 0) / math.log2(i + 1) for i, x in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def average_precision(ranking, relevant, k: int = 10) -> float:
    wanted = sum(1 for g in relevant.values() if g > 0)
    if not wanted:
        return 0.0
    found, total = 0, 0.0
    for i, x in enumerate(ranking[:k], start=1):
        if relevant.get(x, 0) > 0:
            found += 1
            total += found / i
    return total / min(k, wanted)


def query_metrics(ranking: Sequence[Hashable], relevant: dict, depth: int = 100) -> dict[str, float]:
    """Every metric of one query."""
    ranking = list(ranking)
    out = {"MRR@10": reciprocal_rank(ranking, relevant, 10)}
    out.update({f"Hit@{k}": hit(ranking, relevant, k) for k in CUTOFFS_HIT})
    out.update({f"Recall@{k}": recall(ranking, relevant, k) for k in CUTOFFS_RECALL if k <= max(depth, 10)})
    out["nDCG@10"] = ndcg(ranking, relevant, 10)
    out["MAP@10"] = average_precision(ranking, relevant, 10)
    return out


def mean_metrics(per_query: list[dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {}
    return {key: float(np.mean([q[key] for q in per_query])) for key in per_query[0]}


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0
