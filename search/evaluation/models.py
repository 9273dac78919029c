"""Evaluation sets (query → relevant chunks or documents), evaluation runs and
their per-query results: the models of the `evaluation` app. Their tables keep
the names they had when the models lived in the search app."""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["EvaluationSet", "EvaluationItem", "EvaluationRun", "EvaluationQueryResult", "RunStatus"]


class EvaluationSet(models.Model):
    class Source(models.TextChoices):
        JSONL = "jsonl", _("imported eval_pairs.jsonl")
        FEEDBACK = "feedback", _("built from search feedback")
        BENCHMARK = "benchmark", _("external benchmark")
        MANUAL = "manual", _("entered by hand")

    name = models.SlugField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices, default=Source.MANUAL)
    import_report = models.JSONField(_("import report"), default=dict, blank=True,
                                     help_text=_("Counts, unresolved positives and other findings of the import."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "search_evaluationset"
        ordering = ["name"]
        verbose_name = _("evaluation set")
        verbose_name_plural = _("evaluation sets")

    def __str__(self) -> str:
        return self.name


class EvaluationItem(models.Model):
    """One query and what is relevant to it: chunk ids (chunk-level relevance)
    or document codes (document-level). `grades` maps an id or code to a graded
    relevance (missing = 1). An item whose positive text matched no chunk keeps
    the text and no relevant ids: the runner skips it and says so."""

    evaluation_set = models.ForeignKey(EvaluationSet, on_delete=models.CASCADE, related_name="items")
    query = models.CharField(_("query"), max_length=1000)
    positive = models.TextField(_("positive text"), blank=True,
                                help_text=_("Resolved to the chunk(s) containing it on import."))
    relevant_chunks = ArrayField(models.BigIntegerField(), default=list, blank=True,
                                 verbose_name=_("relevant chunk ids"))
    relevant_documents = ArrayField(models.CharField(max_length=64), default=list, blank=True,
                                    verbose_name=_("relevant document codes"))
    grades = models.JSONField(_("grades"), default=dict, blank=True)
    line = models.PositiveIntegerField(_("source line"), null=True, blank=True)

    class Meta:
        db_table = "search_evaluationitem"
        ordering = ["evaluation_set_id", "pk"]
        verbose_name = _("evaluation item")
        verbose_name_plural = _("evaluation items")

    def __str__(self) -> str:
        return self.query[:80]

    @property
    def level(self) -> str:
        return "chunk" if self.relevant_chunks else "document" if self.relevant_documents else "unresolved"


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class EvaluationRun(models.Model):
    """One (set, space, mode) evaluation. The metrics most people compare are
    copied into columns so the admin can list and sort the history."""

    name = models.CharField(_("report name"), max_length=120, blank=True,
                            help_text=_("Runs started together share a report folder."))
    evaluation_set = models.ForeignKey(EvaluationSet, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="runs", verbose_name=_("evaluation set"))
    set_name = models.CharField(_("set"), max_length=120, blank=True)
    space = models.ForeignKey("search.EmbeddingSpace", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="evaluation_runs", verbose_name=_("space"))
    space_name = models.CharField(_("space name"), max_length=120, blank=True)
    model_path = models.CharField(_("model"), max_length=500, blank=True)
    mode = models.CharField(_("mode"), max_length=16, default="hybrid")
    as_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", verbose_name=_("evaluated as"),
                                help_text=_("Empty: every ready document."))
    depth = models.PositiveIntegerField(_("depth"), default=100)
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED,
                              db_index=True)
    progress = models.PositiveSmallIntegerField(_("progress %"), default=0)
    status_message = models.CharField(_("step"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    performance = models.JSONField(_("performance"), default=dict, blank=True)
    mrr_at_10 = models.FloatField("MRR@10", null=True, blank=True)
    hit_at_1 = models.FloatField("Hit@1", null=True, blank=True)
    query_count = models.PositiveIntegerField(_("queries"), default=0)
    skipped = models.PositiveIntegerField(_("skipped items"), default=0)
    report_dir = models.CharField(_("report folder"), max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "search_evaluationrun"
        ordering = ["-created_at", "-pk"]
        verbose_name = _("evaluation run")
        verbose_name_plural = _("evaluation runs")

    def __str__(self) -> str:
        return f"#{self.pk} {self.set_name} · {self.space_name or '—'} · {self.mode}"

    @property
    def label(self) -> str:
        return f"{self.space_name or 'no space'} · {self.mode}"


class EvaluationQueryResult(models.Model):
    """What one query got: the rank of the first relevant result (None: not in
    the top `depth`), its metrics, and the results that came first."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(EvaluationItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    query = models.CharField(max_length=1000)
    level = models.CharField(max_length=10, default="chunk")
    relevant = models.JSONField(default=list, help_text="relevant chunk ids or document codes")
    first_relevant_rank = models.PositiveIntegerField(null=True, blank=True)
    reciprocal_rank = models.FloatField(default=0)
    ndcg_at_10 = models.FloatField(default=0)
    latency_ms = models.FloatField(default=0)
    expected = models.TextField(blank=True, help_text="the start of the (first) relevant chunk or document")
    top = models.JSONField(default=list, blank=True,
                           help_text="[{rank, id, document, score, relevant, text}] of the first results")

    class Meta:
        db_table = "search_evaluationqueryresult"
        ordering = ["run_id", "reciprocal_rank", "pk"]
