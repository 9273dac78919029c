"""Embedding spaces (the model registry), chunk vectors, the BM25 keyword index,
and the search log with feedback."""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField

from documents.models import AccessLevel, Chunk, Document


class SpaceStatus(models.TextChoices):
    BUILDING = "building", _("building")
    READY = "ready", _("ready")
    ACTIVE = "active", _("active")
    RETIRED = "retired", _("retired")


class FusionMethod(models.TextChoices):
    RRF = "rrf", _("weighted reciprocal rank fusion")
    SCORE = "score", _("weighted normalised-score fusion")


class EmbeddingSpace(models.Model):
    """One embedding model and its settings. Exactly one space is active; a
    ready space with a traffic share serves that share of users (A/B)."""

    name = models.SlugField(_("name"), max_length=64, unique=True)
    model_path = models.CharField(_("model folder"), max_length=500,
                                  help_text=_("A sentence-transformers folder on disk."))
    dimension = models.PositiveIntegerField(_("dimension"), editable=False,
                                            help_text=_("Read from the model."))
    max_seq_length = models.PositiveIntegerField(_("max sequence length"))
    query_prefix = models.CharField(_("query prefix"), max_length=64, blank=True)
    passage_prefix = models.CharField(_("passage prefix"), max_length=64, blank=True)
    normalize = models.BooleanField(_("normalise vectors"), default=True)
    status = models.CharField(_("status"), max_length=16, choices=SpaceStatus.choices,
                              default=SpaceStatus.BUILDING, db_index=True)
    traffic_share = models.FloatField(_("A/B traffic share"), default=0.0,
                                      help_text=_("0–1: share of users served by this space while it is a "
                                                  "ready candidate beside the active one."))
    # hybrid fusion, calibrated per space on an evaluation set
    fusion = models.CharField(_("fusion"), max_length=8, choices=FusionMethod.choices, default=FusionMethod.RRF)
    vector_weight = models.FloatField(_("vector weight"), default=1.0)
    keyword_weight = models.FloatField(_("keyword weight"), default=1.0)
    rrf_k = models.PositiveIntegerField(_("RRF k"), default=60)
    candidate_depth = models.PositiveIntegerField(_("candidates per mode"), default=50)
    similarity_floor = models.FloatField(
        _("similarity floor"), null=True, blank=True,
        help_text=_("Vector neighbours less similar than this are not results (calibrated on an evaluation "
                    "set; empty: no floor)."))
    semantic_only_floor = models.FloatField(
        _("semantic-only floor"), null=True, blank=True,
        help_text=_("In hybrid search, a passage found by meaning alone (no keyword hit above the keyword floor) "
                    "must be at least this similar (calibrated; empty: the similarity floor)."))
    vector_gap_floor = models.FloatField(
        _("clear-winner gap"), null=True, blank=True,
        help_text=_("In hybrid search, a query whose most similar passage is more similar than its 10th by at "
                    "least this much keeps every neighbour above the similarity floor: the semantic-only floor "
                    "applies only to queries without such a clear winner (calibrated; empty: to every query)."))
    keyword_floor = models.FloatField(
        _("keyword floor"), null=True, blank=True,
        help_text=_("Share (0–1) of the query's weight a keyword hit must contain to be a result (calibrated "
                    "on an evaluation set; empty: every keyword hit counts)."))
    answer_floor = models.FloatField(
        _("answer floor"), null=True, blank=True,
        help_text=_("Answers only (search results are unchanged): the share (0–1) of a question's content words "
                    "its best passage must cover, unless the passage is as similar as the semantic-only floor "
                    "asks; below it the answer is \"not found\" (calibrated by calibrate_answers; empty: the "
                    "relevance floors alone decide)."))
    calibration = models.JSONField(_("calibration"), default=dict, blank=True,
                                   help_text=_("How the fusion weights were chosen (set, metric, curve)."))
    model_card = models.JSONField(_("model card"), default=dict, blank=True)
    embedded_chunks = models.PositiveIntegerField(_("embedded chunks"), default=0)
    status_message = models.CharField(_("current step"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    retired_at = models.DateTimeField(_("retired"), null=True, blank=True)

    class Meta:
        ordering = ["-status", "name"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="one_active_space"),
            models.CheckConstraint(condition=Q(traffic_share__gte=0) & Q(traffic_share__lte=1),
                                   name="traffic_share_0_1"),
        ]
        verbose_name = _("embedding space")
        verbose_name_plural = _("embedding spaces")

    def __str__(self) -> str:
        return f"{self.name} ({self.dimension}d, {self.status})"

    @property
    def index_name(self) -> str:
        return f"search_chunkembedding_hnsw_{self.pk}"


class ChunkEmbedding(models.Model):
    """Vectors of every space in ONE table; the column is untyped so spaces of
    different dimensions live side by side, each with its own partial HNSW
    index over `embedding::vector(D)`. A chunk longer than the space's model
    reads has one row per token window (search.services.windows); all of a
    chunk's windows are written in one transaction."""

    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="embeddings")
    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="embeddings")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+",
                                 help_text="denormalised from the chunk: the access filter joins it directly")
    # 0 for the first (usually only) window; "window" is a reserved word in SQL: quote it.
    window = models.PositiveSmallIntegerField(default=0, db_default=0)
    embedding = VectorField()
    # The document's access key, copied onto every vector row so the HNSW scan can
    # apply the access rule without a join per row (documents.selectors.access_key_condition).
    # Written ONLY by the database triggers of migration search/0004, in the same
    # transaction as any change to the document's level, owner or departments.
    doc_access_level = models.PositiveSmallIntegerField(default=AccessLevel.CONFIDENTIAL, editable=False)
    doc_owner_id = models.BigIntegerField(null=True, editable=False)
    doc_department_ids = ArrayField(models.BigIntegerField(), default=list, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "chunk", "window"],
                                               name="one_vector_per_chunk_window_and_space")]
        # Tiny when no chunk needs windows: lets a search ask cheaply whether its space has any.
        indexes = [models.Index(fields=["space"], condition=Q(window__gt=0), name="search_embedding_windowed")]


