"""Building a TrainingDataset from any mix of sources (the package docstring
lists them). Everything that can be checked before any work — the name, the
options, every line of every imported file, the benchmark file, the chat
endpoint's configuration — is checked first: a refusal (`DatasetRefused`, with
every problem) writes nothing. Then the dataset row is created (building), the
pairs are gathered and split, and written in one transaction: a build that
fails half-way leaves the row marked failed with the reason and no pairs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from finetune.models import DatasetStatus, PairSource, TrainingDataset, TrainingPair
from finetune.services.datasets import imports, splitting, synthetic
from finetune.services.datasets.answer_feedback import answer_feedback_records
from finetune.services.datasets.benchmark import benchmark_records
from finetune.services.datasets.feedback import feedback_records
from finetune.services.datasets.records import PairRecord, SourceError, SourceFile
from finetune.services.texts import near_key

Progress = Callable[[str, int, int], None]
SYNTHETIC_SCOPES = ("portal", "metadata")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


class DatasetRefused(ValueError):
    """The dataset cannot be built as asked; `problems` says why (all of it)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class DatasetSpec:
    pairs: SourceFile | None = None
    negatives: SourceFile | None = None
    metadata: SourceFile | None = None
    vicov_train: str | Path | None = None
    vicov_val: str | Path | None = None
    feedback: bool = False
    synthetic: str = ""  # "", "offline" or "http"
    synthetic_from: tuple[str, ...] = ("portal",)
    synthetic_codes: list[str] | None = None  # only these portal documents (None: every visible one)
    per_chunk: int = 3
    exclude_eval_sets: list[str] = field(default_factory=list)  # never train on these sets' queries
    eval_share: float = 0.1
    seed: int = 42
    description: str = ""

    @property
    def reads_portal(self) -> bool:
        return self.feedback or (bool(self.synthetic) and "portal" in self.synthetic_from)


@dataclass
class _Prepared:
    imported: list[imports.ImportedPairs] = field(default_factory=list)
    metadata: list[imports.MetadataDocument] | None = None
    metadata_name: str = ""
    benchmark: tuple[list[PairRecord], dict] | None = None
    generator: object = None
    excluded_queries: set[str] = field(default_factory=set)


def _check_options(name: str, spec: DatasetSpec, user) -> list[str]:
    problems = []
    if not name or len(name) > 100 or not _SLUG.match(name):
        problems.append(_("The name must be 1-100 letters, digits, '-' or '_'."))
    elif TrainingDataset.objects.filter(name=name).exists():
        problems.append(_("A dataset named %(name)s exists already.") % {"name": repr(name)})
    if not (spec.pairs or spec.negatives or spec.vicov_train or spec.feedback or spec.synthetic):
        problems.append(_("Name at least one source: pairs, hard negatives, the benchmark, feedback or synthetic "
                          "queries (metadata alone gives no pairs)."))
    if not 0 <= spec.eval_share <= 0.5:
        problems.append(_("The eval share must be between 0 and 0.5."))
    if not 1 <= spec.per_chunk <= 20:
        problems.append(_("Synthetic queries per chunk must be between 1 and 20."))
    if spec.synthetic and spec.synthetic not in synthetic.GENERATORS:
        problems.append(_("Unknown synthetic generator %(name)s (choose %(choices)s).") % {
            "name": repr(spec.synthetic), "choices": ", ".join(synthetic.GENERATORS)})
    if spec.synthetic and (not spec.synthetic_from or set(spec.synthetic_from) - set(SYNTHETIC_SCOPES)):
        problems.append(_("Synthetic queries come from portal and/or metadata chunks."))
    if spec.synthetic and "metadata" in spec.synthetic_from and spec.metadata is None:
        problems.append(_("Synthetic queries from metadata chunks need a document_metadata.json."))
    if spec.reads_portal and user is None:
        problems.append(_("Feedback and synthetic queries read portal chunks: name the user whose access applies."))
    if spec.vicov_val and not spec.vicov_train:
        problems.append(_("The benchmark's val file goes with its train file."))
    return problems


def prepare(name: str, spec: DatasetSpec, user) -> _Prepared:
    """Every check that needs no work; raises DatasetRefused with every problem."""
    from search.evaluation.models import EvaluationItem, EvaluationSet

    problems = _check_options(name, spec, user)
    prepared = _Prepared()
    for source, negatives in ((spec.pairs, False), (spec.negatives, True)):
        if source is not None:
            try:
                prepared.imported.append(imports.parse_pairs(source, negatives=negatives))
            except SourceError as exc:
                problems += [f"{exc.source}: {p}" for p in exc.problems]
    if spec.metadata is not None:
        try:
            prepared.metadata = imports.parse_metadata(spec.metadata)
            prepared.metadata_name = spec.metadata.name
        except SourceError as exc:
            problems += [f"{exc.source}: {p}" for p in exc.problems]
    if spec.vicov_train:
        try:
            prepared.benchmark = benchmark_records(spec.vicov_train, spec.vicov_val)
        except SourceError as exc:
            problems += [f"{exc.source}: {p}" for p in exc.problems]
    if spec.synthetic in synthetic.GENERATORS:
        try:
            prepared.generator = synthetic.make_generator(spec.synthetic, spec.per_chunk)
        except synthetic.ChatError as exc:
            problems.append(str(exc))
    for set_name in spec.exclude_eval_sets:
        if not EvaluationSet.objects.filter(name=set_name).exists():
            problems.append(_("No evaluation set named %(name)s.") % {"name": repr(set_name)})
        prepared.excluded_queries |= {near_key(q) for q in
                                      EvaluationItem.objects.filter(evaluation_set__name=set_name)
                                      .values_list("query", flat=True)}
    if problems:
        raise DatasetRefused(problems)
    return prepared


