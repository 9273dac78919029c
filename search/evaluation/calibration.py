"""Calibrating hybrid fusion per space on an evaluation set.

Each query's vector and keyword candidate lists are retrieved ONCE, at the
deepest candidate depth of the grid, and fused in Python with
`search.services.fusion.fuse` for every grid point (fusion method, vector share
of the weights — 0 and 1 included, so keyword-only and vector-only are always
candidates —, RRF k, candidate depth). The best point is therefore never below
the best single mode on the set. As in `ranked_chunks`, a search of depth d
takes max(d, candidate_depth) candidates per mode.
"""
from __future__ import annotations

import time
from typing import Callable

from django.utils import timezone

from search.evaluation import metrics as m
from search.evaluation.runner import ChunkInfo, evaluator, ranking_for, relevance
from search.models import EmbeddingSpace
from search.services import fusion, keyword_index
from search.services.filters import search_scope

VECTOR_SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RRF_KS = (10, 30, 60, 100)
DEPTHS = (100, 200)
METHODS = ("rrf", "score")
OBJECTIVE = "MRR@10"


class CalibrationError(Exception):
    pass


def collect(evaluation_set, space: EmbeddingSpace, *, user=None, depth: int = 200,
            progress: Callable[[int, int], None] | None = None) -> list[tuple]:
    """[(item, vector list, keyword list, vector seconds, keyword seconds)] for the usable items."""
    from search.services.retrieval import vector_candidates

    scope = search_scope(evaluator(user))
    items = [i for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]
    out = []
    for n, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        vector = vector_candidates(space, item.query, scope, depth)
        t1 = time.perf_counter()
        keyword = keyword_index.keyword_search(item.query, scope.allowed_sql, scope.params, limit=depth)
        out.append((item, vector, keyword, t1 - t0, time.perf_counter() - t1))
        if progress:
            progress(n, len(items))
    return out


def grid_points(methods=METHODS, shares=VECTOR_SHARES, rrf_ks=RRF_KS, depths=DEPTHS):
    for depth in depths:
        for method in methods:
            for k in (rrf_ks if method == "rrf" else (60,)):
                for share in shares:
                    yield {"fusion": method, "rrf_k": k, "candidate_depth": depth, "vector_share": share,
                           "vector_weight": round(share, 4), "keyword_weight": round(1 - share, 4)}


def score_point(point: dict, collected: list[tuple], info: ChunkInfo, eval_depth: int) -> dict:
    per_mode = max(eval_depth, point["candidate_depth"])
    rows = []
    for item, vector, keyword, *_ in collected:
        fused = fusion.fuse(vector[:per_mode], keyword[:per_mode], method=point["fusion"],
                            vector_weight=point["vector_weight"], keyword_weight=point["keyword_weight"],
                            rrf_k=point["rrf_k"])[:eval_depth]
        ranking = ranking_for(item, fused, info)
        rel = relevance(item)
        rows.append({"MRR@10": m.reciprocal_rank(ranking, rel, 10), "nDCG@10": m.ndcg(ranking, rel, 10),
                     "Hit@1": m.hit(ranking, rel, 1), "Hit@10": m.hit(ranking, rel, 10)})
    return {**point, **{k: round(v, 6) for k, v in m.mean_metrics(rows).items()}}


def calibrate(evaluation_set, space: EmbeddingSpace, *, user=None, metric: str = OBJECTIVE, eval_depth: int = 100,
              methods=METHODS, shares=VECTOR_SHARES, rrf_ks=RRF_KS, depths=DEPTHS, save: bool = True,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Search the grid, store the best fusion settings on the space (unless
    save=False) and return the calibration record (with the whole curve)."""
    shares = sorted(set(shares) | {0.0, 1.0})
    started = time.perf_counter()
    collected = collect(evaluation_set, space, user=user, depth=max(max(depths), eval_depth), progress=progress)
    if not collected:
        raise CalibrationError(f"evaluation set {evaluation_set.name} has no usable items")
    retrieval_s = time.perf_counter() - started
    info = ChunkInfo()
    if any(not item.relevant_chunks for item, *_ in collected):
        info.load({c for _, v, k, *_ in collected for c, _ in v + k})
    curve = [score_point(p, collected, info, eval_depth) for p in grid_points(methods, shares, rrf_ks, depths)]

    def key(p):
        return (p[metric], p["nDCG@10"], p["Hit@1"])

    best = max(curve, key=key)  # max keeps the first of equals: the grid's order (simplest first)
    vector_only = max((p for p in curve if p["vector_share"] == 1.0), key=key)
    keyword_only = max((p for p in curve if p["vector_share"] == 0.0), key=key)
    best_single = max(vector_only[metric], keyword_only[metric])
    if best[metric] + 1e-12 < best_single:  # by construction impossible: the single modes are grid points
        raise CalibrationError(f"hybrid {best[metric]:.4f} below the best single mode {best_single:.4f}")
    record = {
        "set": evaluation_set.name, "metric": metric, "queries": len(collected), "eval_depth": eval_depth,
        "calibrated_at": timezone.now().isoformat(), "retrieval_s": round(retrieval_s, 2),
        "grid_s": round(time.perf_counter() - started - retrieval_s, 2),
        "best": {**best, "score": best[metric]},
        "vector_only": {**vector_only, "score": vector_only[metric]},
        "keyword_only": {**keyword_only, "score": keyword_only[metric]},
        "gain_over_best_single": round(best[metric] - best_single, 6),
        "curve": curve,
    }
    if save:
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            fusion=best["fusion"], vector_weight=best["vector_weight"], keyword_weight=best["keyword_weight"],
            rrf_k=best["rrf_k"], candidate_depth=best["candidate_depth"], calibration=record)
        space.refresh_from_db()
    return record


def curve_table(record: dict) -> str:
    """The curve as text: one row per vector share, one column per setting."""
    metric = record["metric"]
    columns: dict[str, dict[float, float]] = {}
    for p in record["curve"]:
        label = (f"rrf k{p['rrf_k']}" if p["fusion"] == "rrf" else "score") + f" d{p['candidate_depth']}"
        columns.setdefault(label, {})[p["vector_share"]] = p[metric]
    shares = sorted({p["vector_share"] for p in record["curve"]})
    head = f"{'vector share':>12} " + " ".join(f"{c:>13}" for c in columns)
    lines = [f"{metric} by vector share (0 = keyword only, 1 = vector only)", head]
    for s in shares:
        lines.append(f"{s:>12.2f} " + " ".join(f"{columns[c].get(s, float('nan')):>13.4f}" for c in columns))
    b = record["best"]
    lines.append(f"best: {b['fusion']} vector {b['vector_weight']} keyword {b['keyword_weight']} k {b['rrf_k']} "
                 f"depth {b['candidate_depth']}: {metric} {b[metric]:.4f} (vector only "
                 f"{record['vector_only'][metric]:.4f}, keyword only {record['keyword_only'][metric]:.4f}, "
                 f"gain over the best single mode {record['gain_over_best_single']:+.4f})")
    return "\n".join(lines)
