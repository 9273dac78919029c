"""Ingestion speed: extraction + chunking only (no database, no embedding).

    .venv/bin/python bench/ingest_speed.py [PATH ...] [--rounds 3]

Defaults to the sample corpus. The first round pays for lazy imports (the
first PDF call alone takes seconds) and is reported separately; the figure that
matters is the warm rate over the later rounds. Token counts use the model that
chunking uses by default (EMBEDDING_MODEL or all-MiniLM-L6-v2).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _record  # noqa: E402  (bench/, the script's folder, is on sys.path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "documents" / "samples" / "files")])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=800)
    parser.add_argument("--overlap", type=int, default=48)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    run = _record.start()

    from documents.services import chunking, extraction, tokens

    files = []
    for raw in args.paths:
        p = Path(raw)
        files += sorted(x for x in (p.rglob("*") if p.is_dir() else [p])
                        if x.suffix.lower() in extraction.SUPPORTED_TYPES)
    counter = tokens.token_counter(args.model or str(tokens.default_model_path()))
    budget = counter.budget(args.max_tokens)
    limits = dict(max_bytes=1 << 30, max_unpacked=1 << 31, max_ratio=1000)
    print(f"{len(files)} files, model {Path(counter.model_path).name}, chunk budget {budget} tokens")
    rounds = []
    per_kind = defaultdict(float)
    for r in range(args.rounds):
        started, n_chunks = time.perf_counter(), 0
        for path in files:
            t = time.perf_counter()
            doc = extraction.extract(path, path.name, **limits)
            _, drafts = chunking.chunk_sections(doc.sections, counter.count, max_tokens=budget,
                                                overlap=min(args.overlap, budget // 4))
            n_chunks += len(drafts)
            if r > 0:
                per_kind[path.suffix.lower()] += time.perf_counter() - t
        seconds = time.perf_counter() - started
        rounds.append((seconds, n_chunks))
        print(f"round {r + 1}: {seconds:.2f} s, {len(files) / seconds:.2f} docs/s, {n_chunks / seconds:.1f} chunks/s")
    warm = rounds[1:] or rounds
    secs = sum(s for s, _ in warm)
    chunks = sum(c for _, c in warm)
    docs = len(files) * len(warm)
    print(f"warm: {docs / secs:.2f} docs/s, {chunks / secs:.1f} chunks/s ({chunks // len(warm)} chunks per round)")
    per_format = {}
    if per_kind:
        counts = defaultdict(int)
        for f in files:
            counts[f.suffix.lower()] += 1
        per_format = {k: round(per_kind[k] / (counts[k] * len(warm)), 4) for k in sorted(per_kind)}
        print("warm seconds per file by format: " + ", ".join(f"{k} {v:.3f}" for k, v in per_format.items()))
    _record.save("ingest-speed", {
        "files": len(files), "model": "/".join(Path(counter.model_path).parts[-2:]), "chunk_budget_tokens": budget,
        "rounds": [{"seconds": round(s, 3), "chunks": c} for s, c in rounds],
        "warm": {"docs_per_s": round(docs / secs, 2), "chunks_per_s": round(chunks / secs, 1),
                 "chunks_per_round": chunks // len(warm)},
        "warm_seconds_per_file_by_format": per_format,
    }, run)


if __name__ == "__main__":
    main()
