"""How should a space's relevance floors be chosen so that they hold beyond the
set they were calibrated on? Measured on the sample corpus, in one run, on the
same candidates.

    .venv/bin/python bench/floor_rules.py [--space NAME] [--calibrate-on samples] [--evaluate-on samples-guard]

Works on the portal's own database as `bin/run` leaves it (the sample corpus
loaded, the active space embedded); changes nothing there (the floors are
computed, never saved). The calibration set's statistics are measured once
(search.evaluation.floors: the answers' scores, the probes' best scores, the
near misses), and the evaluation set's unfloored candidates are collected once,
as every ready document's reader (clearance 3) and as an anonymous visitor
(public documents only). Each rule turns the same statistics into floors; the
fusion is decided on the calibration set under those floors (as
`calibrate_hybrid` does) and the evaluation set is scored with them:

- **answers** (the portal's rule until this bench): each floor at the
  calibration answers' 2% quantile (keyword capped at 0.5), the semantic-only
  floor at the near misses' 95% quantile;
- **answers, vector gap** (the portal's rule since): the same floors, and a
  query whose best vector neighbour stands out from its 10th more than every
  probe's does (search.evaluation.floors.choose_gap_floor) keeps every
  neighbour above the similarity floor; any other query applies the
  semantic-only floor passage by passage;
- **probes**: each floor as low as turns away 95% of the off-topic probes, and
  never above the answers' 2% quantile; the semantic-only floor as before;
- **probes, per document**: the probes' floors; a passage found by meaning
  alone is kept when another passage of its document is a keyword hit, else
  it must reach the semantic-only floor;
- **probes, per query**: the probes' floors; a query with any keyword hit keeps
  all its vector neighbours, one without keeps them only when its best reaches
  the semantic-only floor;
- **probes, vector gap**: the probes' floors and the clear-winner gap;
- **probes, no semantic-only**: the probes' floors, and no bar for a passage
  found by meaning alone (the similarity floor still applies to it);
- **none**: no floors.

Reported per rule: hybrid MRR@10 / Hit@10 / Recall@100 on the evaluation set;
how many probes still get results, and which of some held-out off-topic
questions (not among the probes) do; and, for the evaluation questions whose
answer is in a document the anonymous visitor may not read, how many of the
visitor's lists are empty ("nothing you may read answers this"). Writes
bench/results/floor-rules.json (bench/_record.py) and var/bench/floor-rules.png.
"""
from __future__ import annotations

import argparse
import math
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
from search.evaluation import floors as fl  # noqa: E402
from search.evaluation import metrics as m  # noqa: E402
from search.evaluation.runner import ChunkInfo, evaluation_scope, ranking_for, relevance  # noqa: E402
from search.services import fusion, keyword_index  # noqa: E402
from search.services.relevance import keyword_coverage, vector_gap  # noqa: E402
from search.services.retrieval import vector_candidates  # noqa: E402


# Off-topic questions that are NOT among the calibration probes (floors.OFF_TOPIC):
# tests/test_nothing_found.py's, and more of the kind an employee might type.
HELD_OUT_OFF_TOPIC = [
    "zzzxqv", "qwpx vbnm trk", "ầầầ ưưư", "cách nấu canh chua cá lóc", "kết quả trận đấu tối qua",
    "tin tức showbiz hôm nay", "học tiếng Nhật cho người mới bắt đầu", "cách làm thẻ căn cước công dân",
    "giá xe máy Honda Vision", "review điện thoại iPhone mới", "công thức tính diện tích hình tròn",
    "mẹo giảm cân nhanh", "thủ tục đăng ký kết hôn", "cách sửa vòi nước bị rỉ", "tỷ giá đô la hôm nay",
]


def quantile(values, q):
    return float(np.quantile(np.asarray(values), q)) if values else None


def answers_quantile(values):
    return sorted(values)[math.floor(fl.ANSWER_LOSS * len(values) + 1e-9)] if values else None


def floor_down(x):
    return None if x is None else math.floor(x * 10_000) / 10_000


