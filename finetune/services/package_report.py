"""The package's comparison report (self-contained HTML: tables and matplotlib
plots as inline PNG, nothing fetched when it is opened), the same report as a
PDF (matplotlib PdfPages), and deployment_guide.md. Like the evaluation
reports (search/evaluation/report.py) these are files that travel with the
model, written in English."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from django.template.loader import render_to_string

from search.evaluation.report import _metric_order

BAR_METRICS = ("MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10", "Recall@100")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def evaluations(performance: dict) -> list[tuple[str, dict]]:
    """(label, {base, fine_tuned, delta, queries}) for the held-out split, then each guard set."""
    out = [("held-out eval split", performance["heldout"])]
    out += [(f"guard set {name} ({g.get('mode')})", g) for name, g in performance["guard_sets"].items()]
    return out


def metrics_figure(label: str, entry: dict):
    import numpy as np

    plt = _pyplot()
    keys = [k for k in BAR_METRICS if k in entry["fine_tuned"] or k in entry["base"]]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(keys))
    for i, (name, values) in enumerate((("base", entry["base"]), ("fine-tuned", entry["fine_tuned"]))):
        bars = ax.bar(x + (i - 0.5) * 0.4, [values.get(k, 0) for k in keys], 0.4, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, keys)
    ax.set_ylim(0, 1.15)
    ax.set_title(f"Base vs fine-tuned: {label}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return fig


def curve_figure(loss_curve: list, eval_curve: list):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    if loss_curve:
        ax.plot([p[0] for p in loss_curve], [p[1] for p in loss_curve], linewidth=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if eval_curve:
        right = ax.twinx()
        right.plot([p[0] for p in eval_curve], [p[1] for p in eval_curve], "o-", color="tab:green",
                   label="eval split MRR@10")
        right.set_ylabel("MRR@10 (eval split)")
        right.legend(fontsize=8, loc="upper right")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Training loss and evaluation during training")
    return fig


def _rows(entry: dict) -> list[dict]:
    keys = sorted(set(entry["base"]) | set(entry["fine_tuned"]), key=_metric_order)
    rows = []
    for k in keys:
        delta = entry["delta"].get(k)
        rows.append({"metric": k, "base": entry["base"].get(k), "tuned": entry["fine_tuned"].get(k), "delta": delta,
                     "base_text": _f(entry["base"].get(k)), "tuned_text": _f(entry["fine_tuned"].get(k)),
                     "delta_text": _f(delta, True),
                     "trend": "up" if (delta or 0) > 0 else "down" if (delta or 0) < 0 else ""})
    return rows


def write_html(path: Path, job, args: dict, performance: dict) -> None:
    sections = [{"label": label, "queries": entry.get("queries"), "rows": _rows(entry),
                 "chart": _png(metrics_figure(label, entry))} for label, entry in evaluations(performance)]
    context = {"job": job, "args": args, "sections": sections, "performance": performance,
               "curve": _png(curve_figure(performance["loss_curve"], performance["eval_curve"])),
               "hyper": sorted(args["hyper_parameters"].items())}
    path.write_text(render_to_string("finetune/comparison_report.html", context), encoding="utf-8")


def write_pdf(path: Path, job, args: dict, performance: dict) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _pyplot()
    with PdfPages(path) as pdf:
        fig = plt.figure(figsize=(8.27, 11.69))  # A4
        lines = [f"Fine-tuning job {job.name}", "", f"Base model: {args['base_model']}",
                 f"Dataset: {args['dataset']['name']} (content hash {args['dataset']['content_hash'] or '-'})",
                 f"Steps: {args['steps']} of {args['total_steps']}; stopped early: {args['stopped_early']}; "
                 f"wall time {args['wall_time_seconds']} s", f"Device: {args['hardware']['device']}", ""]
        for label, entry in evaluations(performance):
            lines.append(f"{label} — {entry.get('queries')} queries")
            lines.append(f"  {'metric':<12}{'base':>10}{'fine-tuned':>12}{'change':>10}")
            for row in _rows(entry):
                lines.append(f"  {row['metric']:<12}{_f(row['base']):>10}{_f(row['tuned']):>12}"
                             f"{_f(row['delta'], True):>10}")
            lines.append("")
        fig.text(0.06, 0.96, "\n".join(lines), va="top", family="monospace", fontsize=8)
        pdf.savefig(fig)
        plt.close(fig)
        for label, entry in evaluations(performance):
            fig = metrics_figure(label, entry)
            pdf.savefig(fig, bbox_inches="tight")
            plt.close(fig)
        fig = curve_figure(performance["loss_curve"], performance["eval_curve"])
        pdf.savefig(fig, bbox_inches="tight")
        plt.close(fig)


def _f(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def deployment_guide(job, args: dict, performance: dict) -> str:
    held = performance["heldout"]
    guard_lines = "\n".join(
        f"| {name} ({g.get('mode')}) | {g.get('queries')} | {_f(g['base'].get('MRR@10'))} | "
        f"{_f(g['fine_tuned'].get('MRR@10'))} | {_f(g['delta'].get('MRR@10'), True)} |"
        for name, g in performance["guard_sets"].items())
    return f"""# Deploying the model `{job.name}`

Fine-tuned from `{args['base_model']}` on the dataset `{args['dataset']['name']}`
(content hash `{args['dataset']['content_hash'] or '-'}`), {args['steps']} steps,
seed {args['seed']}. `training_args.json` has every hyper-parameter and library
version; `evaluation_results/` has the metrics and the comparison report.

## Before deploying: read the comparison

| evaluation | queries | base MRR@10 | fine-tuned MRR@10 | change |
|---|---|---|---|---|
| held-out eval split | {held.get('queries')} | {_f(held['base'].get('MRR@10'))} | {_f(held['fine_tuned'].get('MRR@10'))} | {_f(held['delta'].get('MRR@10'), True)} |
{guard_lines}

A gain on the held-out split with a loss on a guard set means the model learnt
the training domain at the expense of the rest: do not switch to it.

## Load it

The folder is a complete sentence-transformers model (adapters, if any, are
merged); it needs neither the network nor the base model:

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{job.name}")  # the path of this folder
```

Use the same prefixes as the base model (stored as the model's prompts).

## Register it in the portal

In Django admin, on the fine-tuning job, choose the action "Register the package as
a space"; or `POST /api/v1/finetune/jobs/<id>/register`; or

```bash
python manage.py finetune register {job.name}
```

This creates an embedding space in status *ready*, not active: search keeps
using the active space. The new space has no vectors yet.

## Switch to it

Switching is a migration between spaces (blue-green): backfill the new space's
vectors in the background, compare both spaces on your evaluation sets
(`manage.py evaluate`), optionally send a share of users to it (A/B), then
promote it; the previous space stays ready for a rollback. See the portal's
documentation on migrating between spaces.
"""
