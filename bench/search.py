"""Search at scale: HNSW build, vector / keyword / hybrid latency, recall@10
against exact search, throughput with concurrent clients.

    .venv/bin/python bench/search.py --chunks 100000 [--queries 200] [--clients 4]
        [--skip-keyword] [--keyword-chunks M] [--reuse] [--drop] [--database bench_search]

Works in its own database on the embedded server (default `bench_search`,
created and migrated here), never the portal's. Data (see bench/search_data.py):
N chunks of distinct texts (3–9 real vicov19qa sentences recombined,
search_data.distinct_texts), 10 per ready document, access levels 30%
public / 45% internal / 20% restricted / 5% confidential, one of 6 departments
per document (department 0 owns 10%); vectors are low-rank perturbations of real
all-MiniLM-L6-v2 embeddings of those texts. Loaded with COPY into one embedding
space created WITHOUT its HNSW index, which is then built with
search.services.spaces.create_index (bulk load first: inserting into an existing
HNSW index is ~100× slower).

Access scenarios (each query is answered inside SQL by the portal's own
allowed_documents_sql):
- `all`:  a superuser, no filter (every row);
- `dept`: a clearance-2 member of department 0 filtering on department 0
  (SearchFilters(departments=["dept0"])): ~9.5% of rows visible, ~90% hidden;
- `member` (vector only): the same user, no facet filter (~77% of rows).
Vector search filters on the access key copied onto each vector row (the
triggers of migration search/0004 fill it during the COPY).

Measured (one client, warm: every query set runs once before timing):
- encode: one query, one torch thread (the web processes' setting);
- vector: retrieval.vector_candidates(k=10) with the query vector precomputed
  (database time only; encoding is the `encode` row);
- keyword: keyword_index.keyword_search(limit=10);
- hybrid: modes.ranked_chunks(mode=hybrid, depth=--hybrid-depth) — both
  candidate lists + fusion, query vector precomputed;
- api: results.run_search(user, q, "hybrid") end to end with real encoding
  (grouping, snippets, suggestion, facets);
- http: POST /api/v1/search through django.test.Client (adds DRF + the search log).
recall@10 of vector mode against exact cosine top-10 in numpy over the same
allowed rows, at the configured hnsw.ef_search and at 40/100/200/400 (with their
latency); queries/s with --clients threads (each its own connection).

Writes bench/results/search-<N>.json (bench/_record.py: with the commit, machine
and date) and the plot var/bench/search-<N>.png.

This file is the CLI and the orchestration; bench/search_load.py sets up the
database (bulk load, index builds, scenarios), bench/search_measure.py times it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
import search_data as data  # noqa: E402
import search_load as dbload  # noqa: E402
import search_measure as measure  # noqa: E402
from search_load import SPACE_NAME, log, sql1  # noqa: E402

OUT_DIR = ROOT / "var" / "bench"  # vector caches and plots; the JSON result goes to bench/results/


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--qps-seconds", type=float, default=20.0)
    parser.add_argument("--skip-keyword", action="store_true")
    parser.add_argument("--keyword-chunks", type=int, default=None,
                        help="index only the first M chunks for keyword search (1M takes very long)")
    parser.add_argument("--hybrid-depth", type=int, default=100,
                        help="ranked_chunks depth (search() uses max(k=100, page·page_size))")
    parser.add_argument("--database", default="bench_search")
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data and indexes when they match")
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    parser.add_argument("--maintenance-work-mem", default=None,
                        help="for the HNSW build (default 1GB, 3GB above 300k chunks: the graph must fit)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--scale", type=float, default=data.SCALE,
                        help="norm of the low-rank perturbation relative to the unit base vector (default 0.3: "
                             "copies of one passage at cosine ≈ 0.92 to each other)")
    args = parser.parse_args()
    n = args.chunks
    if args.database in ("portal", "test_portal", "postgres"):
        sys.exit("refusing to use the portal's own database")
    run = _record.start()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name, png_path = f"search-{n}", OUT_DIR / f"search-{n}.png"
    previous = _record.previous(name)

    dbload.setup_django(args.database)
    from documents.models import Chunk
    from search.models import KeywordStats
    from search.services.spaces import _index_exists

    texts, questions = data.load_vicov()
    questions = questions[:args.queries]
    log(f"vicov19qa: {len(texts)} base passages, {len(questions)} test questions as queries")

    # 1. data
    space = None
    reusable = False
    if args.reuse:
        from search.models import EmbeddingSpace

        space = EmbeddingSpace.objects.filter(name=SPACE_NAME).first()
        reusable = bool(space and space.embedded_chunks == n and Chunk.objects.count() == n
                        and space.embeddings.count() == n)
        log(f"--reuse: existing data {'matches' if reusable else 'does not match'} N={n}")
    if not reusable:
        dbload.reset_data()
    space = dbload.ensure_space()
    base = data.base_vectors(space, [t for t in texts], OUT_DIR, log)
    t = time.perf_counter()
    vectors = data.grow(base, n, args.seed, scale=args.scale)
    access, department = data.document_attributes(math.ceil(n / data.CHUNKS_PER_DOCUMENT), args.seed)
    log(f"generated {n} vectors in {time.perf_counter() - t:.1f} s")
    summary: dict = {"chunks": n, "documents": math.ceil(n / data.CHUNKS_PER_DOCUMENT), "database": args.database,
                     "model": str(Path(space.model_path).relative_to(Path(space.model_path).parents[1])), "dimension": space.dimension,
                     "perturbation": {"rank": data.RANK, "scale": args.scale, "base_passages": len(texts)},
                     "chunk_texts": "distinct (search_data.distinct_texts)"}
    if reusable:
        sample = [1, n // 2, n]
        for cid in sample:
            row = sql1("SELECT embedding::text FROM search_chunkembedding WHERE chunk_id = %s AND space_id = %s",
                       [cid, space.pk])
            got = np.array(json.loads(row), dtype=np.float32)
            if not np.allclose(got, vectors[cid - 1], atol=1e-6):
                sys.exit("--reuse: stored vectors differ from the generated ones (other seed?); rerun without --reuse")
        if sql1("SELECT text FROM documents_chunk WHERE id = 1") != data.distinct_texts(1, args.seed)[0]:
            sys.exit("--reuse: the stored chunk texts are not this seed's distinct texts; rerun without --reuse")
        summary["load"] = previous.get("load", {"reused": True})
    else:
        log(f"loading {n} chunks with COPY …")
        # chunk texts: N distinct recombinations of real sentences (issue 12 point 1: a corpus that
        # repeats each passage ~N/B times makes keyword ties, not ranking, decide the top 10);
        # the vectors stay the low-rank perturbations of the base passages'
        summary["load"] = dbload.load(n, data.distinct_texts(n, args.seed), vectors, access, department, space)
        log(f"loaded: {summary['load']}")

    # 2. HNSW index
    if reusable and _index_exists(space):
        summary["hnsw_build"] = previous.get("hnsw_build", {"reused": True})
        log("HNSW index exists (reused)")
    else:
        mwm = args.maintenance_work_mem or ("1GB" if n <= 300_000 else "3GB")
        log(f"building HNSW index (maintenance_work_mem {mwm}) …")
        summary["hnsw_build"] = dbload.build_index(space, mwm)
        log(f"HNSW build: {summary['hnsw_build']}")

    # 3. keyword index
    keyword_on = not args.skip_keyword
    if keyword_on:
        stats = KeywordStats.objects.first()
        want = min(n, args.keyword_chunks or n)
        if reusable and stats and stats.chunk_count == want:
            summary["keyword_build"] = previous.get("keyword_build", {"reused": True})
            log("keyword index exists (reused)")
        else:
            summary["keyword_build"] = dbload.build_keyword(n, args.keyword_chunks)
            log(f"keyword rebuild: {summary['keyword_build']}")
    else:
        summary["keyword_build"] = {"skipped": True}
    summary["sizes"] = dbload.sizes(space)
    log(f"sizes: {summary['sizes']}")

    # 4. queries
    scen = dbload.scenarios(n, access, department)
    summary["scenarios"] = {k: {"visible_share": round(v["share"], 4),
                                "filters": v["filters"].as_dict() if v["filters"] else {},
                                "user": v["user"].username} for k, v in scen.items()}
    latency, recall, short, explains, qvec = measure.database_latency(
        space, scen, questions, vectors, keyword_on, args.hybrid_depth)
    # the end-to-end paths, with real query encoding
    measure.end_to_end_latency(scen, questions, latency)

    # 6. throughput
    qps = measure.throughput_rows(space, scen, questions, qvec, args.clients, args.qps_seconds, args.hybrid_depth)

    summary.update({
        "queries": len(questions), "hybrid_depth": args.hybrid_depth,
        "keyword": "on" if keyword_on else "skipped (hybrid = vector + an empty keyword list)",
        "latency_ms": latency, "recall_at_10": recall, "vector_short_result_lists": short,
        "throughput": qps, "explain": explains,
    })
    targets = {
        "vector p95 ≤ 30 ms (all)": latency["vector/all"]["p95"] <= 30,
        "vector p95 ≤ 30 ms (90% hidden)": latency["vector/dept"]["p95"] <= 30,
        "recall@10 ≥ 0.95 (all)": recall["all"]["recall@10"] >= 0.95,
        "recall@10 ≥ 0.95 (90% hidden)": recall["dept"]["recall@10"] >= 0.95,
        "hybrid API p95 ≤ 150 ms incl. encoding (all)": latency["api search()/all"]["p95"] <= 150,
        "hybrid API p95 ≤ 150 ms incl. encoding (90% hidden)": latency["api search()/dept"]["p95"] <= 150,
    }
    summary["targets_at_this_n"] = targets
    json_path = _record.save(name, summary, run)
    measure.plot(summary, png_path)
    printable = {k: v for k, v in summary.items() if k != "explain"}
    print(json.dumps(printable, indent=2, ensure_ascii=False, default=str))
    for key, plan in explains.items():
        print(f"\n--- EXPLAIN {key}\n{plan}")
    log(f"wrote {json_path} and {png_path}")
    if args.drop:
        dbload.drop_database(args.database)


if __name__ == "__main__":
    main()