def _username(user) -> str:
    return getattr(user, "username", "") or "anonymous"


def _gather(prepared: _Prepared, spec: DatasetSpec, user, progress: Progress | None) -> tuple[list[PairRecord], list]:
    records: list[PairRecord] = []
    reports: list[dict] = []
    index = imports.MetadataIndex(prepared.metadata) if prepared.metadata else None
    for imported in prepared.imported:
        if index is not None:
            imported.report["matched_to_metadata"] = imports.attach_metadata(imported.records, index)
        records += imported.records
        reports.append(imported.report)
    if prepared.metadata is not None:
        reports.append({"source": str(PairSource.METADATA), "file": prepared.metadata_name,
                        "documents": len(prepared.metadata),
                        "chunks": sum(len(d.chunks) for d in prepared.metadata)})
    if prepared.benchmark is not None:
        records += prepared.benchmark[0]
        reports.append(prepared.benchmark[1])
    if spec.feedback:  # search feedback, then answer feedback (both read through the user's access)
        for read in (feedback_records, answer_feedback_records):
            found, report = read(user)
            records += found
            reports.append({**report, "as_user": _username(user)})
    if prepared.generator is not None:
        def tick(done, total):
            if progress:
                progress("synthetic queries", done, total)

        for scope in spec.synthetic_from:
            if scope == "portal":
                chunks, total = (synthetic.portal_chunks(user, spec.synthetic_codes),
                                 synthetic.visible_chunks(user, spec.synthetic_codes).count())
            else:
                chunks, total = synthetic.metadata_chunks(prepared.metadata), sum(len(d.chunks) for d in prepared.metadata)
            found, report = synthetic.synthetic_records(prepared.generator, chunks, per_chunk=spec.per_chunk,
                                                        total=total, progress=tick)
            records += found
            reports.append({**report, "from": scope, **({"as_user": _username(user)} if scope == "portal" else {})})
    return records, reports


def summarise(dataset: TrainingDataset) -> None:
    """Counts, access levels and the content hash, from the stored pairs."""
    pairs = dataset.pairs.all()
    rows = [(s, src, key, bool(neg), level) for s, src, key, neg, level in
            pairs.values_list("split", "source", "doc_key", "negative", "access_level")]
    extra = {k: v for k, v in (dataset.counts or {}).items() if k in ("duplicates_merged", "groups",
                                                                       "negatives_dropped_for_leakage",
                                                                       "excluded_queries")}
    dataset.counts = {**splitting.counts_of(rows), **extra}
    dataset.access_levels = sorted({level for *_, level in rows if level is not None})
    dataset.content_hash = splitting.content_hash(pairs.values_list("split", "query", "positive", "negative"))


def build_dataset(name: str, spec: DatasetSpec, user=None, progress: Progress | None = None) -> TrainingDataset:
    """Build and validate (without a model: token lengths are checked when a job
    validates with its model). Returns the dataset: ready, invalid (validation
    errors, in `validation`) or failed (`error`). Raises DatasetRefused before
    writing anything."""
    from finetune.services.validation import record_validation

    prepared = prepare(name, spec, user)
    dataset = TrainingDataset.objects.create(
        name=name, description=spec.description, status=DatasetStatus.BUILDING, eval_share=spec.eval_share,
        seed=spec.seed, created_by=user if getattr(user, "is_authenticated", False) else None,
        status_message="reading the sources")
    try:
        # gathered outside the transaction: a chat endpoint may take hours, and a
        # transaction held open that long keeps PostgreSQL from vacuuming
        records, reports = _gather(prepared, spec, user, progress)
        excluded = len(records)
        records = [r for r in records if near_key(r.query) not in prepared.excluded_queries]
        excluded -= len(records)
        records, merged = splitting.merge_duplicates(records)
        if progress:
            progress("splitting", 0, len(records))
        split = splitting.assign_splits(records, spec.eval_share, spec.seed)
        with transaction.atomic():
            TrainingPair.objects.bulk_create([
                TrainingPair(dataset=dataset, query=r.query, positive=r.positive, negative=r.negative,
                             negative_score=r.negative_score, split=r.split, source=r.source, doc_key=r.doc_key[:200],
                             chunk_id=r.chunk_id, access_level=r.access_level, query_type=r.query_type[:50],
                             domain=r.domain[:50], line=r.line) for r in records], batch_size=1000)
            dataset.sources = reports
            dataset.counts = {"duplicates_merged": merged, "excluded_queries": excluded, **split}
            summarise(dataset)
            dataset.built_at = timezone.now()
            dataset.status_message = ""
            dataset.save()
            record_validation(dataset)
        if progress:
            progress("splitting", len(records), len(records))  # the bar ends full, not at 0
    except (SourceError, synthetic.ChatError) as exc:
        _failed(dataset, str(exc))
    except Exception as exc:
        _failed(dataset, f"{type(exc).__name__}: {exc}")
        raise
    dataset.refresh_from_db()
    return dataset


def _failed(dataset: TrainingDataset, error: str) -> None:
    TrainingDataset.objects.filter(pk=dataset.pk).update(status=DatasetStatus.FAILED, error=error[:5000],
                                                         status_message="")
