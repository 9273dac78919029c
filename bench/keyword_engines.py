"""Both keyword engines side by side in one run: the PostgreSQL postings tables
and tantivy (issue 12), on the honest corpus.

    .venv/bin/python bench/keyword_engines.py [--chunks 100000] [--queries 200] [--new-documents 200]
        [--database bench_keyword_engines] [--skip-mrr] [--drop]

Its own database on the embedded server (default `bench_keyword_engines`,
created and migrated here), never the portal's, and its own tantivy folder
(var/bench/keyword-index-<database>). Corpus: N distinct chunk texts
(bench/search_data.distinct_texts: 3–9 real vicov19qa sentences recombined,
seeded), 10 per ready document, the access levels and departments of
bench/search.py, loaded with COPY (bench/search_load.py).

Measured, both engines in the same run (compare them as ratios: the machine is
shared):
- build: keyword_index.rebuild() and the tantivy writer's rebuild; size on disk
  (the postings and term tables with their indexes; the tantivy copy's files);
- keyword search through search.services.keyword_engine.keyword_search (what
  search calls; tantivy includes the access SQL re-check), limit 10, p50/p95,
  short queries (the first 3 syllables of a vicov19qa test question) and long
  ones (the whole question), as a superuser (`all`) and as a member filtering
  on one department (`dept`: ~90% of the chunks hidden); the engines take turns
  query by query;
- top-10 overlap with exact BM25, tie-aware (bench/keyword_exact.py);
- incremental updates: --new-documents documents of 10 new distinct chunks
  written as ingestion writes them (one transaction: the ready document and its
  chunks), half indexed by each engine as the product does (`incremental`):
  chunks/s = chunks / seconds spent indexing them; lag = commit → searchable;
- MRR@10 on vicov19qa: `manage.py evaluate_corpus --mode keyword --no-record`
  run once per engine (a scratch database each).

Writes bench/results/keyword-engines-<N>.json and var/bench/keyword-engines-<N>.png.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
import keyword_exact  # noqa: E402
import search_data as data  # noqa: E402
import search_load as dbload  # noqa: E402
from search_load import log, sql1  # noqa: E402

OUT_DIR = ROOT / "var" / "bench"
ENGINES = ("postgres", "tantivy")
SHORT_SYLLABLES = 3


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1)


def build(n: int) -> dict:
    from search.services.keyword_engine import store, writer

    out = {"postgres": dbload.build_keyword(n, None)}
    t = time.perf_counter()
    result = writer.rebuild()
    out["tantivy"] = {"seconds": round(time.perf_counter() - t, 1), "chunks_indexed": result.chunks,
                      "chunks_per_s": round(result.chunks / (time.perf_counter() - t), 1)}
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    out["postgres"]["size_mb"] = mb(sql1("SELECT pg_total_relation_size('search_keywordposting') "
                                         "+ pg_total_relation_size('search_keywordterm')"))
    out["tantivy"]["size_mb"] = folder_mb(store.current_copy())
    out["tantivy"]["segments"] = store.reader().searcher().num_segments
    for engine in ENGINES:
        log(f"build {engine}: {out[engine]}")
    return out


def search_figures(questions: list[str], scenarios: dict, exact: keyword_exact.ExactBM25) -> dict:
    from django.conf import settings

    from search.services import keyword_engine

    kinds = {"short": [" ".join(q.split()[:SHORT_SYLLABLES]) for q in questions], "long": questions}
    out: dict = {}
    for scenario in ("all", "dept"):
        sc = scenarios[scenario]
        mask = None if scenario == "all" else sc["mask"]
        for kind, queries in kinds.items():
            times = {e: [] for e in ENGINES}
            overlaps = {e: [] for e in ENGINES}
            for i, q in enumerate(queries):
                reference = exact.scores(q)
                order = ENGINES if i % 2 == 0 else ENGINES[::-1]
                for engine in order:
                    settings.KEYWORD_ENGINE = engine
                    keyword_engine.keyword_search(q, sc["scope"], 10)  # warm (its terms' pages, the reader)
                    t = time.perf_counter()
                    found = keyword_engine.keyword_search(q, sc["scope"], 10)
                    times[engine].append(time.perf_counter() - t)
                    overlap = keyword_exact.tie_aware_overlap([c for c, _ in found], reference, mask)
                    if overlap is not None:
                        overlaps[engine].append(overlap)
            for engine in ENGINES:
                row = {"p50_ms": pct(times[engine], 50), "p95_ms": pct(times[engine], 95),
                       "overlap_at_10_with_exact": round(float(np.mean(overlaps[engine])), 4),
                       "queries": len(queries), "queries_with_a_visible_match": len(overlaps[engine])}
                out.setdefault(engine, {}).setdefault(scenario, {})[kind] = row
                log(f"{scenario:4s} {kind:5s} {engine:8s} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
                    f"overlap@10 {row['overlap_at_10_with_exact']:.3f}")
    return out


def write_document(code: str, chunk_texts: list[str]) -> int:
    """A ready document and its chunks in one transaction, as ingestion commits them
    (the change-log triggers fire); its id."""
    import hashlib

    from django.db import transaction

    from documents.models import Chunk, Document

    with transaction.atomic():
        doc = Document.objects.create(code=code, title=f"Tài liệu {code}", access_level=1, status="ready",
                                      source_file=f"bench/{code}.txt", original_filename=f"{code}.txt",
                                      checksum=hashlib.sha256(code.encode()).hexdigest())
        Chunk.objects.bulk_create([Chunk(document=doc, ordinal=i, text=t, token_count=len(t.split()),
                                         char_start=0, char_end=len(t)) for i, t in enumerate(chunk_texts)])
    return doc.pk


def incremental(texts: list[str], documents: int) -> dict:
    """New documents of 10 distinct chunks each, written as ingestion writes them,
    indexed by each engine as the product indexes them, one engine at a time
    (one thread: no engine waits on the other's Python):
    1. postgres: each document indexed right after its commit (the document_chunked
       receiver's keyword_index.index_document); lag = that call;
    2. tantivy, catching up: one writer.sync() over the change log of those documents
       (a writer that was away, or the beat's batches): chunks/s;
    3. tantivy, one document at a time: writer.sync() right after each commit (the
       task queued on commit, without the Celery hop); lag = commit → the copy shows it."""
    from django.conf import settings
    from tantivy import Query

    from search.services import keyword_index
    from search.services.keyword_engine import store, writer

    settings.KEYWORD_ENGINE = "tantivy"
    per_doc = data.CHUNKS_PER_DOCUMENT
    half = documents // 2
    pg_seconds, ids = [], []
    for d in range(half):
        ids.append(write_document(f"BENCH_NEW_{d:05d}", texts[d * per_doc:(d + 1) * per_doc]))
        t = time.perf_counter()
        keyword_index.index_document(ids[-1])
        pg_seconds.append(time.perf_counter() - t)
    t = time.perf_counter()
    caught_up = writer.sync()
    catch_up_s = time.perf_counter() - t
    searcher = store.reader().searcher()
    missing = [d for d in ids if not searcher.search(Query.term_query(store.SCHEMA, "document_id", d), 1).count]
    lags, commits = [], 0
    for d in range(half, documents):
        doc_id = write_document(f"BENCH_NEW_{d:05d}", texts[d * per_doc:(d + 1) * per_doc])
        t = time.perf_counter()
        commits += writer.sync().batches
        if store.reader().searcher().search(Query.term_query(store.SCHEMA, "document_id", doc_id), 1).count:
            lags.append(time.perf_counter() - t)
        else:
            missing.append(doc_id)
    chunks = half * per_doc
    out = {
        "documents": documents, "chunks": documents * per_doc,
        "postgres": {"documents": half, "chunks_per_s": round(chunks / sum(pg_seconds), 1),
                     "lag_p50_ms": pct(pg_seconds, 50), "lag_p95_ms": pct(pg_seconds, 95),
                     "lag_max_ms": round(max(pg_seconds) * 1000, 1)},
        "tantivy": {"catch_up": {"documents": half, "chunks": caught_up.chunks, "seconds": round(catch_up_s, 2),
                                 "chunks_per_s": round(caught_up.chunks / catch_up_s, 1),
                                 "commits": caught_up.batches},
                    "documents": documents - half, "chunks_per_s": round((documents - half) * per_doc / sum(lags), 1),
                    "lag_p50_ms": pct(lags, 50), "lag_p95_ms": pct(lags, 95),
                    "lag_max_ms": round(max(lags) * 1000, 1), "commits": commits, "not_applied": len(missing),
                    "beat_seconds": settings.KEYWORD_SYNC_SECONDS},
    }
    log(f"incremental: {out}")
    return out


def mrr(database: str, engine: str, dataset: Path) -> dict:
    """evaluate_corpus --mode keyword with the engine (its own scratch database)."""
    env = {**os.environ, "PORTAL_DATABASE_NAME": database, "PORTAL_KEYWORD_ENGINE": engine}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "manage.py", "evaluate_corpus", "--csv", str(dataset), "--mode", "keyword",
                           "--no-record"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    found = re.search(r"keyword\s+MRR@10 ([0-9.]+)\s+Hit@1 ([0-9.]+)", proc.stdout)
    if proc.returncode or not found:
        log(f"evaluate_corpus ({engine}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return {"error": proc.returncode}
    engine_line = re.search(r"keyword index \((\w+)\)", proc.stdout)
    out = {"MRR@10": float(found.group(1)), "Hit@1": float(found.group(2)),
           "index": engine_line.group(1) if engine_line else None, "seconds": round(time.perf_counter() - t, 1)}
    log(f"vicov19qa keyword ({engine}): {out}")
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1.4]})
    groups = [(s, k) for s in ("all", "dept") for k in ("short", "long")]
    x = np.arange(len(groups))
    for i, engine in enumerate(ENGINES):
        rows = [summary["search"][engine][s][k] for s, k in groups]
        left.bar(x + (i - 0.5) * 0.38, [r["p95_ms"] for r in rows], 0.38, alpha=0.35, color=f"C{i}")
        left.bar(x + (i - 0.5) * 0.38, [r["p50_ms"] for r in rows], 0.38, color=f"C{i}",
                 label=f"{engine} (p50 solid, p95 light)")
    left.set_xticks(x, [f"{s} / {k}" for s, k in groups])
    left.set_ylabel("keyword search, ms (limit 10)")
    left.set_yscale("log")
    left.legend()
    left.set_title(f"{summary['chunks']:,} distinct chunks; load {summary['run_load']}")
    labels = ["build s", "size MB", "upd. chunks/s"]
    for i, engine in enumerate(ENGINES):
        b, u = summary["build"][engine], summary["incremental"][engine]
        right.bar(np.arange(3) + (i - 0.5) * 0.38, [b["seconds"], b["size_mb"], u["chunks_per_s"] or 0], 0.38,
                  color=f"C{i}", label=engine)
    right.set_xticks(np.arange(3), labels)
    right.set_yscale("log")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    log(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--new-documents", type=int, default=200)
    parser.add_argument("--database", default="bench_keyword_engines")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--dataset", default=str(data.DATA),
                        help="the vicov19qa folder (default: ../shared/datasets/vicov19qa beside the checkout)")
    parser.add_argument("--skip-mrr", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the bench database (and its index) at the end")
    args = parser.parse_args()
    if args.database in ("portal", "test_portal", "postgres"):
        sys.exit("refusing to use the portal's own database")
    n, new_chunks = args.chunks, args.new_documents * data.CHUNKS_PER_DOCUMENT
    data.DATA = Path(args.dataset)
    run = _record.start()
    index_dir = OUT_DIR / f"keyword-index-{args.database}"
    os.environ["PORTAL_KEYWORD_INDEX_DIR"] = str(index_dir)  # never the portal's copy
    dbload.setup_django(args.database)
    import shutil

    shutil.rmtree(index_dir, ignore_errors=True)
    dbload.reset_data()
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE search_keywordchange, search_keywordindexcopy")

    t = time.perf_counter()
    sentences, compositions = data.distinct_compositions(n + new_chunks, args.seed)
    texts = [" ".join(sentences[i] for i in c) for c in compositions]
    assert len(set(texts)) == len(texts)
    log(f"{len(texts)} distinct texts from {len(sentences)} sentences in {time.perf_counter() - t:.1f} s")
    n_docs = math.ceil(n / data.CHUNKS_PER_DOCUMENT)
    access, department = data.document_attributes(n_docs, args.seed)
    summary: dict = {"chunks": n, "documents": n_docs, "database": args.database, "seed": args.seed,
                     "chunk_texts": "distinct (search_data.distinct_texts)", "sentence_pool": len(sentences)}
    summary["load"] = dbload.load(n, texts[:n], None, access, department, None)
    log(f"loaded: {summary['load']}")
    summary["build"] = build(n)

    t = time.perf_counter()
    exact = keyword_exact.ExactBM25(sentences, compositions[:n])
    exact.check(texts[:n])
    log(f"exact BM25 reference: {len(exact.vocab)} terms in {time.perf_counter() - t:.1f} s")
    scenarios = dbload.scenarios(n, access, department)
    summary["visible_share"] = {k: round(v["share"], 4) for k, v in scenarios.items()}
    _, questions = data.load_vicov()
    summary["search"] = search_figures(questions[:args.queries], scenarios, exact)
    summary["incremental"] = incremental(texts[n:], args.new_documents)
    if not args.skip_mrr:
        summary["vicov19qa_keyword"] = {engine: mrr(args.database, engine, data.DATA)
                                         for engine in ENGINES}
    load = os.getloadavg()
    summary["run_load"] = f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    png = OUT_DIR / f"keyword-engines-{n}.png"
    plot(summary, png)
    summary["plot"] = str(png.relative_to(ROOT))
    _record.save(f"keyword-engines-{n}", summary, run)
    if args.drop:
        dbload.drop_database(args.database)
        shutil.rmtree(index_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
