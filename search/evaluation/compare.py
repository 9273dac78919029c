"""Several models side by side on one evaluation set, and a recommendation.

A model is an existing space (by name) or a sentence-transformers folder; a
folder gets a temporary space that is embedded, evaluated and removed again.
Storage per million chunks = dimension·4 B·1e6 for the vectors in the table,
plus an HNSW estimate: pgvector keeps a copy of each vector in the index and,
with m = 16, up to 2m = 32 neighbour pointers (6 B) on layer 0 plus upper
layers and tuple headers: ≈ dimension·4 + 240 B per row.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from search.evaluation import runner
from search.models import EmbeddingSpace
from search.services import embedding, spaces

HNSW_ROW_OVERHEAD = 240  # bytes per row besides the vector copy (m = 16)
MRR_TOLERANCE = 0.01  # models this close to the best MRR@10 are "as accurate"


def storage_per_million(dimension: int) -> dict:
    vectors = dimension * 4 * 10**6
    index = (dimension * 4 + HNSW_ROW_OVERHEAD) * 10**6
    return {"vectors_gb": round(vectors / 1e9, 2), "hnsw_gb": round(index / 1e9, 2),
            "total_gb": round((vectors + index) / 1e9, 2)}


def resolve(spec: str, progress=None) -> tuple[EmbeddingSpace, bool]:
    """(space, temporary?) for a space name or a model folder."""
    space = EmbeddingSpace.objects.filter(name=spec).first()
    if space is not None:
        if embedding.missing_chunks(space).exists():
            embedding.backfill(space, progress=progress)
        return space, False
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"{spec!r} is neither a space nor a model folder")
    slug = re.sub(r"[^a-z0-9-]+", "-", path.name.lower()).strip("-")[:40] or "model"
    name = f"cmp-{slug}-{os.getpid()}"
    EmbeddingSpace.objects.filter(name=name).delete()
    space = spaces.create_space(name, str(path))
    embedding.backfill(space, progress=progress)
    space.refresh_from_db()
    return space, True


def discard(space: EmbeddingSpace) -> None:
    spaces.drop_index(space)
    space.delete()


def compare(evaluation_set, specs: list[str], *, mode: str = "vector", user=None, depth: int = 100,
            name: str = "", progress=None, log=print) -> tuple[list, dict]:
    """Evaluate each model; returns (runs, comparison dict for the report)."""
    runs, temporary = [], []
    try:
        for spec in specs:
            log(f"model {spec}: preparing")
            space, temp = resolve(spec, progress=progress)
            if temp:
                temporary.append(space)
            log(f"model {spec}: evaluating {mode} on {evaluation_set.name}")
            run = runner.evaluate(evaluation_set, space, mode, as_user=user, depth=depth, name=name)
            run.space_name = spec if temp else space.name
            run.save(update_fields=["space_name"])
            runs.append(run)
        return runs, recommend(runs)
    finally:
        for space in temporary:
            discard(space)


def recommend(runs) -> dict:
    columns = ["model", "dimension", "MRR@10", "Hit@1", "nDCG@10", "latency p50 ms", "encode passages/s",
               "load s", "model MB", "peak RSS MB", "storage GB / 1M chunks"]
    rows, facts = [], []
    for run in runs:
        p, mt = run.performance, run.metrics
        dim = int(p.get("dimension") or (run.space.dimension if run.space else 0))
        storage = storage_per_million(dim)
        facts.append({"run": run, "name": run.space_name, "mrr": mt.get("MRR@10", 0), "hit1": mt.get("Hit@1", 0),
                      "dim": dim, "latency": p.get("latency_p50_ms") or 0, "speed": p.get("encode_passages_per_s")
                      or 0, "memory": p.get("model_memory_mb") or 0, "storage": storage["total_gb"]})
        rows.append([run.space_name, dim, f"{mt.get('MRR@10', 0):.4f}", f"{mt.get('Hit@1', 0):.4f}",
                     f"{mt.get('nDCG@10', 0):.4f}", p.get("latency_p50_ms"), p.get("encode_passages_per_s"),
                     p.get("model_load_s"), p.get("model_memory_mb"), p.get("peak_rss_mb"), storage["total_gb"]])
    if not facts:
        return {"columns": columns, "rows": rows, "recommendation": "nothing evaluated", "reasons": []}
    top = max(facts, key=lambda f: f["mrr"])
    close = [f for f in facts if f["mrr"] >= top["mrr"] - MRR_TOLERANCE]
    choice = min(close, key=lambda f: (f["storage"], f["latency"], -f["mrr"]))
    reasons = []
    if choice is top:
        reasons.append(f"accuracy: best MRR@10 {choice['mrr']:.4f} (Hit@1 {choice['hit1']:.4f})")
    else:
        reasons.append(f"accuracy: MRR@10 {choice['mrr']:.4f}, within {MRR_TOLERANCE} of the best "
                       f"({top['name']}: {top['mrr']:.4f})")
    for f in facts:
        if f is choice:
            continue
        diff = choice["mrr"] - f["mrr"]
        reasons.append(f"vs {f['name']}: MRR@10 {diff:+.4f}, query latency {choice['latency']:.1f} vs "
                       f"{f['latency']:.1f} ms, encoding {choice['speed']} vs {f['speed']} passages/s, "
                       f"model memory {choice['memory']} vs {f['memory']} MB, storage {choice['storage']} vs "
                       f"{f['storage']} GB per million chunks ({choice['dim']} vs {f['dim']} dims)")
    reasons.append(f"storage: {choice['storage']} GB per million chunks "
                   f"({choice['dim']} dims × 4 B + HNSW ≈ {HNSW_ROW_OVERHEAD} B/row + a vector copy)")
    return {"columns": columns, "rows": rows, "recommendation": f"{choice['name']}", "reasons": reasons,
            "choice": choice["name"]}
