"""The answer evaluation's report: performance_metrics.json (summaries and
every question) and a self-contained report.html (tables, and plots embedded
as PNG like the retrieval reports: search.evaluation.report) in
VAR_DIR/reports/<name>."""
from __future__ import annotations

import json
from pathlib import Path

from django.template.loader import render_to_string
from django.utils import timezone

from search.evaluation.report import _png, _pyplot, latency_chart, report_dir

CHART_KEYS = (("answered_rate", "answered"), ("citation_precision", "citation precision"),
              ("first_citation_right", "first citation right"), ("reference_contained", "reference contained"),
              ("refusal_rate", "refused (unanswerable)"))
SUMMARY_KEYS = ("questions", "answerable", "with_reference", "unanswerable", "answered_rate", "citation_precision",
                "first_citation_right", "reference_contained", "refusal_rate", "fallbacks", "latency_p50_ms",
                "latency_p95_ms", "first_token_p50_ms", "first_token_p95_ms")
SHOWN_FAILURES = 30


def metrics_chart(results: list[dict]) -> str:
    import numpy as np

    plt = _pyplot()
    keys = [(k, label) for k, label in CHART_KEYS if any(r["summary"].get(k) is not None for r in results)]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(keys))
    for i, r in enumerate(results):
        bars = ax.bar(x + i * width - 0.4 + width / 2, [r["summary"].get(k) or 0 for k, _ in keys], width,
                      label=_label(r) + (f" ({r['model']})" if r["model"] else ""))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(x, [label for _, label in keys], fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_title("Answers per mode")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _label(result: dict) -> str:
    return result.get("label") or result["mode"]


def failures(result: dict) -> list[dict]:
    """The questions a reader should look at first: an answerable one not
    answered or citing a wrong document or missing its reference; an
    unanswerable one answered."""
    out = []
    for r in result["rows"]:
        if r["answerable"]:
            wrong = r["answered"] and r["cited_right"] < len(r["cited"])
            if not r["answered"] or wrong or r.get("contained") is False:
                out.append(r)
        elif r["answered"]:
            out.append(r)
    return out[:SHOWN_FAILURES]


def write_report(results: list[dict], name: str, *, title: str, meta: dict) -> Path:
    out = report_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    generated = timezone.now().isoformat()
    payload = {"name": name, "title": title, "generated_at": generated, **meta, "modes": results}
    (out / "performance_metrics.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1),
                                                  encoding="utf-8")
    charts = {}
    if results:
        charts["metrics"] = metrics_chart(results)
        labels = [f"{_label(r)} full" for r in results] + [f"{_label(r)} first token" for r in results]
        charts["latency"] = latency_chart(labels, [[x["latency_ms"] for x in r["rows"]] for r in results]
                                          + [[x["first_token_ms"] for x in r["rows"]] for r in results])
    context = {"title": title, "generated_at": generated, "meta": meta, "charts": charts, "keys": SUMMARY_KEYS,
               "results": [{"mode": _label(r), "model": r["model"], "values": [r["summary"].get(k) for k in
                                                                                SUMMARY_KEYS],
                            "failures": failures(r)} for r in results]}
    (out / "report.html").write_text(render_to_string("evaluation/answers_report.html", context), encoding="utf-8")
    return out
