"""manage.py finetune_dataset build|validate|list|samples — training datasets.

  build NAME [--pairs F] [--negatives F] [--metadata F] [--vicov-train PATH [--vicov-val PATH]]
             [--feedback] [--synthetic offline|http [--synthetic-from portal,metadata] [--per-chunk N]]
             [--as-user USERNAME] [--eval-share 0.1] [--seed 42] [--exclude-eval-set NAME …] [--replace]
  validate NAME [--model FOLDER | --space NAME] [--max-length N]
  samples NAME --as-user USERNAME   offline synthetic queries for the sample corpus (load_samples first)
  list
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import ProtectedError
from tqdm import tqdm

from finetune.models import TrainingDataset
from finetune.services.datasets import DatasetRefused, DatasetSpec, SourceError, SourceFile, build_dataset
from finetune.services.datasets.samples import build_sample_dataset
from finetune.services.validation import record_validation


class _Bars:
    """One tqdm bar per stage of the build."""

    def __init__(self, stdout):
        self.stdout, self.bar, self.stage = stdout, None, None

    def __call__(self, stage: str, done: int, total: int):
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="item", file=self.stdout)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Command(BaseCommand):
    help = "Build, validate and list training datasets for fine-tuning."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        build = sub.add_parser("build", help="build a dataset from any mix of sources")
        build.add_argument("name")
        build.add_argument("--pairs", help="positive_pairs.jsonl")
        build.add_argument("--negatives", help="hard_negatives.jsonl")
        build.add_argument("--metadata", help="document_metadata.json")
        build.add_argument("--vicov-train", help="the vicov19qa train CSV (read in place)")
        build.add_argument("--vicov-val", help="the vicov19qa val CSV: its questions form the eval split")
        build.add_argument("--feedback", action="store_true", help="pairs from search and answer feedback")
        build.add_argument("--synthetic", choices=["offline", "http"], help="synthetic queries for chunks")
        build.add_argument("--synthetic-from", default="portal", help="portal, metadata or portal,metadata")
        build.add_argument("--synthetic-documents", help="only these portal document codes (comma-separated)")
        build.add_argument("--per-chunk", type=int, default=3, help="synthetic queries per chunk")
        build.add_argument("--exclude-eval-set", action="append", default=[],
                           help="leave out queries of this evaluation set (a guard set); repeatable")
        self._common(build)
        build.add_argument("--replace", action="store_true", help="delete a dataset of this name first")
        samples = sub.add_parser("samples", help="offline synthetic queries for the sample corpus")
        samples.add_argument("name")
        samples.add_argument("--generator", choices=["offline", "http"], default="offline")
        samples.add_argument("--per-chunk", type=int, default=3)
        samples.add_argument("--exclude-eval-set", action="append", default=[])
        self._common(samples)
        samples.add_argument("--replace", action="store_true")
        validate = sub.add_parser("validate", help="run the validation report again")
        validate.add_argument("name")
        validate.add_argument("--model", help="a sentence-transformers folder (token lengths)")
        validate.add_argument("--space", help="the model of this embedding space (token lengths)")
        validate.add_argument("--max-length", type=int, default=512)
        sub.add_parser("list")

    def _common(self, parser):
        parser.add_argument("--as-user", help="whose access applies to portal chunks and feedback")
        parser.add_argument("--eval-share", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--description", default="")

    def handle(self, action, **opts):
        getattr(self, "do_" + action)(**opts)

    def _user(self, username):
        if not username:
            return None
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        return user

    def _replace(self, name, replace):
        if replace:
            try:
                TrainingDataset.objects.filter(name=name).delete()
            except ProtectedError:
                raise CommandError(f"{name} is used by a fine-tuning job and cannot be replaced.") from None

    def _run(self, name, build):
        bars = _Bars(self.stdout)
        try:
            dataset = build(bars)
        except DatasetRefused as exc:
            raise CommandError("The dataset cannot be built:\n  " + "\n  ".join(exc.problems)) from None
        finally:
            bars.close()
        self._report(dataset)
        if dataset.status == "failed":
            raise CommandError(f"{name}: the build failed: {dataset.error}")

    def do_build(self, name, **opts):
        user = self._user(opts["as_user"])
        try:
            files = {key: SourceFile.from_path(opts[key]) for key in ("pairs", "negatives", "metadata") if opts[key]}
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        codes = [c.strip() for c in (opts["synthetic_documents"] or "").split(",") if c.strip()] or None
        spec = DatasetSpec(**files, vicov_train=opts["vicov_train"], vicov_val=opts["vicov_val"],
                           feedback=opts["feedback"], synthetic=opts["synthetic"] or "",
                           synthetic_from=tuple(s.strip() for s in opts["synthetic_from"].split(",") if s.strip()),
                           synthetic_codes=codes, per_chunk=opts["per_chunk"],
                           exclude_eval_sets=opts["exclude_eval_set"], eval_share=opts["eval_share"],
                           seed=opts["seed"], description=opts["description"])
        self._replace(name, opts["replace"])
        self._run(name, lambda bars: build_dataset(name, spec, user, progress=bars))

    def do_samples(self, name, **opts):
        user = self._user(opts["as_user"])
        self._replace(name, opts["replace"])
        self._run(name, lambda bars: build_sample_dataset(
            name, user, generator=opts["generator"], per_chunk=opts["per_chunk"], eval_share=opts["eval_share"],
            seed=opts["seed"], exclude_eval_sets=opts["exclude_eval_set"], progress=bars))

    def do_validate(self, name, model=None, space=None, max_length=512, **opts):
        dataset = TrainingDataset.objects.filter(name=name).first()
        if dataset is None:
            raise CommandError(f"No dataset named {name!r}.")
        if space:
            from search.models import EmbeddingSpace

            found = EmbeddingSpace.objects.filter(name=space).first()
            if found is None:
                raise CommandError(f"No space named {space!r}.")
            model = found.model_path
        record_validation(dataset, model, max_length)
        dataset.refresh_from_db()
        self._report(dataset)
        if dataset.validation.get("errors"):
            raise CommandError(f"{name}: {len(dataset.validation['errors'])} validation errors.")

    def do_list(self, **opts):
        for d in TrainingDataset.objects.order_by("name"):
            counts = d.counts or {}
            self.stdout.write(f"{d.name:32} {d.status:8} train {counts.get('train', {}).get('pairs', 0):6} "
                              f"eval {counts.get('eval', {}).get('pairs', 0):5} levels {d.access_levels} "
                              f"{d.content_hash[:12]}")

    def _report(self, dataset):
        counts = dataset.counts or {}
        self.stdout.write(f"{dataset.name}: {dataset.status}; {counts.get('pairs', 0)} pairs "
                          f"(train {counts.get('train', {}).get('pairs', 0)}, eval {counts.get('eval', {}).get('pairs', 0)}), "
                          f"{counts.get('documents', 0)} documents, access levels {dataset.access_levels}, "
                          f"hash {dataset.content_hash[:16]}")
        for source, c in (counts.get("by_source") or {}).items():
            self.stdout.write(f"  {source}: {c['pairs']} pairs ({c['train']} train, {c['eval']} eval, "
                              f"{c['negatives']} with a negative)")
        report = dataset.validation or {}
        for kind in ("errors", "warnings"):
            for finding in report.get(kind, []):
                self.stdout.write(f"  {kind[:-1].upper()} {finding['code']}: {finding['message']}")
