"""The model package a job writes (DESIGN.md, "Model package"):

    <name>/
      model files (sentence-transformers save: config, weights, tokenizer, modules)
      training_args.json
      evaluation_results/performance_metrics.json
      evaluation_results/comparison_report.html  (+ comparison_report.pdf)
      deployment_guide.md

Everything is written into a hidden sibling folder first and renamed into place
at the end: a package folder that exists is complete. The model was saved
merged (LoRA folded in) and loads with `SentenceTransformer(path)` offline,
without the base model.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

from django.utils import timezone

from finetune.services import package_report
from finetune.services.jobs import package_dir

HEADLINE = ("MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10", "Recall@100")
HYPER_PARAMETERS = ("loss", "matryoshka_dims", "epochs", "batch_size", "mini_batch_size", "learning_rate",
                    "warmup_ratio", "max_length", "seed", "freeze_embeddings", "frozen_layers", "tuned_share", "group_by_length", "bf16", "lora", "lora_rank",
                    "early_stopping_patience", "eval_every_steps", "mine_negatives", "negative_margin")
LIBRARIES = ("torch", "sentence-transformers", "transformers", "tokenizers", "peft", "numpy", "Django")


def partial_name(name: str) -> str:
    return f".{name}.partial-{os.getpid()}"


def remove_partial_packages(name: str) -> None:
    root = package_dir(name).parent
    if root.is_dir():
        for leftover in root.glob(f".{name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def hardware(device: str) -> dict:
    import torch

    out = {"device": device, "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _delta(base: dict, tuned: dict) -> dict:
    return {k: round(tuned[k] - base[k], 6) for k in tuned if k in base}


def comparison(job) -> dict:
    """Base vs fine-tuned on the held-out split and on every guard set, from the job's metrics."""
    base, tuned = job.metrics.get("base", {}), job.metrics.get("tuned", {})
    held_b, held_t = base.get("heldout", {}), tuned.get("heldout", {})
    out = {"heldout": {"queries": held_t.get("queries", 0), "passages": held_t.get("passages", 0),
                       "base": held_b.get("metrics", {}), "fine_tuned": held_t.get("metrics", {}),
                       "delta": _delta(held_b.get("metrics", {}), held_t.get("metrics", {}))},
           "guard_sets": {}}
    for name, t in tuned.get("guard", {}).items():
        b = base.get("guard", {}).get(name, {})
        out["guard_sets"][name] = {"mode": t.get("mode"), "queries": t.get("queries"), "skipped": t.get("skipped"),
                                   "base": b.get("metrics", {}), "fine_tuned": t.get("metrics", {}),
                                   "delta": _delta(b.get("metrics", {}), t.get("metrics", {})),
                                   "base_run_id": b.get("run_id"), "fine_tuned_run_id": t.get("run_id")}
    return out


def training_args(job) -> dict:
    started = job.started_at or job.created_at
    training = job.metrics.get("training", {})
    return {
        "job": job.name, "base_model": job.base_model_path,
        "base_space": job.base_space.name if job.base_space_id else None,
        "hyper_parameters": {k: getattr(job, k) for k in HYPER_PARAMETERS},
        "dataset": {"name": job.dataset.name, "content_hash": job.dataset.content_hash,
                    "counts": job.dataset.counts, "access_levels": job.dataset.access_levels},
        "seed": job.seed, "versions": versions(), "hardware": hardware(training.get("device") or job.device or "cpu"),
        "wall_time_seconds": round((timezone.now() - started).total_seconds(), 1),
        "train_seconds": training.get("train_seconds"), "steps": training.get("steps_done"),
        "total_steps": training.get("total_steps"), "steps_per_epoch": training.get("steps_per_epoch"),
        "stopped_early": training.get("stopped_early"), "best_step": training.get("best_step"),
        "restored_best_weights": training.get("restored_best"), "resumed_from_step": training.get("resumed_from"),
        "attempts": job.attempts, "trainable_parameters": training.get("trainable_parameters"),
        "parameters": training.get("parameters"), "mined_negatives": job.metrics.get("mined_negatives"),
        "validation_warnings": [w.get("code", "") for w in (job.validation or {}).get("warnings", [])],
        "created_at": timezone.now().isoformat(timespec="seconds"),
    }


def write_package(job, trained: Path, guard_sets) -> Path:
    final = package_dir(job.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not _written_by(final, job):
        raise FileExistsError(f"{final} exists and is not this job's package; it was left as it is")
    remove_partial_packages(job.name)
    tmp = final.parent / partial_name(job.name)
    shutil.copytree(trained, tmp)
    args = training_args(job)
    compared = comparison(job)
    performance = {"job": job.name, "generated_at": timezone.now().isoformat(timespec="seconds"),
                   "headline_metrics": list(HEADLINE), **compared,
                   "training": job.metrics.get("training", {}),
                   "loss_curve": job.loss_curve, "eval_curve": job.eval_curve}
    results = tmp / "evaluation_results"
    results.mkdir()
    _json(tmp / "training_args.json", args)
    _json(results / "performance_metrics.json", performance)
    package_report.write_html(results / "comparison_report.html", job, args, performance)
    package_report.write_pdf(results / "comparison_report.pdf", job, args, performance)
    (tmp / "deployment_guide.md").write_text(package_report.deployment_guide(job, args, performance),
                                            encoding="utf-8")
    if final.exists():  # this job's own package from an attempt that died before recording it
        shutil.rmtree(final)
    os.replace(tmp, final)
    job.metrics = {**job.metrics, "summary": summary(compared)}
    type(job).objects.filter(pk=job.pk).update(metrics=job.metrics)
    return final


def summary(compared: dict) -> dict:
    """The numbers the admin list and the space's model card show."""
    held = compared["heldout"]
    out = {"heldout_mrr@10": [held["base"].get("MRR@10"), held["fine_tuned"].get("MRR@10")]}
    for name, g in compared["guard_sets"].items():
        out[f"{name}_mrr@10"] = [g["base"].get("MRR@10"), g["fine_tuned"].get("MRR@10")]
    return out


def _written_by(folder: Path, job) -> bool:
    try:
        return json.loads((folder / "training_args.json").read_text(encoding="utf-8")).get("job") == job.name
    except (OSError, ValueError):
        return False


def _json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