def rules(stats: dict) -> dict:
    sims = [s for s, _ in stats["answers"] if s is not None]
    covs = [c for _, c in stats["answers"] if c is not None]
    sim_a, cov_a = answers_quantile(sims), min(answers_quantile(covs), fl.KEYWORD_FLOOR_CAP)
    # the lowest floor that turns away PROBE_REJECTION of the probes: just above their quantile
    sim_p = min(sim_a, quantile(stats["probe_sims"], fl.PROBE_REJECTION) + 1e-4)
    cov_p = min(cov_a, quantile(stats["probe_covs"], fl.PROBE_REJECTION) + 1e-4)
    near = quantile(stats["near_misses"], fl.PROBE_REJECTION)
    return {
        "answers": (floor_down(sim_a), floor_down(cov_a), round(max(sim_a, near), 4)),
        "answers, vector gap": (floor_down(sim_a), floor_down(cov_a), round(max(sim_a, near), 4)),
        "probes": (floor_down(sim_p), floor_down(cov_p), round(max(sim_p, near), 4)),
        "probes, per document": (floor_down(sim_p), floor_down(cov_p), round(max(sim_p, near), 4)),
        "probes, per query": (floor_down(sim_p), floor_down(cov_p), round(max(sim_p, near), 4)),
        "probes, vector gap": (floor_down(sim_p), floor_down(cov_p), round(max(sim_p, near), 4)),
        "probes, no semantic-only": (floor_down(sim_p), floor_down(cov_p), None),
        "none": (None, None, None),
    }


_DOCUMENT_OF: dict[int, int] = {}


def document_of(chunk_ids) -> dict:
    from documents.models import Chunk

    missing = [c for c in chunk_ids if c not in _DOCUMENT_OF]
    if missing:
        _DOCUMENT_OF.update(Chunk.objects.filter(pk__in=missing).values_list("pk", "document_id"))
    return _DOCUMENT_OF


def per_query(vector, keyword, floor):
    """A query with keyword evidence keeps every neighbour; one without keeps them
    only when its best reaches the floor (bench/semantic_only_rule.py's "query")."""
    if floor is None or keyword or not vector:
        return vector
    return vector if max(s for _, s in vector) >= floor else []


def per_document(vector, keyword, floor):
    """A neighbour with no keyword hit of its own is kept when another passage of
    its document is a keyword hit, or when it reaches the floor."""
    if floor is None:
        return vector
    docs = document_of([c for c, _ in vector] + [c for c, _ in keyword])
    evidence = {c for c, _ in keyword}
    evidence_docs = {docs.get(c) for c in evidence}
    return [(c, s) for c, s in vector if c in evidence or docs.get(c) in evidence_docs or s >= floor]


ADMISSION = {"passage": cal.admitted_by_meaning, "query": per_query, "document": per_document}


def row_gap(row) -> float:
    return vector_gap(row[1])


def hybrid(row, floors, p):
    vector, keyword = cal.floored(row, floors, max(100, p["candidate_depth"]))
    return fusion.fuse(vector, keyword, method=p["fusion"], vector_weight=p["vector_weight"],
                       keyword_weight=p["keyword_weight"], rrf_k=p["rrf_k"])[:100]


def scores(rows, floors, p, info) -> dict:
    mrr, hit10, rec = [], [], []
    for row in rows:
        ranking, rel = ranking_for(row[0], hybrid(row, floors, p), info), relevance(row[0])
        mrr.append(m.reciprocal_rank(ranking, rel, 10))
        hit10.append(m.hit(ranking, rel, 10))
        rec.append(m.recall(ranking, rel, 100))
    return {"MRR@10": round(float(np.mean(mrr)), 4), "Hit@10": round(float(np.mean(hit10)), 4),
            "Recall@100": round(float(np.mean(rec)), 4), "questions": len(rows)}


def probe_rows(space, probes):
    scope = evaluation_scope(None)
    out = []
    for probe in probes:
        vector = vector_candidates(space, probe, scope, 200)
        keyword = keyword_index.keyword_search(probe, scope.allowed_sql, scope.params, limit=200)
        out.append((probe, vector, keyword, keyword_coverage(probe, [c for c, _ in keyword])))
    return out


def hidden_answer_rows(rows_anonymous):
    """The anonymous visitor's rows whose relevant chunks are all in documents the
    visitor may not read (documents.selectors.visible_documents, the access function)."""
    from django.contrib.auth.models import AnonymousUser

    from documents.models import Chunk
    from documents.selectors import visible_documents

    readable = set(visible_documents(AnonymousUser()).values_list("pk", flat=True))
    out = []
    for row in rows_anonymous:
        documents = set(Chunk.objects.filter(pk__in=fl._relevant_chunk_ids(row[0]))
                        .values_list("document_id", flat=True))
        if documents and not documents & readable:
            out.append(row)
    return out


