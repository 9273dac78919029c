"""Reports: performance_metrics.json and a self-contained HTML page (tables,
matplotlib plots embedded as base64 PNG, nothing fetched at view time) in
settings.VAR_DIR / "reports" / <name>."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from search.evaluation.models import EvaluationRun

CHART_METRICS = ("MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10", "MAP@10")
WORST = 20


def report_dir(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "report"
    return Path(settings.VAR_DIR) / "reports" / safe


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metrics_chart(labels: list[str], rows: list[dict]) -> str:
    import numpy as np

    plt = _pyplot()
    keys = [k for k in CHART_METRICS if any(k in r for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys) * max(1, len(labels)) ** 0.5 + 2), 3.8))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(keys))
    for i, (label, row) in enumerate(zip(labels, rows)):
        values = [row.get(k, 0) for k in keys]
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, keys)
    ax.set_ylim(0, min(1.15, max([0.1] + [r.get(k, 0) for r in rows for k in keys]) * 1.3))
    ax.set_title("Retrieval quality per space and mode")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_chart(labels: list[str], latencies: list[list[float]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(labels) + 1.8))
    data = [lat or [0.0] for lat in latencies]
    ax.boxplot(data, vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.set_xscale("log")
    ax.set_xlabel("query latency (ms, log scale)")
    ax.set_title("Latency distribution")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def calibration_chart(calibration: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    series: dict[str, list[tuple[float, float]]] = {}
    metric = calibration.get("metric", "MRR@10")
    for point in calibration.get("curve", []):
        label = (f"{point['fusion']} k={point['rrf_k']}" if point["fusion"] == "rrf" else point["fusion"]) \
            + f" depth {point['candidate_depth']}"
        series.setdefault(label, []).append((point["vector_share"], point[metric]))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label, linewidth=1)
    for key, style in (("best", {"edgecolors": "grey", "label": "grid's best"}),
                       ("default", {"edgecolors": "blue", "label": "robust default"}),
                       ("chosen", {"edgecolors": "red", "label": "chosen", "s": 200})):
        p = calibration.get(key)
        if p:
            ax.scatter([p["vector_share"]], [p[metric]], **{"s": 120, "facecolors": "none", "zorder": 5, **style})
    ax.set_xlabel("vector weight / (vector + keyword weight)   (0 = keyword only, 1 = vector only)")
    ax.set_ylabel(metric)
    ax.set_title(f"Hybrid calibration on {calibration.get('set', '')}")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def run_summary(run: EvaluationRun, with_queries: bool = True) -> dict:
    out = {"id": run.pk, "label": run.label, "set": run.set_name, "space": run.space_name,
           "model_path": run.model_path, "mode": run.mode, "depth": run.depth,
           "as_user": run.as_user.username if run.as_user else None, "status": run.status,
           "queries": run.query_count, "skipped": run.skipped, "metrics": run.metrics,
           "performance": run.performance, "created_at": run.created_at.isoformat() if run.created_at else None}
    if with_queries:
        out["per_query"] = [
            {"query": r.query, "level": r.level, "relevant": r.relevant, "first_relevant_rank": r.first_relevant_rank,
             "reciprocal_rank": round(r.reciprocal_rank, 4), "ndcg@10": round(r.ndcg_at_10, 4),
             "latency_ms": r.latency_ms, "top": [{k: v for k, v in t.items() if k != "text"} for t in r.top[:5]]}
            for r in run.results.order_by("pk")]
    return out


def worst_queries(run: EvaluationRun, n: int = WORST) -> list[dict]:
    rows = []
    for r in run.results.order_by("reciprocal_rank", "ndcg_at_10", "pk")[:n]:
        above = [t for t in r.top if not t["relevant"] and (r.first_relevant_rank is None
                                                            or t["rank"] < r.first_relevant_rank)]
        rows.append({"query": r.query, "rank": r.first_relevant_rank, "rr": r.reciprocal_rank,
                     "expected": r.expected, "above": above[:3], "more_above": max(0, len(above) - 3)})
    return rows


def write_report(runs: list[EvaluationRun], name: str, *, title: str = "", extra: dict | None = None) -> Path:
    """Write both files for `runs` into reports/<name>; every run remembers the folder."""
    out = report_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    extra = extra or {}
    runs = [EvaluationRun.objects.get(pk=r.pk) for r in runs]
    payload = {"name": name, "title": title or name, "generated_at": timezone.now().isoformat(),
               "runs": [run_summary(r) for r in runs], **extra}
    (out / "performance_metrics.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1, default=str),
                                                  encoding="utf-8")
    done = [r for r in runs if r.status == "done"]
    labels = [r.label for r in done]
    charts = {}
    if done:
        charts["metrics"] = metrics_chart(labels, [r.metrics for r in done])
        charts["latency"] = latency_chart(labels, [list(r.results.values_list("latency_ms", flat=True))
                                                   for r in done])
    if extra.get("calibration", {}).get("curve"):
        charts["calibration"] = calibration_chart(extra["calibration"])
        (out / "calibration.png").write_bytes(base64.b64decode(charts["calibration"].split(",", 1)[1]))
    metric_keys = sorted({k for r in done for k in r.metrics}, key=_metric_order)
    perf_keys = ["latency_p50_ms", "latency_p95_ms", "encode_passages_per_s", "model_load_s", "model_memory_mb",
                 "peak_rss_mb", "dimension"]
    context = {
        "title": title or name, "generated_at": payload["generated_at"], "charts": charts,
        "metric_keys": metric_keys, "perf_keys": perf_keys,
        "runs": [{"run": r, "metrics": [r.metrics.get(k) for k in metric_keys],
                  "perf": [r.performance.get(k) for k in perf_keys], "worst": worst_queries(r)} for r in runs],
        "extra_json": {k: v for k, v in extra.items() if k not in ("calibration",)},
        "calibration": extra.get("calibration"), "comparison": extra.get("comparison"),
    }
    (out / "report.html").write_text(render_to_string("evaluation/report.html", context), encoding="utf-8")
    for r in runs:
        EvaluationRun.objects.filter(pk=r.pk).update(report_dir=str(out), name=r.name or name)
    return out


def _metric_order(key: str):
    name, _, k = key.partition("@")
    order = ["MRR", "Hit", "Recall", "nDCG", "MAP"]
    return (order.index(name) if name in order else 9, int(k) if k.isdigit() else 0)
