"""Fine-tuning jobs: creation (refused at the request when it could not run),
status transitions with their reasons, cancellation and the job's folders.

One active job per base model is a database constraint
(`one_active_finetune_job_per_base`): two requests at once cannot both pass a
check, so the constraint decides and its IntegrityError becomes a clear error.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from finetune.models import ACTIVE_JOB_STATUSES, DatasetStatus, FineTuneJob, JobStatus, JobStep, Loss, TrainingDataset

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
HISTORY_KEPT = 200
# What the job's options may be. MNRL needs at least one other pair in a batch.
LIMITS = {"epochs": (0.01, 100.0), "batch_size": (2, 4096), "mini_batch_size": (1, 4096),
          "learning_rate": (1e-8, 1.0), "warmup_ratio": (0.0, 0.9), "max_length": (8, 8192),
          "lora_rank": (1, 512), "frozen_layers": (0, 200), "tuned_share": (0.01, 1.0), "eval_every_steps": (1, 10**6), "early_stopping_patience": (0, 1000),
          "negative_margin": (0.0, 1.0)}
OPTIONS = ("loss", "matryoshka_dims", "epochs", "batch_size", "mini_batch_size", "learning_rate", "warmup_ratio",
           "max_length", "seed", "freeze_embeddings", "frozen_layers", "tuned_share", "group_by_length", "bf16", "lora", "lora_rank", "early_stopping_patience",
           "eval_every_steps", "mine_negatives", "negative_margin")


class JobError(ValueError):
    """A job that cannot be created or acted on; the message says why and what to do.
    `field` names the form field at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def work_dir(name: str) -> Path:
    """Checkpoints and scratch files of a running job (removed when it ends)."""
    return Path(settings.VAR_DIR) / "finetune" / name


def package_dir(name: str) -> Path:
    return Path(settings.FINETUNE_PACKAGE_DIR) / name


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").exists() or (path / "config.json").exists())


def resolve_base(base_space=None, base_model_path: str = "") -> tuple[str, str]:
    """(model folder, base key) of a base given as a space or a folder."""
    if base_space is not None and base_model_path and \
            Path(base_model_path).resolve() != Path(base_space.model_path).resolve():
        raise JobError(_("Choose a base space or a model folder, not both."), "base_model_path")
    if base_space is not None:
        folder = Path(base_space.model_path)
        if not is_model_folder(folder):
            raise JobError(_("The model folder of space %(space)s is missing: %(path)s")
                           % {"space": base_space.name, "path": folder}, "base_space")
    elif base_model_path:
        folder = Path(base_model_path).expanduser()
        if not is_model_folder(folder):
            raise JobError(_("%(path)s is not a sentence-transformers model folder (no modules.json or "
                             "config.json).") % {"path": base_model_path}, "base_model_path")
    else:
        raise JobError(_("Choose a base: an embedding space or a model folder."), "base_space")
    folder = folder.resolve()
    return str(folder), str(folder)


def check_options(options: dict, dimension: int | None = None) -> None:
    """Refuse options the training could not use, naming the field."""
    for field, (low, high) in LIMITS.items():
        if field in options and options[field] is not None:
            value = options[field]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise JobError(_("%(field)s must be between %(low)s and %(high)s (got %(value)s).")
                               % {"field": field, "low": low, "high": high, "value": value}, field)
    if options.get("loss", Loss.MNRL) not in Loss.values:
        raise JobError(_("Unknown loss %(loss)s; choose one of %(choices)s.")
                       % {"loss": options.get("loss"), "choices": ", ".join(Loss.values)}, "loss")
    batch, mini = options.get("batch_size", 32), options.get("mini_batch_size", 8)
    if options.get("loss") == Loss.CACHED_MNRL and mini > batch:
        raise JobError(_("The mini-batch size (%(mini)s) cannot exceed the batch size (%(batch)s).")
                       % {"mini": mini, "batch": batch}, "mini_batch_size")
    dims = options.get("matryoshka_dims") or []
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise JobError(_("Matryoshka dimensions must be a list of positive whole numbers."), "matryoshka_dims")
    if len(set(dims)) != len(dims):
        raise JobError(_("Matryoshka dimensions must not repeat."), "matryoshka_dims")
    if dims and dimension and max(dims) > dimension:
        raise JobError(_("Matryoshka dimension %(dim)s is larger than the model's %(model)s.")
                       % {"dim": max(dims), "model": dimension}, "matryoshka_dims")
    if options.get("lora"):
        from finetune.services.model_setup import peft_available

        if not peft_available():
            raise JobError(_("LoRA needs the peft package, which is not installed."), "lora")