def plot(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["rules"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    x = np.arange(len(names))
    for i, metric in enumerate(("MRR@10", "Hit@10", "Recall@100")):
        axes[0].bar(x + (i - 1) * 0.27, [result["rules"][n]["evaluation"][metric] for n in names], 0.27, label=metric)
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_title(f"hybrid on {result['evaluate_on']} (floors from {result['calibrate_on']})")
    axes[0].legend(fontsize=8)
    axes[1].bar(x, [result["rules"][n]["probes_answered"] for n in names], color="#c63")
    axes[1].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[1].set_title(f"off-topic probes that get results (of {result['probes']})")
    axes[2].bar(x, [result["rules"][n]["hidden_answer_empty"] for n in names], color="#2a6")
    axes[2].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[2].set_title(f"anonymous, answer not readable: empty lists (of {result['hidden_answer_questions']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    from django.contrib.auth.models import AnonymousUser

    from search.evaluation.models import EvaluationSet
    from search.models import EmbeddingSpace

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=None, help="default: the active space")
    parser.add_argument("--calibrate-on", default="samples")
    parser.add_argument("--evaluate-on", default="samples-guard")
    parser.add_argument("--plot", default=str(ROOT / "var" / "bench" / "floor-rules.png"))
    args = parser.parse_args()
    run = _record.start()
    from portal import embedded

    embedded.start_configured(settings)
    space = (EmbeddingSpace.objects.get(name=args.space) if args.space
             else EmbeddingSpace.objects.get(status="active"))
    calibration = EvaluationSet.objects.get(name=args.calibrate_on)
    evaluation = EvaluationSet.objects.get(name=args.evaluate_on)
    scope = evaluation_scope(None)
    probes = fl.probe_queries()
    probe_sims, probe_covs, _ = fl.probe_scores(space, scope, probes)
    stats = {"answers": fl.answer_scores(calibration, space), "probe_sims": probe_sims, "probe_covs": probe_covs,
             "near_misses": fl.near_miss_similarities(calibration, space, scope)}
    print(f"calibration statistics measured on {calibration.name} ({len(stats['answers'])} answers)", flush=True)
    calibration_rows = cal.collect(calibration, space, depth=max(cal.DEPTHS))
    evaluation_rows = cal.collect(evaluation, space, depth=max(cal.DEPTHS))
    anonymous_rows = cal.collect(evaluation, space, user=AnonymousUser(), depth=max(cal.DEPTHS))
    info = ChunkInfo()
    hidden = hidden_answer_rows(anonymous_rows)
    probing = probe_rows(space, probes)
    held_out = probe_rows(space, HELD_OUT_OFF_TOPIC)
    evaluation_answers = fl.answer_scores(evaluation, space)
    result = {"space": space.name, "model": space.model_path, "calibrate_on": calibration.name,
              "evaluate_on": evaluation.name, "probes": len(probes), "hidden_answer_questions": len(hidden),
              "held_out_off_topic": len(HELD_OUT_OFF_TOPIC),
              "rules": {}}
    gap_floor = fl.choose_gap_floor([row_gap(row) for row in probing], [], 1.0)["floor"]  # the product's rule
    result["vector_gap_floor"] = gap_floor
    for name, floors in rules(stats).items():
        cal.admitted_by_meaning = ADMISSION[name.split(", per ")[1] if ", per " in name else "passage"]
        if name.endswith("vector gap"):
            floors = floors + (gap_floor,)  # search.services.relevance.semantic_only_bar, as search applies it
        decided = cal.decide(list(cal.grid_points()), cal.GridScores(calibration_rows, info, floors=floors))
        chosen = decided["chosen"]
        sim, kw, sem, *gap = floors
        kept = [(s is not None and sim is not None and s >= sim) or sim is None for s, _ in evaluation_answers]
        result["rules"][name] = {
            "floors": {"similarity": sim, "keyword": kw, "semantic_only": sem, "vector_gap": gap[0] if gap else None},
            "fusion": {k: chosen[k] for k in ("fusion", "rrf_k", "vector_share", "candidate_depth")},
            "calibration": scores(calibration_rows, floors, chosen, info),
            "evaluation": scores(evaluation_rows, floors, chosen, info),
            "evaluation_answers_above_similarity_floor": round(float(np.mean(kept)), 4),
            "probes_answered": sum(1 for row in probing if hybrid(row, floors, chosen)),
            "held_out_off_topic_answered": [row[0] for row in held_out if hybrid(row, floors, chosen)],
            "hidden_answer_empty": sum(1 for row in hidden if not hybrid(row, floors, chosen)),
        }
        print(f"{name:26} floors {floors}  {result['rules'][name]['evaluation']}  probes answered "
              f"{result['rules'][name]['probes_answered']}/{len(probes)}, held out "
              f"{len(result['rules'][name]['held_out_off_topic_answered'])}/{len(HELD_OUT_OFF_TOPIC)}; hidden-answer empty "
              f"{result['rules'][name]['hidden_answer_empty']}/{len(hidden)}", flush=True)
    cal.admitted_by_meaning = ADMISSION["passage"]
    plot_path = Path(args.plot)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(result, plot_path)
    result["plot"] = str(plot_path)
    _record.save("floor-rules", result, run)


if __name__ == "__main__":
    main()