class KeywordTerm(models.Model):
    """A syllable as written (lower-cased), or its accent-folded form (prefix '~')."""

    term = models.CharField(max_length=100, unique=True)
    df = models.PositiveIntegerField(default=0)
    folded = models.CharField(max_length=100, null=True, blank=True,
                              help_text="accent-folded form of an exact term (null for '~' and reserved terms): "
                                        "finds the accented forms of a query typed without accents")

    class Meta:
        indexes = [models.Index(fields=["folded"], name="search_term_folded",
                                condition=Q(folded__isnull=False))]


class KeywordPosting(models.Model):
    """BM25 postings: the per-posting weight bakes in tf, length and the average
    length (measured 3.5–4× faster than joining chunk statistics). The document
    is copied in so the access filter (a semi-join on visible document ids) needs
    no join through chunks. Access levels are NOT copied: a stale copy could show
    or hide a document wrongly; the access function is always applied."""

    term = models.ForeignKey(KeywordTerm, on_delete=models.CASCADE, db_index=False)
    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+", db_index=False)
    weight = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["term", "chunk"], name="one_posting_per_term_chunk",
                                               include=["weight", "document"])]
        indexes = [models.Index(fields=["chunk"], name="search_posting_chunk"),
                   models.Index(fields=["document"], name="search_posting_document"),
                   # a term's postings, heaviest first: a very common query term is
                   # read only as far as its best postings (keyword_index.TERM_CAP)
                   models.Index(fields=["term", "-weight"], include=["chunk", "document"],
                                name="search_posting_impact")]


class KeywordStats(models.Model):
    """Corpus statistics behind the baked-in weights (one row)."""

    chunk_count = models.PositiveIntegerField(default=0)
    total_length = models.PositiveBigIntegerField(default=0)
    avg_length_at_build = models.FloatField(default=0)
    rebuilt_at = models.DateTimeField(null=True, blank=True)


class SearchMode(models.TextChoices):
    HYBRID = "hybrid", _("hybrid")
    VECTOR = "vector", _("vector")
    KEYWORD = "keyword", _("keyword")
    RERANK = "rerank", _("hybrid + rerank")


class SearchArm(models.TextChoices):
    """Which side of a migration's A/B test a search was routed to (blank: no A/B test ran)."""
    SOURCE = "source", _("source")
    TARGET = "target", _("target")


class SearchLog(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             verbose_name=_("user"))
    client_key = models.CharField(_("anonymous visitor"), max_length=64, blank=True,
                                  help_text=_("Anonymous searches: a hash of the visitor's cookie id (their votes)."))
    query = models.CharField(_("query"), max_length=500)
    mode = models.CharField(_("mode"), max_length=16, choices=SearchMode.choices)
    space = models.ForeignKey(EmbeddingSpace, null=True, blank=True, on_delete=models.SET_NULL,
                              verbose_name=_("space"))
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    results = models.JSONField(_("results"), default=list, blank=True, help_text="[{rank, chunk_id, document_id, score}]")
    page = models.PositiveIntegerField(_("page"), default=1)
    result_count = models.PositiveIntegerField(_("results found"), default=0)
    latency_ms = models.FloatField(_("latency (ms)"), default=0)
    via = models.CharField(_("via"), max_length=8, default="portal")
    # Set only while a migration's A/B test runs, and only for callers the sticky bucket
    # can place (signed in, or an anonymous visitor with a cookie id): the others always
    # get the active space and would skew the source arm.
    arm = models.CharField(_("A/B arm"), max_length=8, choices=SearchArm.choices, blank=True, default="")
    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        # The A/B report reads one migration's window: only the few rows with an arm are indexed.
        indexes = [models.Index(fields=["created_at", "arm"], condition=~Q(arm=""), name="search_log_ab_window")]
        verbose_name = _("search log entry")
        verbose_name_plural = _("search log")


class Feedback(models.Model):
    class Kind(models.TextChoices):
        HELPFUL = "helpful", _("helpful")
        NOT_HELPFUL = "not_helpful", _("not helpful")
        CLICK = "click", _("click")

    search = models.ForeignKey(SearchLog, on_delete=models.CASCADE, related_name="feedback",
                               verbose_name=_("search"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             verbose_name=_("user"))
    chunk = models.ForeignKey(Chunk, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("chunk"))
    document = models.ForeignKey(Document, on_delete=models.CASCADE, verbose_name=_("document"))
    rank = models.PositiveIntegerField(_("rank"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")


# The migration between spaces lives in its own module (issue 11); imported here so Django finds it.
from search.migration_models import SpaceMigration  # noqa: E402,F401
# The tantivy keyword index's change log and copies (issue 12).
from search.keyword_models import KeywordChange, KeywordIndexCopy  # noqa: E402,F401