def _check_frozen_layers(count: int, folder: Path) -> None:
    """At least one layer must train: checked on the base's config.json when it says."""
    if not count:
        return
    try:
        layers = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError):
        return  # a model without the usual config: the job's set-up checks it
    if isinstance(layers, int) and count >= layers:
        raise JobError(_("The base model has %(layers)s layers: freeze fewer than that (got %(count)s).")
                       % {"layers": layers, "count": count}, "frozen_layers")


def create_job(*, name: str, dataset: TrainingDataset, base_space=None, base_model_path: str = "",
               guard_sets=(), created_by=None, queue: bool = True, **options) -> FineTuneJob:
    """Create a job (status queued) and hand it to the finetune queue."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise JobError(_("Unknown options: %(names)s.") % {"names": ", ".join(sorted(unknown))})
    if not NAME_RE.match(name or ""):
        raise JobError(_("The name must be lower-case letters, digits, - or _ (at most 100), starting with a "
                         "letter or digit: it names the package folder."), "name")
    if FineTuneJob.objects.filter(name=name).exists():
        raise JobError(_("A fine-tuning job named %(name)s exists already.") % {"name": name}, "name")
    if package_dir(name).exists():
        raise JobError(_("A model package folder %(path)s exists already; choose another name.")
                       % {"path": package_dir(name)}, "name")
    dataset.refresh_from_db(fields=["status"])
    if dataset.status != DatasetStatus.READY:
        raise JobError(_("The dataset %(name)s is not ready (status: %(status)s).")
                       % {"name": dataset.name, "status": dataset.get_status_display()}, "dataset")
    folder, key = resolve_base(base_space, base_model_path)
    check_options(options, _dimension_of(base_space))
    _check_frozen_layers(options.get("frozen_layers") or 0, Path(folder))
    try:
        with transaction.atomic():
            job = FineTuneJob.objects.create(name=name, dataset=dataset, base_space=base_space,
                                             base_model_path=folder, base_key=key, created_by=created_by,
                                             history=[_event(JobStatus.QUEUED, JobStep.CREATED)], **options)
            if guard_sets:
                job.guard_sets.set(guard_sets)
    except IntegrityError as exc:
        if "one_active_finetune_job_per_base" in str(exc):
            running = FineTuneJob.objects.filter(base_key=key, status__in=ACTIVE_JOB_STATUSES).first()
            raise JobError(_("A fine-tuning job on this base is already running: %(job)s (%(status)s). Wait for "
                             "it to finish or cancel it.") % {"job": running.name if running else "?",
                                                              "status": running.get_status_display()
                                                              if running else "?"}, "base_space") from None
        if "name" in str(exc):
            raise JobError(_("A fine-tuning job named %(name)s exists already.") % {"name": name}, "name") from None
        raise
    if queue:
        enqueue(job)
    return job


def _dimension_of(space) -> int | None:
    return int(space.dimension) if space is not None and space.dimension else None


def enqueue(job: FineTuneJob) -> bool:
    """Hand the job to the finetune queue; when the broker is away the sweep does it later."""
    from finetune.tasks import run_finetune_job_task
    from portal import tasking

    sent = tasking.send(run_finetune_job_task, job.pk)
    if sent:
        FineTuneJob.objects.filter(pk=job.pk).update(queued_at=timezone.now())
    else:
        FineTuneJob.objects.filter(pk=job.pk).update(status_message=JobStep.WAITING_FOR_QUEUE)
    return sent


def _event(status: str, reason: str, detail: str = "") -> dict:
    return {"at": timezone.now().isoformat(timespec="seconds"), "status": str(status), "reason": reason,
            "detail": detail[:500]}


def transition(job: FineTuneJob, status: str, reason: str, detail: str = "", **fields) -> FineTuneJob:
    """Move the job to `status`, recording why: `reason` is a JobStep msgid (status_message and
    the history), `detail` what varies (who, where)."""
    job.status = status
    job.status_message = reason[:200]
    job.history = (list(job.history or []) + [_event(status, reason, detail)])[-HISTORY_KEPT:]
    for name, value in fields.items():
        setattr(job, name, value)
    FineTuneJob.objects.filter(pk=job.pk).update(status=status, status_message=job.status_message,
                                                 history=job.history, **fields)
    return job


def finish(job: FineTuneJob, status: str, reason: str, detail: str = "", *, error: str = "") -> FineTuneJob:
    """End the job (succeeded, failed or cancelled); its work folder goes."""
    transition(job, status, reason, detail, error=error, finished_at=timezone.now(), holder="")
    remove_work(job)
    return job


def remove_work(job: FineTuneJob) -> None:
    shutil.rmtree(work_dir(job.name), ignore_errors=True)
    from finetune.services.package import remove_partial_packages

    remove_partial_packages(job.name)


def request_cancel(job: FineTuneJob, *, by=None) -> FineTuneJob:
    """Ask the job to stop. A job no worker holds is cancelled at once; a running
    one stops at its next step (or heartbeat) and removes its partial work."""
    from finetune.services.liveness import JobLock

    job.refresh_from_db()
    if not job.is_active:
        raise JobError(_("The job %(name)s has ended (%(status)s); there is nothing to cancel.")
                       % {"name": job.name, "status": job.get_status_display()})
    who = getattr(by, "username", "") or "a user"
    FineTuneJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    job.cancel_requested = True
    with JobLock(job.pk) as lock:
        if lock.try_acquire():
            job.refresh_from_db()
            if job.is_active:  # nobody runs it: cancel now
                finish(job, JobStatus.CANCELLED, JobStep.CANCELLED_BEFORE_START, f"cancelled by {who}")
            return job
    transition(job, job.status, JobStep.CANCEL_REQUESTED, f"requested by {who}")
    return job


def regressions(job: FineTuneJob) -> list[dict]:
    """Where the fine-tuned model scores below its base by more than the margin
    (relative MRR@10), on the held-out split or a guard set."""
    margin = settings.FINETUNE_REGRESSION_MARGIN
    out = []
    for key, (base, tuned) in ((job.metrics or {}).get("summary") or {}).items():  # package.summary's pairs
        if base is None or tuned is None or base <= 0:
            continue
        if tuned < base * (1 - margin):
            out.append({"set": key.removesuffix("_mrr@10"), "base": base, "fine_tuned": tuned,
                        "change": round(tuned / base - 1, 4)})
    return out


def describe(worse: list[dict]) -> str:
    return "; ".join(f"{w['set']} MRR@10 {w['base']:.3f} → {w['fine_tuned']:.3f} ({w['change']:+.1%})"
                     for w in worse)


def margin_percent(share: float) -> str:
    return f"{share * 100:g}"


def register_package(job: FineTuneJob, *, space_name: str | None = None, force: bool = False, reason: str = "",
                     by=None):
    """Register the job's package as a new embedding space in status ready — not
    active: switching the portal to it is a migration's work. A model worse than its
    base beyond FINETUNE_REGRESSION_MARGIN (held-out split or any guard set) is refused
    unless forced with a reason, which is kept on the space's card and the job."""
    from search.models import EmbeddingSpace, SpaceStatus
    from search.services import spaces

    job.refresh_from_db()
    if job.registered_space_id:
        raise JobError(_("The package of %(name)s is registered already as space %(space)s.")
                       % {"name": job.name, "space": job.registered_space.name})
    if job.status != JobStatus.SUCCEEDED or not job.package_dir:
        raise JobError(_("Only a succeeded job has a package to register (%(name)s is %(status)s).")
                       % {"name": job.name, "status": job.get_status_display()})
    if not is_model_folder(Path(job.package_dir)):
        raise JobError(_("The package folder %(path)s is missing.") % {"path": job.package_dir})
    worse = regressions(job)
    if worse and not force:
        raise JobError(_("The fine-tuned model is worse than its base by more than %(margin)s%% on: %(sets)s. "
                         "Register it anyway only with force and a reason.")
                       % {"margin": margin_percent(settings.FINETUNE_REGRESSION_MARGIN), "sets": describe(worse)}, "force")
    if worse and not reason.strip():
        raise JobError(_("Registering a model that is worse than its base needs a reason."), "reason")
    name = space_name or job.name
    if len(name) > 64 or not NAME_RE.match(name):
        raise JobError(_("A space name is at most 64 lower-case letters, digits, - or _; give one."), "space_name")
    if EmbeddingSpace.objects.filter(name=name).exists():
        raise JobError(_("A space named %(name)s exists already; give another name.") % {"name": name},
                       "space_name")
    card = {"fine_tuned_by_job": job.name, "base_model": job.base_model_path, "dataset": job.dataset.name,
            "dataset_hash": job.dataset.content_hash, "metrics": job.metrics.get("summary", {})}
    who = getattr(by, "username", "") or "command line"
    if worse:
        card["registered_despite_regression"] = {"reason": reason.strip(), "by": who, "regressions": worse}
    with transaction.atomic():
        space = spaces.create_space(name, job.package_dir, model_card=card, status=SpaceStatus.READY)
        FineTuneJob.objects.filter(pk=job.pk).update(registered_space=space)
        detail = f"as space {name} by {who}" + (f"; forced despite {describe(worse)}: {reason.strip()}"
                                               if worse else "")
        transition(job, job.status, JobStep.REGISTERED, detail)
    job.registered_space = space
    return space
