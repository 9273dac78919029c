"""What the bounded BM25 (two phases, TERM_CAP, the postings budget) costs in
quality and buys in time, against exact scoring, on a bench/search.py database.

    .venv/bin/python bench/keyword_bounds.py --database bench_search [--queries 200]

Queries: the vicov19qa test questions (research use only; read from ../shared);
relevant: any chunk whose text is the question's first answer (the bench corpus
holds each passage many times; any copy counts). Runs as the bench superuser,
so every ready chunk is searchable. Reports MRR@10 and latency for
keyword_search(exact=True) and the default (bounded) path, and the overlap of
their top 10. Exact scoring is slow on large corpora (p50 ≈ 6 s a query at 1M
chunks): use --queries to bound the run.
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
    from django.db import connection

    from search.services import keyword_index
    from search.services.filters import search_scope

    scope = search_scope(get_user_model().objects.get(username=dbload.ADMIN))
    pairs = gold_pairs(args.queries)
    texts: dict[int, str] = {}

    def text_of(ids: list[int]) -> list[str]:
        missing = [i for i in ids if i not in texts]
        if missing:
            with connection.cursor() as cur:
                cur.execute("SELECT id, text FROM documents_chunk WHERE id = ANY(%s)", [missing])
                texts.update(cur.fetchall())
        return [texts[i] for i in ids]

    def search_all(exact: bool | None) -> tuple[list[list[int]], float, list[float]]:
        tops, rr, times = [], [], []
        for question, answer in pairs:
            t = time.perf_counter()
            found = keyword_index.keyword_search(question, scope.allowed_sql, scope.params, limit=100, exact=exact)
            times.append(time.perf_counter() - t)
            top = [c for c, _ in found[:10]]
            tops.append(top)
            rr.append(next((1 / (i + 1) for i, text in enumerate(text_of(top)) if text == answer), 0.0))
        return tops, float(np.mean(rr)), times

    results, figures = {}, {}
    for label, exact in (("exact", True), ("bounded (default)", None)):
        tops, mrr, times = search_all(exact)
        results[label] = tops
        figures[label] = {"MRR@10": round(mrr, 4), "p50_ms": round(float(np.percentile(times, 50)) * 1000, 1),
                          "p95_ms": round(float(np.percentile(times, 95)) * 1000, 1)}
        dbload.log(f"{label:18s} MRR@10 {mrr:.4f}  p50 {figures[label]['p50_ms']:7.1f} ms  "
                   f"p95 {figures[label]['p95_ms']:7.1f} ms  ({len(pairs)} questions)")
    overlap = np.mean([len(set(a) & set(b)) / max(1, len(b))
                       for a, b in zip(results["bounded (default)"], results["exact"])])
    dbload.log(f"overlap@10 of the bounded top 10 with exact scoring: {overlap:.3f}")
    from documents.models import Chunk

    _record.save(f"keyword-bounds-{args.database}", {
        "database": args.database, "chunks": Chunk.objects.count(), "questions": len(pairs),
        "modes": figures, "overlap_at_10_with_exact": round(float(overlap), 3),
    }, run)


if __name__ == "__main__":
    main()
