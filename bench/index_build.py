"""A target space's HNSW index built while the portal searches (issue 11): how
much the build's parallel workers (PORTAL_MIGRATION_INDEX_WORKERS, which sets
max_parallel_maintenance_workers for the building session) cost the searches
served meanwhile, against how much faster they build.

    .venv/bin/python bench/index_build.py --chunks 50000 [--workers 0 2] [--rounds 2] [--search-rate 2]
        [--queries 60] [--database bench_index] [--drop]

Works in its own database on the embedded server (default `bench_index`). Data
as bench/migration.py: N distinct chunk texts (real vicov19qa sentences
recombined), an active 1024-dim SOURCE space (a random 2-layer model built here
encodes the queries; low-rank unit vectors loaded with COPY, its HNSW index and
the keyword index built), and a ready 384-dim TARGET space whose N vectors are
loaded with COPY and whose index is missing, as after a backfill.

Each round, for each worker count in --workers (the order alternates between
rounds, as the machine's speed drifts): searches as a member, run_search(…,
"hybrid"), every query encoded, started at --search-rate a second (open loop),
first for --queries searches with nothing else running ("quiet"), then for as
long as `space_index.build` (the migration's own build: CREATE INDEX
CONCURRENTLY) runs in another thread; the index is dropped afterwards.
Reports, per worker count: build seconds, search p50/p95 quiet and during the
build, and the p95 ratio during/quiet. Writes
bench/results/index-build-<N>.json and the plot var/bench/index-build-<N>.png.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
import search_data as data  # noqa: E402
import search_load as dbload  # noqa: E402
from migration import Pacer, active_source, built_model  # noqa: E402
from search_load import log  # noqa: E402
from search_measure import pct  # noqa: E402

OUT_DIR = ROOT / "var" / "bench"


def load_target_vectors(target, n: int, seed: int) -> float:
    """The target's vectors for chunks 1…n, as a backfill would leave them (no index)."""
    from django.db import connection

    rng = np.random.default_rng(seed + 1)
    base = rng.standard_normal((4000, target.dimension)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    vectors = data.grow(base, n, seed + 1)
    started = time.perf_counter()
    with connection.cursor() as cur:
        with cur.copy("COPY search_chunkembedding (id, chunk_id, space_id, document_id, embedding) "
                      "FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data.COPY_HEADER)
            for start in range(0, n, 20_000):
                copy.write(data.embedding_copy_block(vectors[start:start + 20_000], start, target.pk, id_offset=n))
            copy.write(data.COPY_TRAILER)
        cur.execute("SELECT setval(pg_get_serial_sequence('search_chunkembedding', 'id'), "
                    "(SELECT max(id) FROM search_chunkembedding))")
        cur.execute("VACUUM (ANALYZE) search_chunkembedding")
    target.embedded_chunks = n
    target.save(update_fields=["embedded_chunks"])
    return round(time.perf_counter() - started, 1)


def searches(user, questions: list[str], pacer: Pacer, until=None) -> list[float]:
    """Searches in turn over `questions`: each once, or with `until` for as long as `until()` is false."""
    from search.services import encoders
    from search.services.results import run_search

    times, i = [], 0
    while (not until()) if until else i < len(questions):
        pacer.wait()
        encoders.clear_query_cache()
        t = time.perf_counter()
        page = run_search(user, questions[i % len(questions)], "hybrid")
        times.append(time.perf_counter() - t)
        if not page.hits:
            raise SystemExit("an empty result: the bench data or the search is broken")
        i += 1
    return times


def one_build(target, workers: int, user, questions: list[str], rate: float) -> dict:
    from django.conf import settings
    from django.db import connection

    from search.services import space_index

    quiet = searches(user, questions, Pacer(rate))
    settings.MIGRATION_INDEX_WORKERS = workers
    outcome: dict = {}

    def build() -> None:
        try:
            started = time.perf_counter()
            space_index.build(target)
            outcome["seconds"] = round(time.perf_counter() - started, 1)
        except Exception as exc:  # noqa: BLE001 - reported, the bench stops
            outcome["error"] = repr(exc)
        finally:
            connection.close()

    builder = threading.Thread(target=build)
    builder.start()
    during = searches(user, questions, Pacer(rate), lambda: not builder.is_alive())
    builder.join()
    if "error" in outcome:
        raise SystemExit(f"the index build failed: {outcome['error']}")
    space_index.drop(target)
    q, d = pct(quiet), pct(during)
    return {"workers": workers, "build_seconds": outcome["seconds"], "search_ms_quiet": q, "search_ms_during": d,
            "searches_during": len(during), "p95_ratio": round(d["p95"] / q["p95"], 2)}


def plot(rounds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    by_workers: dict[int, list[dict]] = {}
    for r in rounds:
        by_workers.setdefault(r["workers"], []).append(r)
    labels = [str(w) for w in by_workers]
    left.bar(labels, [np.mean([r["build_seconds"] for r in rs]) for rs in by_workers.values()])
    left.set_xlabel("parallel maintenance workers")
    left.set_ylabel("HNSW build (s, mean)")
    x = np.arange(len(labels))
    right.bar(x - 0.2, [np.mean([r["search_ms_quiet"]["p95"] for r in rs]) for rs in by_workers.values()], 0.4,
              label="quiet")
    right.bar(x + 0.2, [np.mean([r["search_ms_during"]["p95"] for r in rs]) for rs in by_workers.values()], 0.4,
              label="during the build")
    right.set_xticks(x, labels)
    right.set_xlabel("parallel maintenance workers")
    right.set_ylabel("hybrid search p95 (ms, mean of rounds)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--search-rate", type=float, default=2.0)
    parser.add_argument("--queries", type=int, default=60, help="quiet searches before each build")
    parser.add_argument("--database", default="bench_index")
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    if args.database in ("portal", "test_portal", "postgres"):
        sys.exit("refusing to use the portal's own database")
    n = args.chunks
    run = _record.start()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    dbload.setup_django(args.database)
    from search.models import SpaceStatus
    from search.services import encoders, spaces

    dbload.reset_data()
    texts = data.distinct_texts(n, args.seed)
    _, questions = data.load_vicov()
    source = active_source(built_model(1024))
    rng = np.random.default_rng(args.seed)
    base = rng.standard_normal((4000, source.dimension)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    access, department = data.document_attributes(math.ceil(n / data.CHUNKS_PER_DOCUMENT), args.seed)
    summary: dict = {"chunks": n, "database": args.database, "search_rate_per_s": args.search_rate}
    summary["load"] = dbload.load(n, texts, data.grow(base, n, args.seed), access, department, source)
    summary["source_index_build"] = dbload.build_index(source, "1GB")
    summary["keyword_build"] = dbload.build_keyword(n, None)
    target = spaces.create_space("bench-target", built_model(384, 256), status=SpaceStatus.READY)
    spaces.drop_index(target)
    summary["target_load_seconds"] = load_target_vectors(target, n, args.seed)
    log(f"{n} chunks; source {source.dimension} dims indexed, target {target.dimension} dims loaded")
    _, member = dbload.users()
    encoders.use_query_threads(1)  # the web processes' setting
    searches(member, questions[-20:], Pacer(0))  # warm-up
    rounds = []
    for r in range(args.rounds):
        order = args.workers if r % 2 == 0 else list(reversed(args.workers))
        for workers in order:
            result = one_build(target, workers, member, questions[:args.queries], args.search_rate)
            result["round"] = r + 1
            log(f"round {r + 1}, {workers} workers: build {result['build_seconds']} s, search p95 "
                f"{result['search_ms_quiet']['p95']} quiet → {result['search_ms_during']['p95']} ms during")
            rounds.append(result)
    summary["rounds"] = rounds
    summary["by_workers"] = {
        str(w): {"build_seconds_mean": round(float(np.mean([r["build_seconds"] for r in rounds
                                                             if r["workers"] == w])), 1),
                 "p95_ratio_mean": round(float(np.mean([r["p95_ratio"] for r in rounds if r["workers"] == w])), 2)}
        for w in args.workers}
    name = f"index-build-{n}"
    path = _record.save(name, summary, run)
    plot(rounds, OUT_DIR / f"{name}.png")
    log(f"wrote {path} and {OUT_DIR / f'{name}.png'}")
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    if args.drop:
        dbload.drop_database(args.database)


if __name__ == "__main__":
    main()
