"""Calibrating hybrid fusion per space on an evaluation set — honestly.

A grid search over fusion settings on ~100 questions mostly finds noise: the
curve is flat within its standard error, and the "best" point loses on new
questions. So:

1. **A robust default.** Rank fusion (RRF, k=60), which does not depend on the
   score range of either side (cosines of one model sit in a narrow band; BM25
   scores are unbounded), weighted toward the mode that is stronger on the set:
   the weaker side weighs (its score / the stronger's) to the fourth power —
   nearly as much when the modes are close, nothing to speak of when one is near
   useless (a side that is mostly noise still moves ranks in RRF). Measured over
   re-splits of vicov19qa (docs/benchmarks.md): squared, a near-useless vector
   side still cost keyword search 0.004 MRR@10 on 83% of held-out splits.
2. **Leave it only for a real gain.** The grid (RRF weights from keyword-only
   to vector-only, k, candidate depth) is searched, and its best point replaces
   the default only when a paired bootstrap over the set's queries puts the
   whole 95% confidence interval of its gain over the default above zero. The
   record keeps the interval either way.

Each query's vector and keyword candidates are retrieved ONCE, at the deepest
depth of the grid, with the space's relevance floors applied as a search
applies them (search.services.relevance), and fused in Python with
`search.services.fusion.fuse` for every point. As in `hybrid_ranking`, a search
of depth d takes max(d, candidate_depth) candidates per mode.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from django.utils import timezone

from search.evaluation import metrics as m
from search.evaluation.runner import ChunkInfo, evaluation_scope, ranking_for, relevance
from search.models import EmbeddingSpace
from search.services import fusion, keyword_engine
from search.services.relevance import admitted_by_meaning, keyword_coverage, semantic_only_bar

VECTOR_SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RRF_KS = (10, 30, 60, 100)
DEPTHS = (100, 200)
METRICS = ("MRR@10", "nDCG@10", "Hit@1", "Hit@10")
OBJECTIVE = "MRR@10"
ROBUST_RRF_K, ROBUST_DEPTH = 60, 100
WEAKER_SIDE_EXPONENT = 4  # the weaker side's weight: (its score / the stronger's) ** this (bench/calibration_resplits.py)
KEPT_RECORDS = ("floors", "answers")  # records of other calibrations kept on the space when the fusion is recalibrated
BOOTSTRAP_SAMPLES, CONFIDENCE = 2000, 0.95


class CalibrationError(Exception):
    pass


def collect(evaluation_set, space: EmbeddingSpace, *, user=None, depth: int = 200,
            progress: Callable[[int, int], None] | None = None) -> list[tuple]:
    """[(item, vector list, keyword list, keyword coverage, vector s, keyword s)]
    for the usable items. The lists are the unfloored candidates."""
    from search.services.retrieval import vector_candidates

    scope = evaluation_scope(user)
    items = [i for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]
    out = []
    for n, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        vector = vector_candidates(space, item.query, scope, depth)
        t1 = time.perf_counter()
        keyword = keyword_engine.keyword_search(item.query, scope, limit=depth)
        covered = keyword_coverage(item.query, [c for c, _ in keyword])
        out.append((item, vector, keyword, covered, t1 - t0, time.perf_counter() - t1))
        if progress:
            progress(n, len(items))
    return out


def floored(row: tuple, floors: tuple, per_mode: int | None = None) -> tuple[list, list]:
    """A collected row's (vector, keyword) lists as a hybrid search of
    `per_mode` candidates a side sees them: cut, then floored
    (similarity, keyword, semantic-only; search.services.relevance)."""
    _, vector, keyword, covered, *_ = row
    similarity_floor, keyword_floor, *rest = floors
    semantic_only = semantic_only_bar(vector, rest[0] if rest else None, rest[1] if len(rest) > 1 else None)
    vector, keyword = vector[:per_mode], keyword[:per_mode]
    if similarity_floor is not None:
        vector = [(c, s) for c, s in vector if s >= similarity_floor]
    if keyword_floor is not None:
        keyword = [(c, s) for c, s in keyword if covered.get(c, 0.0) >= keyword_floor]
    return admitted_by_meaning(vector, keyword, semantic_only), keyword


def robust_default(vector_score: float, keyword_score: float) -> dict:
    """RRF k=60 weighted toward the stronger mode on the set: the weaker side
    weighs (weaker score / stronger score) ** WEAKER_SIDE_EXPONENT of the
    stronger — nearly as much when the two are close, next to nothing when one
    mode is near useless (a side that is mostly noise still moves ranks in RRF)."""
    strong, weak = max(vector_score, keyword_score), min(vector_score, keyword_score)
    ratio = (weak / strong) ** WEAKER_SIDE_EXPONENT if strong > 0 else 1.0
    share = 1 / (1 + ratio) if vector_score >= keyword_score else ratio / (1 + ratio)
    return point("rrf", round(share, 2), ROBUST_RRF_K, ROBUST_DEPTH)


def grid_points(shares=VECTOR_SHARES, rrf_ks=RRF_KS, depths=DEPTHS):
    """RRF points; the single modes (shares 0 and 1) are always among them."""
    shares = sorted(set(round(x, 4) for x in shares) | {0.0, 1.0})
    for depth in sorted(set(depths) | {ROBUST_DEPTH}):
        for k in sorted(set(rrf_ks) | {ROBUST_RRF_K}):
            for share in shares:
                yield point("rrf", share, k, depth)


def point(method: str, vector_share: float, rrf_k: int, depth: int) -> dict:
    return {"fusion": method, "rrf_k": rrf_k, "candidate_depth": depth, "vector_share": round(vector_share, 4),
            "vector_weight": round(vector_share, 4), "keyword_weight": round(1 - vector_share, 4)}


def key_of(p: dict) -> tuple:
    return (p["fusion"], p["vector_share"], p["rrf_k"], p["candidate_depth"])


def query_scores(p: dict, collected: list[tuple], info: ChunkInfo, eval_depth: int,
                 floors=(None, None)) -> np.ndarray:
    """Per-query metrics (rows; columns METRICS) of fusion point `p` over the
    collected candidates."""
    per_mode = max(eval_depth, p["candidate_depth"])
    rows = []
    for row in collected:
        item = row[0]
        vector, keyword = floored(row, floors, per_mode)
        fused = fusion.fuse(vector, keyword, method=p["fusion"],
                            vector_weight=p["vector_weight"], keyword_weight=p["keyword_weight"],
                            rrf_k=p["rrf_k"])[:eval_depth]
        ranking = ranking_for(item, fused, info)
        rel = relevance(item)
        rows.append([m.reciprocal_rank(ranking, rel, 10), m.ndcg(ranking, rel, 10), m.hit(ranking, rel, 1),
                     m.hit(ranking, rel, 10)])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(METRICS))


class GridScores:
    """Per-query metric matrices of fusion points over collected candidates,
    computed when first asked for (a point off the grid, like the robust
    default, costs one fusion pass)."""

    def __init__(self, collected, info, *, eval_depth=100, floors=(None, None)):
        self.collected, self.info, self.eval_depth, self.floors = collected, info, eval_depth, floors
        self._cache: dict[tuple, np.ndarray] = {}

    def __call__(self, p: dict) -> np.ndarray:
        key = key_of(p)
        if key not in self._cache:
            self._cache[key] = query_scores(p, self.collected, self.info, self.eval_depth, self.floors)
        return self._cache[key]


def paired_bootstrap(candidate, baseline, *, samples: int = BOOTSTRAP_SAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """Mean per-query gain of `candidate` over `baseline` and its percentile
    confidence interval, resampling queries with replacement."""
    diff = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if not len(diff):
        return {"gain": 0.0, "low": 0.0, "high": 0.0, "samples": 0, "confidence": confidence, "queries": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return {"gain": round(float(diff.mean()), 6), "low": round(float(np.quantile(means, tail)), 6),
            "high": round(float(np.quantile(means, 1 - tail)), 6), "samples": samples,
            "confidence": confidence, "queries": int(len(diff))}


def decide(points: list[dict], score, *, metric: str = OBJECTIVE, rows=None, seed: int = 0) -> dict:
    """The calibration decision (module docstring) from `score(point)`: the
    per-query metric matrix of a fusion point (`rows`: the queries to use,
    default all). Returns the robust default, the grid's best point, the
    bootstrap of its gain over the default, and which of the two is chosen."""
    col = METRICS.index(metric)

    def sub(p):
        matrix = score(p)
        return matrix if rows is None else matrix[rows]

    def summary(p):
        return {**p, **{name: round(float(v), 6) for name, v in zip(METRICS, sub(p).mean(axis=0))}}

    curve = [summary(p) for p in points]

    def best_of(candidates):  # max keeps the first of equals: the grid's order
        return max(candidates, key=lambda q: (q[metric], q["nDCG@10"], q["Hit@1"]))

    vector_only = best_of([q for q in curve if q["vector_share"] == 1.0])
    keyword_only = best_of([q for q in curve if q["vector_share"] == 0.0])
    default = summary(robust_default(vector_only[metric], keyword_only[metric]))
    best = best_of(curve)
    bootstrap = paired_bootstrap(sub(best)[:, col], sub(default)[:, col], seed=seed)
    adopted = bootstrap["low"] > 0
    chosen = best if adopted else default
    best_single = max(vector_only[metric], keyword_only[metric])
    return {
        "metric": metric, "queries": int(sub(default).shape[0]),
        "chosen": {**chosen, "score": chosen[metric], "adopted_grid_best": adopted, "why": (
            "the grid's best point: its gain over the robust default is above zero over the whole "
            f"{bootstrap['confidence']:.0%} bootstrap interval" if adopted else
            "the robust default: the grid's best point did not beat it beyond the bootstrap interval")},
        "default": {**default, "score": default[metric]},
        "best": {**best, "score": best[metric]},
        "bootstrap": bootstrap,
        "vector_only": {**vector_only, "score": vector_only[metric]},
        "keyword_only": {**keyword_only, "score": keyword_only[metric]},
        "gain_over_best_single": round(chosen[metric] - best_single, 6),
        "curve": curve,
    }


def choose(collected: list[tuple], info: ChunkInfo, *, metric: str = OBJECTIVE, eval_depth: int = 100,
           shares=VECTOR_SHARES, rrf_ks=RRF_KS, depths=DEPTHS, floors=(None, None), seed: int = 0) -> dict:
    """`decide` over the grid scored on collected candidates."""
    scores = GridScores(collected, info, eval_depth=eval_depth, floors=floors)
    record = decide(list(grid_points(shares, rrf_ks, depths)), scores, metric=metric, seed=seed)
    record.update({"eval_depth": eval_depth,
                   "floors_applied": dict(zip(("similarity", "keyword", "semantic_only"), floors))})
    return record


def calibrate(evaluation_set, space: EmbeddingSpace, *, user=None, metric: str = OBJECTIVE, eval_depth: int = 100,
              shares=VECTOR_SHARES, rrf_ks=RRF_KS, depths=DEPTHS, save: bool = True,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Choose the fusion settings (module docstring), store them on the space
    (unless save=False) and return the record (with the whole curve)."""
    started = time.perf_counter()
    collected = collect(evaluation_set, space, user=user, depth=max(max(depths), eval_depth), progress=progress)
    if not collected:
        raise CalibrationError(f"evaluation set {evaluation_set.name} has no usable items")
    retrieval_s = time.perf_counter() - started
    info = ChunkInfo()
    if any(not item.relevant_chunks for item, *_ in collected):
        info.load({c for _, v, k, *_ in collected for c, _ in v + k})
    record = choose(collected, info, metric=metric, eval_depth=eval_depth, shares=shares, rrf_ks=rrf_ks,
                    depths=depths, floors=(space.similarity_floor, space.keyword_floor, space.semantic_only_floor,
                                            space.vector_gap_floor))
    record.update({"set": evaluation_set.name, "source": "this portal", "calibrated_at": timezone.now().isoformat(),
                   "retrieval_s": round(retrieval_s, 2),
                   "grid_s": round(time.perf_counter() - started - retrieval_s, 2)})
    if save:
        c = record["chosen"]
        # calibrate_floors' record stays, and so does the answer floor's (answers.services.answer_calibration)
        kept = {k: v for k, v in (space.calibration or {}).items() if k in KEPT_RECORDS}
        calibration = {**record, **kept}
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            fusion=c["fusion"], vector_weight=c["vector_weight"], keyword_weight=c["keyword_weight"],
            rrf_k=c["rrf_k"], candidate_depth=c["candidate_depth"], calibration=calibration)
        space.refresh_from_db()
    return record


def curve_table(record: dict) -> str:
    """The curve as text (one row per vector share, one column per setting) and
    the decision with its confidence interval."""
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
    b, d, c, ci = record["best"], record["default"], record["chosen"], record["bootstrap"]
    lines += [
        f"robust default: rrf k {d['rrf_k']} vector {d['vector_weight']} keyword {d['keyword_weight']}: "
        f"{metric} {d[metric]:.4f}",
        f"grid's best: rrf k {b['rrf_k']} vector {b['vector_weight']} keyword {b['keyword_weight']} depth "
        f"{b['candidate_depth']}: {metric} {b[metric]:.4f}; gain over the default {ci['gain']:+.4f} "
        f"({ci['confidence']:.0%} interval {ci['low']:+.4f} … {ci['high']:+.4f}, {ci['queries']} queries)",
        f"chosen: {c['why']} — {metric} {c[metric]:.4f} (vector only {record['vector_only'][metric]:.4f}, "
        f"keyword only {record['keyword_only'][metric]:.4f}, gain over the best single mode "
        f"{record['gain_over_best_single']:+.4f} on this set)",
    ]
    return "\n".join(lines)
