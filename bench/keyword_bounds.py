"""What the bounded BM25 (two phases, TERM_CAP, the postings budget) costs in
quality and buys in time, against exact scoring, on a bench/search.py database.

    .venv/bin/python bench/keyword_bounds.py --database bench_search [--queries 200]

Queries: the vicov19qa test questions (research use only; read from ../shared).
Runs as the bench superuser, so every ready chunk is searchable. Reports the
latency of keyword_search(exact=True) and of the default (bounded) path, and the
overlap of their top 10, tie-aware: a bounded result counts when its exact score
reaches the 10th exact score (the bench corpus's texts are distinct:
search_data.distinct_texts; ranking quality on vicov19qa is evaluate_corpus's
MRR@10, bench/keyword_engines.py). Exact scoring is slow on large corpora
(p50 ≈ 6 s a query at 1M chunks): use --queries to bound the run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
import search_data as data  # noqa: E402
import search_load as dbload  # noqa: E402


def gold_pairs(limit: int) -> list[tuple[str, str]]:
    """(test question, its answer), whitespace collapsed, read with the portal's one loader."""
    from search.evaluation.corpus import load_vicov19qa

    corpus = load_vicov19qa([data.DATA / "UIT-ViCoV19QA_test.csv"])
    return [(" ".join(q.split()), " ".join(corpus.passages[relevant[0]].split()))
            for q, relevant in corpus.questions("test")][:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    run = _record.start()
    dbload.setup_django(args.database)
    from django.contrib.auth import get_user_model
    from search.services import keyword_index
    from search.services.filters import search_scope

    scope = search_scope(get_user_model().objects.get(username=dbload.ADMIN))
    questions = [q for q, _ in gold_pairs(args.queries)]

    def search_all(exact: bool | None) -> tuple[list[list[tuple[int, float]]], list[float]]:
        tops, times = [], []
        for question in questions:
            t = time.perf_counter()
            found = keyword_index.keyword_search(question, scope.allowed_sql, scope.params, limit=100, exact=exact)
            times.append(time.perf_counter() - t)
            tops.append(found)
        return tops, times

    results, figures = {}, {}
    for label, exact in (("exact", True), ("bounded (default)", None)):
        tops, times = search_all(exact)
        results[label] = tops
        figures[label] = {"p50_ms": round(float(np.percentile(times, 50)) * 1000, 1),
                          "p95_ms": round(float(np.percentile(times, 95)) * 1000, 1)}
        dbload.log(f"{label:18s} p50 {figures[label]['p50_ms']:7.1f} ms  "
                   f"p95 {figures[label]['p95_ms']:7.1f} ms  ({len(questions)} questions)")
    overlaps = []
    for exact_top, bounded_top in zip(results["exact"], results["bounded (default)"]):
        if not exact_top:
            continue
        exact_score = dict(exact_top)  # top 100: every chunk tied with the 10th when ties are < 90 deep
        tenth = exact_top[min(10, len(exact_top)) - 1][1]
        hits = sum(1 for c, _ in bounded_top[:10] if exact_score.get(c, float("-inf")) >= tenth - 1e-9)
        overlaps.append(hits / min(10, len(exact_top)))
    overlap = float(np.mean(overlaps)) if overlaps else 0.0
    dbload.log(f"overlap@10 of the bounded top 10 with exact scoring (tie-aware): {overlap:.3f}")
    from documents.models import Chunk

    _record.save(f"keyword-bounds-{args.database}", {
        "database": args.database, "chunks": Chunk.objects.count(), "questions": len(questions),
        "modes": figures, "overlap_at_10_with_exact_tie_aware": round(overlap, 3),
    }, run)


if __name__ == "__main__":
    main()
