"""Does hybrid calibration hold on questions it never saw? Re-splits of
UIT-ViCoV19QA (research use only; read from ../shared, never copied).

    .venv/bin/python bench/calibration_resplits.py [--model PATH …] [--resplits 200] [--calibration 100]

For each model: the vicov19qa corpus (every unique answer) in a scratch
database, the model's vectors (cached under var/bench-cache, keyed by the
model's weights and the passages; search.evaluation.corpus.prepare_space), then, for the 1,000 val + test questions, the
vector and keyword candidates (depth 200) and every fusion point's per-query
metrics, once. Each re-split draws `--calibration` questions to calibrate on
and keeps the others as held-out; on the held-out questions it compares:

- **old**: the previous procedure — the best point of a grid with min-max
  score fusion and RRF, taken as it is;
- **new**: search.evaluation.calibration.decide — the robust default (RRF k=60
  weighted toward the stronger mode) unless the grid's best point wins beyond
  a paired-bootstrap 95% interval;

against the best single mode on the same held-out questions (chosen with
hindsight: the promise is "never below it"). Writes bench/results/
calibration-resplits.json (with its commit, machine and date: bench/_record.py)
and the histogram var/bench/calibration-resplits.png.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import _record  # noqa: E402

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from search.evaluation import calibration as cal  # noqa: E402
from search.evaluation import corpus as qa  # noqa: E402
from search.evaluation.runner import ChunkInfo  # noqa: E402
from search.evaluation.scratch import scratch_database  # noqa: E402

METRIC = "MRR@10"


def old_grid_points():
    """The previous grid: min-max score fusion and RRF, same shares, k and depths."""
    for depth in cal.DEPTHS:
        for method in ("rrf", "score"):
            for k in (cal.RRF_KS if method == "rrf" else (60,)):
                for share in cal.VECTOR_SHARES:
                    yield cal.point(method, share, k, depth)


def collected_rows(model_path: str, data: qa.QACorpus, chunk_ids: list[int], questions) -> tuple[list, float]:
    """The questions' vector and keyword candidates (depth 200) with this model:
    from var/bench-cache when this model, corpus and questions were collected
    before, else retrieved (and cached). Returns (rows, encoding seconds)."""
    from search.evaluation.models import EvaluationSet

    cache = qa.vector_cache_path(model_path, data.passages).with_suffix(
        f".candidates-{qa._digest(*(q for q, _ in questions))}.pkl")
    if cache.exists():
        print(f"{Path(model_path).name}: candidates from {cache}", flush=True)
        return pickle.loads(cache.read_bytes()), 0.0
    space, perf = qa.prepare_space(model_path, name=f"bench-{Path(model_path).name[:40]}", passages=data.passages,
                                   chunk_ids=chunk_ids)
    print(f"{Path(model_path).name}: vectors ready ({perf})", flush=True)
    evaluation_set = qa.make_set(f"resplit-{space.pk}", questions, chunk_ids)
    started = time.perf_counter()
    rows = [(SimpleNamespace(query=item.query, relevant_chunks=list(item.relevant_chunks),
                             relevant_documents=list(item.relevant_documents), grades=dict(item.grades or {})),
             *rest) for item, *rest in cal.collect(evaluation_set, space, depth=max(cal.DEPTHS))]
    print(f"  candidates retrieved in {time.perf_counter() - started:.0f}s", flush=True)
    EvaluationSet.objects.filter(pk=evaluation_set.pk).delete()
    cache.write_bytes(pickle.dumps(rows))
    return rows, perf.get("corpus_encode_s", 0.0)


def evaluate_model(model_path: str, data: qa.QACorpus, chunk_ids: list[int], questions, args) -> dict:
    collected, encode_s = collected_rows(model_path, data, chunk_ids, questions)
    info = ChunkInfo()
    new_points, old_points = list(cal.grid_points()), list(old_grid_points())
    new_scores = cal.GridScores(collected, info)
    old_scores = cal.GridScores(collected, info)

    col = cal.METRICS.index(METRIC)
    rng = np.random.default_rng(args.seed)
    n = len(collected)
    rows = []
    for r in range(args.resplits):
        order = rng.permutation(n)
        calib, held = order[:args.calibration], order[args.calibration:]
        new = cal.decide(new_points, new_scores, rows=calib, seed=r)
        old = max(old_points, key=lambda p: tuple(old_scores(p)[calib].mean(axis=0)[[col, 1, 2]]))

        def held_score(scores, p):
            return float(scores(p)[held, col].mean())

        vector_only = max(held_score(new_scores, p) for p in new_points if p["vector_share"] == 1.0)
        keyword_only = max(held_score(new_scores, p) for p in new_points if p["vector_share"] == 0.0)
        best_single = max(vector_only, keyword_only)
        rows.append({"new": held_score(new_scores, new["chosen"]), "old": held_score(old_scores, old),
                     "default": held_score(new_scores, new["default"]), "best_single": best_single,
                     "vector_only": vector_only, "keyword_only": keyword_only,
                     "adopted_grid_best": new["chosen"]["adopted_grid_best"],
                     "old_fusion": old["fusion"], "new_share": new["chosen"]["vector_share"]})
    full = cal.decide(new_points, new_scores)

    def summary(name):
        diff = np.array([row[name] - row["best_single"] for row in rows])
        return {"mean_vs_best_single": round(float(diff.mean()), 4),
                "lost_share": round(float(np.mean(diff < -1e-9)), 3),
                "lost_by_more_than_0.01": round(float(np.mean(diff < -0.01)), 3),
                "mean_held_out": round(float(np.mean([row[name] for row in rows])), 4)}

    return {"model": model_path, "questions": n, "encode_s": round(encode_s, 1),
            "all_questions": {k: full[k][METRIC] for k in ("vector_only", "keyword_only", "default", "best")}
            | {"bootstrap": full["bootstrap"], "chosen_share": full["chosen"]["vector_share"]},
            "old": summary("old"), "new": summary("new"), "default": summary("default"),
            "adopted_grid_best_share": round(float(np.mean([row["adopted_grid_best"] for row in rows])), 3),
            "old_picked_score_fusion_share": round(float(np.mean([row["old_fusion"] == "score" for row in rows])), 3),
            "resplits": rows}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        for name, colour in (("old", "tab:red"), ("new", "tab:blue")):
            diff = [row[name] - row["best_single"] for row in res["resplits"]]
            ax.hist(diff, bins=30, alpha=0.6, color=colour,
                    label=f"{name}: lost {res[name]['lost_share']:.0%}, mean {res[name]['mean_vs_best_single']:+.3f}")
        ax.axvline(0, color="black", linewidth=1)
        name = Path(res["model"]).name if Path(res["model"]).name != "model" else Path(res["model"]).parent.name
        ax.set_title(f"{name}: held-out {METRIC} − best single mode")
        ax.set_xlabel(f"{METRIC} difference on the held-out questions")
        ax.set_ylabel("re-splits")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from documents.services.tokens import default_model_path
    from search.services import keyword_engine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--resplits", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--exponent", type=float, default=cal.WEAKER_SIDE_EXPONENT,
                        help="the robust default's weaker-side exponent (to compare variants)")
    parser.add_argument("--plot", default=str(ROOT / "var" / "bench" / "calibration-resplits.png"))
    args = parser.parse_args()
    run = _record.start()
    cal.WEAKER_SIDE_EXPONENT = args.exponent
    from portal import embedded

    embedded.start_configured(settings)  # settings start nothing; a benchmark is an entry point
    models = args.model or [str(Path(settings.VAR_DIR) / "models" / "multilingual-e5-small"),
                            str(default_model_path())]
    data = qa.load_vicov19qa([qa.default_dataset_path()])
    questions = data.questions("val") + data.questions("test")
    results = []
    with scratch_database():
        chunk_ids = qa.build_documents(data.passages, prefix="VICOV")
        keyword_engine.rebuild()
        for model in models:
            results.append(evaluate_model(model, data, chunk_ids, questions, args))
            r = results[-1]
            print(f"  all {r['questions']} questions: {r['all_questions']}")
            for name in ("old", "new", "default"):
                print(f"  {name:8} {r[name]}")
            print(f"  new adopted the grid's best in {r['adopted_grid_best_share']:.0%} of re-splits; old picked "
                  f"min-max score fusion in {r['old_picked_score_fusion_share']:.0%}", flush=True)
    plot_path = Path(args.plot)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plot_path)
    name = "calibration-resplits" + ("" if args.exponent == 4 else f"-exponent-{args.exponent:g}")
    _record.save(name, {
        "resplits": args.resplits, "calibration_questions": args.calibration, "seed": args.seed,
        "weaker_side_exponent": args.exponent,
        "plot": str(plot_path), "results": [{k: v for k, v in r.items() if k != "resplits"} for r in results]}, run)


if __name__ == "__main__":
    main()
