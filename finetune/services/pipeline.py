"""One fine-tuning job from start to package:

validate the dataset → (mine hard negatives) → evaluate the base model →
train → evaluate the fine-tuned model → write the package → succeeded.

Every phase records its outcome on the job (`metrics["phases"]`) and the
trained model is kept in the work folder, so a job taken over after its worker
died skips what is done and resumes training from its last checkpoint. The
worker holds the job's advisory lock and beats (liveness.py) the whole time.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from finetune.models import FineTuneJob, JobStatus, JobStep
from finetune.services import batches, guard, heldout, jobs, model_setup, package, training
from finetune.services.liveness import Cancelled, JobHeartbeat, TakenOver, new_holder
from finetune.services.progress import Reporter
from portal.tasking import is_transient

log = logging.getLogger(__name__)

TRAINED = "model"  # the fine-tuned model inside the work folder, written once training ends


class DatasetInvalid(Exception):
    pass


def run_job(job_id: int, *, after_outage: bool = False) -> str:
    """Run (or resume) a job; returns what happened, for the task's log. An outage is
    re-raised (the task retries; `after_outage` then does not count a new attempt)."""
    job = FineTuneJob.objects.filter(pk=job_id).first()
    if job is None or not job.is_active:
        return "nothing to do"
    beat = JobHeartbeat(job.pk, new_holder())
    try:
        acquired = beat.acquire(wait=2.0)
    finally:
        if not beat.lock.held:
            beat.stop()  # ends the lock's session
    if not acquired:
        return "running on another worker"
    try:
        job.refresh_from_db()
        if not job.is_active:
            return "nothing to do"
        if job.cancel_requested:
            jobs.finish(job, JobStatus.CANCELLED, JobStep.CANCELLED_BEFORE_START)
            return "cancelled"
        attempts = job.attempts if after_outage and job.attempts else job.attempts + 1
        if attempts > settings.FINETUNE_MAX_ATTEMPTS:
            guard.drop_temporary_spaces(job)
            jobs.finish(job, JobStatus.FAILED, JobStep.GAVE_UP, error=(
                f"Gave up after {job.attempts} attempts: the worker running this job stopped each time "
                f"(killed, out of memory?). Last step: {job.status_message or job.status}."))
            return "gave up"
        device = model_setup.pick_device()
        FineTuneJob.objects.filter(pk=job.pk).update(
            attempts=attempts, holder=beat.holder, heartbeat_at=timezone.now(), device=device,
            started_at=job.started_at or timezone.now(), work_dir=str(jobs.work_dir(job.name)))
        job.refresh_from_db()
        beat.start()
        reporter = Reporter(job, beat)
        _phases(job, reporter, device)
        return "succeeded"
    except Cancelled:
        guard.drop_temporary_spaces(job)
        jobs.finish(job, JobStatus.CANCELLED, JobStep.CANCELLED)
        return "cancelled"
    except TakenOver:
        return "taken over"
    except DatasetInvalid as exc:
        jobs.finish(job, JobStatus.FAILED, JobStep.INVALID_DATASET, error=str(exc))
        return "failed"
    except Exception as exc:
        if is_transient(exc):
            log.warning("fine-tuning job %s interrupted by an outage: %s", job_id, exc)
            raise
        log.exception("fine-tuning job %s failed", job_id)
        try:
            guard.drop_temporary_spaces(job)
        finally:
            jobs.finish(job, JobStatus.FAILED, JobStep.FAILED, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        beat.stop()


def _done(job: FineTuneJob, phase: str, **values) -> None:
    metrics = dict(job.metrics or {})
    metrics.setdefault("phases", {})[phase] = timezone.now().isoformat(timespec="seconds")
    metrics.update(values)
    job.metrics = metrics
    FineTuneJob.objects.filter(pk=job.pk).update(metrics=metrics)


def _phases(job: FineTuneJob, reporter: Reporter, device: str) -> None:
    from finetune.services import negatives, validation

    done = (job.metrics or {}).get("phases", {})
    work = jobs.work_dir(job.name)
    work.mkdir(parents=True, exist_ok=True)
    dataset = job.dataset
    if "validated" not in done:
        jobs.transition(job, JobStatus.VALIDATING, JobStep.VALIDATING)
        report = validation.validate_dataset(dataset, job.base_model_path, job.max_length)
        FineTuneJob.objects.filter(pk=job.pk).update(validation=report)
        job.validation = report
        if report.get("errors"):
            raise DatasetInvalid("The dataset has validation errors: " + "; ".join(
                str(e.get("message", e)) for e in report["errors"]))
        _done(job, "validated")
    reporter.check()
    if job.mine_negatives and "mined" not in done:
        jobs.transition(job, JobStatus.MINING, JobStep.MINING)
        changed = negatives.mine_hard_negatives(
            dataset, job.base_model_path, margin=job.negative_margin,
            progress=lambda n, total: (reporter.check(), reporter.phase(JobStep.MINING, n, total)))
        _done(job, "mined", mined_negatives=changed)
    eval_data = batches.load_eval(dataset)
    guard_sets = list(job.guard_sets.order_by("name"))
    if "base_evaluated" not in done:
        jobs.transition(job, JobStatus.EVALUATING, JobStep.EVALUATING_BASE)
        _done(job, "base_evaluated", base=_evaluate(job, job.base_model_path, "base", eval_data, guard_sets,
                                                    reporter, device))
    trained = work / TRAINED
    if not model_setup.is_saved_model(trained):
        jobs.transition(job, JobStatus.TRAINING, JobStep.TRAINING)
        _done(job, "trained", training=_train(job, reporter, device, eval_data, work))
    reporter.check()
    if "tuned_evaluated" not in done:
        jobs.transition(job, JobStatus.EVALUATING, JobStep.EVALUATING_TUNED)
        _done(job, "tuned_evaluated", tuned=_evaluate(job, str(trained), "tuned", eval_data, guard_sets, reporter,
                                                      device))
    reporter.check()
    jobs.transition(job, JobStatus.PACKAGING, JobStep.PACKAGING)
    job.refresh_from_db()
    folder = package.write_package(job, trained, guard_sets)
    FineTuneJob.objects.filter(pk=job.pk).update(package_dir=str(folder))
    job.package_dir = str(folder)
    jobs.finish(job, JobStatus.SUCCEEDED, JobStep.SUCCEEDED, str(folder))


def _evaluate(job, model_path: str, label: str, eval_data, guard_sets, reporter: Reporter, device: str) -> dict:
    from sentence_transformers import SentenceTransformer

    started = time.monotonic()
    reporter.phase(JobStep.EVAL_SPLIT, model=label)
    model = SentenceTransformer(model_path, device=device, local_files_only=True)
    held_out = heldout.ranking_scores(model, eval_data, check=reporter.check)
    del model
    on_sets = guard.evaluate_on_sets(job, model_path, label, guard_sets, check=reporter.check,
                                     progress=lambda what, n, total: reporter.phase(what, n, total, model=label))
    return {"heldout": held_out, "guard": on_sets, "seconds": round(time.monotonic() - started, 1)}


def _train(job, reporter: Reporter, device: str, eval_data, work: Path) -> dict:
    threads = model_setup.use_training_threads() if device == "cpu" else None
    model, names, base_max = model_setup.load_for_training(job, device)
    pairs = batches.load_train(job.dataset)
    grouping = None
    if job.group_by_length and pairs:
        grouping = batches.grouping_lengths(model.tokenizer, pairs, model_setup.prompts_of(model),
                                            model.max_seq_length, job.batch_size, job.seed)
    plan = batches.plan(pairs, job.batch_size, job.seed, job.epochs, grouping.lengths if grouping else None)
    if not plan.total_steps:
        raise ValueError("The dataset gives no training batch (it needs at least two pairs with different "
                         "queries and passages).")
    result = training.train(job, model, names, pairs, plan, eval_data, work, reporter)
    reporter.check()
    if job.lora:
        model_setup.merge_lora(model)
    interpolated = model_setup.keep_share_of_tuning(model, job.base_model_path, job.tuned_share)
    model.max_seq_length = base_max  # serving keeps the base's length; training's is in training_args.json
    model_setup.save_model(model, work / TRAINED)
    return {"total_steps": result.total_steps, "steps_done": result.steps_done,
            "steps_per_epoch": plan.steps_per_epoch, "stopped_early": result.stopped_early,
            "resumed_from": result.resumed_from, "best_step": result.best_step, "best_eval_mrr@10": result.best_score,
            "restored_best": result.restored_best, "train_seconds": result.train_seconds,
            "seconds_per_step": round(result.train_seconds / max(1, result.steps_done), 3),
            "train_pairs": len(pairs), "device": device, **(threads or {}), "bf16": result.bf16,
            "improved_on_base": result.improved, "tuned_share": job.tuned_share,
            "interpolated_tensors": interpolated,
            "grouped_by": grouping.key if grouping else None,
            "padding_efficiency": grouping.padding_efficiency if grouping else None,
            "padding_efficiency_random": grouping.padding_efficiency_random if grouping else None,
            **model_setup.parameter_counts(model)}

