"""manage.py finetune run|status|cancel|register|list — fine-tuning jobs from the command line.

    manage.py finetune run NAME --dataset D (--base-space S | --base-model PATH) [--guard-set G …]
                               [--epochs 1 --batch-size 32 …] [--wait | --sync]
    manage.py finetune status NAME
    manage.py finetune cancel NAME
    manage.py finetune register NAME [--space-name S]
    manage.py finetune list

`run` queues the job for a worker (the finetune queue); --wait follows it with a
progress bar until it ends; --sync runs it in this process instead (no worker
needed). The exit status is 1 when the job did not succeed.
"""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from finetune.models import FineTuneJob, JobStatus, Loss, TrainingDataset
from finetune.services import jobs


def _job(name: str) -> FineTuneJob:
    job = FineTuneJob.objects.filter(name=name).first()
    if job is None:
        raise CommandError(f"no fine-tuning job named {name!r}")
    return job


class Command(BaseCommand):
    help = "Create, follow, cancel and register fine-tuning jobs."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="create a job (and wait for it, or run it here)")
        run.add_argument("name")
        run.add_argument("--dataset", required=True, help="a ready training dataset's name")
        base = run.add_mutually_exclusive_group(required=True)
        base.add_argument("--base-space", help="an embedding space's name (its model is the base)")
        base.add_argument("--base-model", help="a sentence-transformers model folder")
        run.add_argument("--guard-set", action="append", default=[], help="an evaluation set never trained on "
                         "(repeat for several)")
        run.add_argument("--loss", choices=Loss.values)
        run.add_argument("--matryoshka-dims", type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                         help="e.g. 384,256,128")
        for flag, kind in (("epochs", float), ("batch-size", int), ("mini-batch-size", int),
                           ("learning-rate", float), ("warmup-ratio", float), ("max-length", int), ("seed", int),
                           ("lora-rank", int), ("frozen-layers", int), ("tuned-share", float), ("early-stopping-patience", int), ("eval-every-steps", int),
                           ("negative-margin", float)):
            run.add_argument(f"--{flag}", type=kind)
        run.add_argument("--train-embeddings", action="store_true", help="do not freeze the word embeddings")
        run.add_argument("--random-batches", action="store_true",
                         help="do not group batches by length (slower: more padding)")
        run.add_argument("--no-bf16", action="store_true", help="train in float32 even where the CPU has bf16")
        run.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the package)")
        run.add_argument("--mine-negatives", action="store_true", help="mine hard negatives with the base first")
        how = run.add_mutually_exclusive_group()
        how.add_argument("--wait", action="store_true", help="follow the queued job with a progress bar")
        how.add_argument("--sync", action="store_true", help="run the job in this process (no worker)")
        for name, text in (("status", "show a job's state and progress"), ("cancel", "stop a job")):
            sub.add_parser(name, help=text).add_argument("name")
        register = sub.add_parser("register", help="register a job's package as a space (ready, not active)")
        register.add_argument("name")
        register.add_argument("--space-name")
        register.add_argument("--force", action="store_true",
                              help="register even when it is worse than its base beyond the margin")
        register.add_argument("--reason", default="", help="why (required with --force when it is worse)")
        sub.add_parser("list", help="list the jobs")

    def handle(self, *args, action, **options):
        try:
            return getattr(self, f"do_{action}")(**options)
        except jobs.JobError as exc:
            raise CommandError(str(exc)) from None

    def do_run(self, name, dataset, base_space, base_model, guard_set, wait, sync, **options):
        from search.evaluation.models import EvaluationSet
        from search.models import EmbeddingSpace

        data = TrainingDataset.objects.filter(name=dataset).first()
        if data is None:
            raise CommandError(f"no training dataset named {dataset!r}")
        space = None
        if base_space:
            space = EmbeddingSpace.objects.filter(name=base_space).first()
            if space is None:
                raise CommandError(f"no embedding space named {base_space!r}")
        sets = list(EvaluationSet.objects.filter(name__in=guard_set))
        missing = set(guard_set) - {s.name for s in sets}
        if missing:
            raise CommandError(f"no evaluation set named {', '.join(sorted(missing))}")
        flags = {k: options[k] for k in ("loss", "matryoshka_dims", "epochs", "batch_size", "mini_batch_size",
                                         "learning_rate", "warmup_ratio", "max_length", "seed", "lora_rank", "frozen_layers", "tuned_share",
                                         "early_stopping_patience", "eval_every_steps", "negative_margin")
                 if options.get(k) is not None}
        flags.update(lora=options["lora"], mine_negatives=options["mine_negatives"],
                     freeze_embeddings=not options["train_embeddings"],
                     group_by_length=not options["random_batches"], bf16=not options["no_bf16"])
        job = jobs.create_job(name=name, dataset=data, base_space=space, base_model_path=base_model or "",
                              guard_sets=sets, queue=not sync, **flags)
        if sync:
            from finetune.services import pipeline

            self.stdout.write(f"job {job.name}: running here")
            outcome = pipeline.run_job(job.pk)
            self.stdout.write(f"job {job.name}: {outcome}")
        elif wait:
            self.follow(job)
        else:
            self.stdout.write(f"job {job.name} queued (id {job.pk}); follow it with: manage.py finetune status "
                              f"{job.name}")
            return
        self.report(FineTuneJob.objects.get(pk=job.pk))

    def follow(self, job: FineTuneJob, poll: float = 2.0) -> None:
        from tqdm import tqdm

        bar = tqdm(total=1, unit="step", desc=job.name, file=self.stdout._out, dynamic_ncols=True)
        try:
            while True:
                job.refresh_from_db()
                progress = job.progress or {}
                if progress.get("total_steps"):
                    bar.total = progress["total_steps"]
                    bar.n = progress.get("step", 0)
                postfix = {"status": job.status}
                if progress.get("loss") is not None:
                    postfix["loss"] = progress["loss"]
                bar.set_postfix(postfix, refresh=True)
                if not job.is_active:
                    break
                time.sleep(poll)
        finally:
            bar.close()

    def report(self, job: FineTuneJob) -> None:
        self.do_status(job.name)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"job {job.name} ended {job.status}: {job.error or job.status_message}")

    def do_status(self, name, **_):
        job = _job(name)
        p = job.progress or {}
        self.stdout.write(f"{job.name}: {job.status} — {job.status_message_display}")
        if p.get("total_steps"):
            eta = f", ETA {p['eta_seconds']} s" if p.get("eta_seconds") is not None and job.is_active else ""
            self.stdout.write(f"  step {p.get('step')}/{p['total_steps']}, epoch {p.get('epoch')}, loss {p.get('loss')}, "
                              f"learning rate {p.get('learning_rate')}{eta}")
        if job.error:
            self.stdout.write(f"  error: {job.error}")
        for key, (before, after) in (job.metrics or {}).get("summary", {}).items():
            self.stdout.write(f"  {key}: base {before:.4f} → fine-tuned {after:.4f}")
        if job.package_dir:
            self.stdout.write(f"  package: {job.package_dir}")

    def do_cancel(self, name, **_):
        job = jobs.request_cancel(_job(name))
        self.stdout.write(f"{job.name}: {job.status} — {job.status_message_display}")

    def do_register(self, name, space_name=None, force=False, reason="", **_):
        space = jobs.register_package(_job(name), space_name=space_name, force=force, reason=reason)
        self.stdout.write(f"registered as space {space.name} (status {space.status}, not active)")

    def do_list(self, **_):
        for job in FineTuneJob.objects.order_by("-created_at"):
            step = (job.progress or {}).get("step")
            total = (job.progress or {}).get("total_steps")
            self.stdout.write(f"{job.name:30} {job.status:11} {f'{step}/{total}' if total else '':>11}  "
                              f"{job.dataset.name}")
