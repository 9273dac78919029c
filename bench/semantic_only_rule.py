"""Where should hybrid search apply the semantic-only floor: to each passage,
or to the query? Measured on UIT-ViCoV19QA (research use only; read from
../shared, never copied), in one run, on the same retrieved candidates.

    .venv/bin/python bench/semantic_only_rule.py [--model PATH …]

For each model: the vicov19qa corpus in a scratch database, the model's
vectors (var/bench-cache), the floors calibrated on val as `evaluate_corpus
--calibrate-on val` does, then the val and test questions' unfloored vector
and keyword candidates (depth 200) and the off-topic probes' candidates, once.
Each rule then floors the same candidates; the fusion is calibrated on val
under that rule (search.evaluation.calibration.decide) and scored on test:

- **passage** (the portal's rule, search.services.relevance.admitted_by_meaning):
  a vector neighbour with no keyword hit of its own must reach the
  semantic-only floor;
- **query** (measured, not adopted): a query with no
  keyword evidence at all gets vector results only when its best passage
  reaches the floor; otherwise every neighbour above the similarity floor stays;
- **clear winner** (the portal's rule since 2026-12-02): per passage, except
  for a query whose best neighbour is more similar than its 10th by the
  space's `vector_gap_floor` (calibrated on the probes), which keeps every
  neighbour above the similarity floor;
- **none**: no semantic-only floor (the similarity floor alone).

Also: how many probes each rule turns away (an empty hybrid list). Writes
bench/results/semantic-only-rule.json (bench/_record.py) and a bar plot
var/bench/semantic-only-rule.png.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
from search.evaluation import floors as fl  # noqa: E402
from search.evaluation import metrics as m  # noqa: E402
from search.evaluation.runner import ChunkInfo, ranking_for, relevance  # noqa: E402
from search.evaluation.scratch import scratch_database  # noqa: E402
from search.services import fusion  # noqa: E402
from search.services.relevance import admitted_by_meaning  # noqa: E402


def query_rule(vector, keyword, floor):
    """The floor answers "is anything here about this question?" once per
    query: a query with any keyword evidence keeps all its neighbours."""
    if floor is None or keyword or not vector:
        return vector
    return vector if max(s for _, s in vector) >= floor else []


def no_rule(vector, keyword, floor):
    return vector


RULES = {"passage": admitted_by_meaning, "clear winner": admitted_by_meaning, "query": query_rule, "none": no_rule}
WITH_GAP = {"clear winner"}  # the passage rule, lifted for a query with a clear winner (the space's gap floor)


def use_rule(rule) -> None:
    cal.admitted_by_meaning = rule  # calibration.floored calls it by this name


def rows_for(space, name, questions, chunk_ids):
    evaluation_set = qa.make_set(name, questions, chunk_ids)
    return cal.collect(evaluation_set, space, depth=max(cal.DEPTHS))


def test_scores(point, rows, info, floors):
    per_mode = max(100, point["candidate_depth"])
    mrr, rec, hit1, empty = [], [], [], 0
    for row in rows:
        vector, keyword = cal.floored(row, floors, per_mode)
        fused = fusion.fuse(vector, keyword, method=point["fusion"], vector_weight=point["vector_weight"],
                            keyword_weight=point["keyword_weight"], rrf_k=point["rrf_k"])[:100]
        empty += not fused
        ranking, rel = ranking_for(row[0], fused, info), relevance(row[0])
        mrr.append(m.reciprocal_rank(ranking, rel, 10))
        rec.append(m.recall(ranking, rel, 100))
        hit1.append(m.hit(ranking, rel, 1))
    return {"MRR@10": round(float(np.mean(mrr)), 4), "Recall@100": round(float(np.mean(rec)), 4),
            "Hit@1": round(float(np.mean(hit1)), 4), "empty_lists": empty}


def probes_turned_away(space, probes, floors):
    from search.evaluation.runner import evaluation_scope
    from search.services import keyword_index
    from search.services.relevance import keyword_coverage
    from search.services.retrieval import vector_candidates

    scope = evaluation_scope(None)
    rows = []
    for probe in probes:
        vector = vector_candidates(space, probe, scope, 100)
        keyword = keyword_index.keyword_search(probe, scope.allowed_sql, scope.params, limit=100)
        rows.append((probe, vector, keyword, keyword_coverage(probe, [c for c, _ in keyword])))
    out = {}
    for name, rule in RULES.items():
        use_rule(rule)
        used = floors if name in WITH_GAP else floors[:3]
        out[name] = sum(1 for row in rows if not any(cal.floored(row, used, 100)))
    return out


def evaluate_model(model_path, data, chunk_ids):
    space, perf = qa.prepare_space(model_path, name=f"rule-{Path(model_path).name[:40]}", passages=data.passages,
                                   chunk_ids=chunk_ids)
    print(f"{model_path}: vectors ready ({perf})", flush=True)
    floors_record = fl.calibrate_floors(qa.make_set("rule-floors", data.questions("val"), chunk_ids), space)
    space.refresh_from_db()
    floors = (space.similarity_floor, space.keyword_floor, space.semantic_only_floor, space.vector_gap_floor)
    print(f"  floors {floors}", flush=True)
    val = rows_for(space, "rule-val", data.questions("val"), chunk_ids)
    test = rows_for(space, "rule-test", data.questions("test"), chunk_ids)
    info = ChunkInfo()
    probes = fl.probe_queries()
    out = {"model": model_path, "floors": dict(zip(("similarity", "keyword", "semantic_only", "vector_gap"), floors)),
           "floors_record": floors_record, "val_questions": len(val), "test_questions": len(test),
           "probes": len(probes), "probes_turned_away": probes_turned_away(space, probes, floors), "rules": {}}
    vector_only = cal.point("rrf", 1.0, 60, 100)
    use_rule(no_rule)
    out["vector_alone_test"] = test_scores(vector_only, test, info, (floors[0], None, None))
    for name, rule in RULES.items():
        use_rule(rule)
        used = floors if name in WITH_GAP else floors[:3]
        decided = cal.decide(list(cal.grid_points()), cal.GridScores(val, info, floors=used))
        chosen = decided["chosen"]
        out["rules"][name] = {"chosen": {k: chosen[k] for k in ("fusion", "rrf_k", "vector_share",
                                                                 "candidate_depth", "adopted_grid_best")},
                              "val_MRR@10": chosen["score"], "test": test_scores(chosen, test, info, used)}
        print(f"  {name:8} val {chosen['score']:.4f}  test {out['rules'][name]['test']}", flush=True)
    print(f"  vector alone (similarity floor) test {out['vector_alone_test']}; probes turned away "
          f"{out['probes_turned_away']} of {len(probes)}", flush=True)
    return out


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(results)
    for i, res in enumerate(results):
        label = Path(res["model"]).name
        xs = np.arange(len(RULES)) + i * width
        for ax, metric in zip(axes, ("MRR@10", "Recall@100")):
            values = [res["rules"][r]["test"][metric] for r in RULES]
            ax.bar(xs, values, width, label=label)
            ax.axhline(res["vector_alone_test"][metric], color=f"C{i}", linestyle="--", linewidth=1)
            ax.set_xticks(np.arange(len(RULES)) + width * (len(results) - 1) / 2, list(RULES))
            ax.set_title(f"vicov19qa test, hybrid {metric} (dashed: vector alone)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from search.services import keyword_engine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--plot", default=str(ROOT / "var" / "bench" / "semantic-only-rule.png"))
    args = parser.parse_args()
    run = _record.start()
    from portal import embedded

    embedded.start_configured(settings)
    models = args.model or [str(Path(settings.VAR_DIR) / "models" / "multilingual-e5-small")]
    data = qa.load_vicov19qa([qa.default_dataset_path()])
    results = []
    with scratch_database():
        chunk_ids = qa.build_documents(data.passages, prefix="VICOV")
        keyword_engine.rebuild()
        for model in models:
            results.append(evaluate_model(model, data, chunk_ids))
    use_rule(admitted_by_meaning)
    plot_path = Path(args.plot)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plot_path)
    _record.save("semantic-only-rule", {"plot": str(plot_path), "results": results}, run)


if __name__ == "__main__":
    main()
