"""Training datasets and fine-tuning jobs (durable records: a worker killed at
any point leaves a row that says where the work stood)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, gettext_lazy as _, gettext_noop


class DatasetStatus(models.TextChoices):
    BUILDING = "building", _("building")
    READY = "ready", _("ready")
    INVALID = "invalid", _("invalid (validation errors)")
    FAILED = "failed", _("failed")


class TrainingDataset(models.Model):
    """(query, positive[, hard negative]) pairs from one or more sources, split
    into train / eval by document. `content_hash` identifies the exact pairs a
    model was trained on (it goes into the package's training_args.json)."""

    name = models.SlugField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    sources = models.JSONField(_("sources"), default=list, blank=True,
                               help_text=_("What the pairs were built from, one entry per source."))
    status = models.CharField(_("status"), max_length=16, choices=DatasetStatus.choices,
                              default=DatasetStatus.BUILDING, db_index=True)
    status_message = models.CharField(_("step"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    content_hash = models.CharField(_("content hash"), max_length=64, blank=True, db_index=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    access_levels = models.JSONField(_("access levels"), default=list, blank=True,
                                     help_text=_("The access levels of the documents the pairs were taken from."))
    validation = models.JSONField(_("validation report"), default=dict, blank=True)
    eval_share = models.FloatField(_("eval share"), default=0.1,
                                   help_text=_("Share of the documents held out for evaluation."))
    seed = models.PositiveIntegerField(_("seed"), default=42)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    built_at = models.DateTimeField(_("built"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("training dataset")
        verbose_name_plural = _("training datasets")

    def __str__(self) -> str:
        return self.name


class PairSource(models.TextChoices):
    PAIRS = "pairs", _("imported positive_pairs.jsonl")
    NEGATIVES = "negatives", _("imported hard_negatives.jsonl")
    METADATA = "metadata", _("imported document_metadata.json")
    BENCHMARK = "benchmark", _("public benchmark")
    FEEDBACK = "feedback", _("search feedback")
    SYNTHETIC = "synthetic", _("synthetic queries")


class Split(models.TextChoices):
    TRAIN = "train", _("train")
    EVAL = "eval", _("eval")


class TrainingPair(models.Model):
    dataset = models.ForeignKey(TrainingDataset, on_delete=models.CASCADE, related_name="pairs")
    query = models.TextField(_("query"))
    positive = models.TextField(_("positive"))
    negative = models.TextField(_("hard negative"), blank=True)
    negative_score = models.FloatField(null=True, blank=True)
    split = models.CharField(_("split"), max_length=8, choices=Split.choices, default=Split.TRAIN, db_index=True)
    source = models.CharField(_("source"), max_length=16, choices=PairSource.choices)
    # The document the positive came from (a portal code, a metadata doc_id, a
    # benchmark passage id): the unit of the train / eval split.
    doc_key = models.CharField(_("document"), max_length=200, blank=True, db_index=True)
    chunk = models.ForeignKey("documents.Chunk", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    access_level = models.PositiveSmallIntegerField(_("access level"), null=True, blank=True)
    query_type = models.CharField(_("query type"), max_length=50, blank=True)
    domain = models.CharField(_("domain"), max_length=50, blank=True)
    line = models.PositiveIntegerField(_("source line"), null=True, blank=True)

    class Meta:
        ordering = ["dataset", "id"]
        verbose_name = _("training pair")
        verbose_name_plural = _("training pairs")


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    VALIDATING = "validating", _("validating the dataset")
    MINING = "mining", _("mining hard negatives")
    TRAINING = "training", _("training")
    EVALUATING = "evaluating", _("evaluating")
    PACKAGING = "packaging", _("writing the package")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.VALIDATING, JobStatus.MINING, JobStatus.TRAINING,
                       JobStatus.EVALUATING, JobStatus.PACKAGING)


class JobStep:
    """What `FineTuneJob.status_message` (and each history entry's `reason`) holds:
    stable English msgids, translated when shown (`status_message_display`).
    Details that vary (who, which folder) go to the history entry's `detail`."""

    CREATED = gettext_noop("Created")
    WAITING_FOR_QUEUE = gettext_noop("Waiting for the task queue (the job starts when it is back)")
    VALIDATING = gettext_noop("Validating the dataset")
    MINING = gettext_noop("Mining hard negatives with the base model")
    EVALUATING_BASE = gettext_noop("Evaluating the base model")
    TRAINING = gettext_noop("Training")
    EVALUATING_TUNED = gettext_noop("Evaluating the fine-tuned model")
    PACKAGING = gettext_noop("Writing the package")
    SUCCEEDED = gettext_noop("Package written")
    CANCEL_REQUESTED = gettext_noop("Cancel requested; stopping at the next step")
    CANCELLED_BEFORE_START = gettext_noop("Cancelled before a worker started it")
    CANCELLED = gettext_noop("Cancelled; training stopped and its partial work was removed")
    INVALID_DATASET = gettext_noop("The dataset has validation errors")
    FAILED = gettext_noop("Failed")
    GAVE_UP = gettext_noop("Gave up: its worker stopped too often")
    REGISTERED = gettext_noop("Package registered as an embedding space")
    # progress phases (progress["phase"])
    EVAL_SPLIT = gettext_noop("Evaluating on the eval split")
    EMBEDDING_GUARD = gettext_noop("Embedding the portal's chunks for the guard sets")
    GUARD_SET = gettext_noop("Evaluating a guard set")


class Loss(models.TextChoices):
    MNRL = "mnrl", _("MultipleNegativesRankingLoss")
    CACHED_MNRL = "cached_mnrl", _("CachedMultipleNegativesRankingLoss (large effective batch)")


class FineTuneJob(models.Model):
    name = models.SlugField(_("name"), max_length=100, unique=True,
                            help_text=_("Also the name of the model package folder."))
    base_space = models.ForeignKey("search.EmbeddingSpace", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("base space"))
    base_model_path = models.CharField(_("base model folder"), max_length=500,
                                       help_text=_("A sentence-transformers folder (taken from the base space "
                                                   "when one is chosen)."))
    # Who may train on what: one job per base at a time (a constraint, not a check).
    base_key = models.CharField(max_length=500, editable=False)
    dataset = models.ForeignKey(TrainingDataset, on_delete=models.PROTECT, related_name="jobs",
                                verbose_name=_("dataset"))
    guard_sets = models.ManyToManyField("evaluation.EvaluationSet", blank=True, related_name="+",
                                        verbose_name=_("guard evaluation sets"),
                                        help_text=_("Evaluation sets never trained on; base and fine-tuned "
                                                    "models are compared on each."))
    loss = models.CharField(_("loss"), max_length=16, choices=Loss.choices, default=Loss.MNRL)
    matryoshka_dims = models.JSONField(_("Matryoshka dimensions"), default=list, blank=True,
                                       help_text=_("Empty: no Matryoshka loss."))
    epochs = models.FloatField(_("epochs"), default=1.0)
    batch_size = models.PositiveIntegerField(_("batch size"), default=32)
    mini_batch_size = models.PositiveIntegerField(_("mini-batch size (cached loss)"), default=8)
    learning_rate = models.FloatField(_("learning rate"), default=3e-5)
    warmup_ratio = models.FloatField(_("warmup ratio"), default=0.1)
    max_length = models.PositiveIntegerField(_("max length (tokens)"), default=128)
    seed = models.PositiveIntegerField(_("seed"), default=42)
    freeze_embeddings = models.BooleanField(_("freeze the word embeddings"), default=True)
    frozen_layers = models.PositiveSmallIntegerField(_("frozen lower layers"), default=0, help_text=_(
        "Train only the layers above the lowest N (and never the embeddings): the backward pass stops there."))
    group_by_length = models.BooleanField(_("group batches by length"), default=True, help_text=_(
        "Batches of texts of similar length: less padding, faster steps."))
    bf16 = models.BooleanField(_("bfloat16 on CPU"), default=True, help_text=_(
        "Run the forward pass in bfloat16 when the CPU has native support; weights stay float32."))
    tuned_share = models.FloatField(_("share of the fine-tuning kept"), default=1.0, help_text=_(
        "1: the fine-tuned weights. Below 1: the base's weights moved only this share of the way to the "
        "fine-tuned ones (weight-space ensembling, WiSE-FT), which keeps more of what the base knew outside "
        "the training data."))
    lora = models.BooleanField(_("LoRA adapters"), default=False)
    lora_rank = models.PositiveSmallIntegerField(_("LoRA rank"), default=16)
    early_stopping_patience = models.PositiveSmallIntegerField(
        _("early stopping patience"), default=2, help_text=_("Evaluations without improvement before stopping; 0: off."))
    eval_every_steps = models.PositiveIntegerField(_("evaluate every N steps"), default=50)
    mine_negatives = models.BooleanField(_("mine hard negatives"), default=False)
    negative_margin = models.FloatField(_("negative margin"), default=0.05, help_text=_(
        "A mined candidate within this cosine of the positive is skipped as a likely false negative."))

    status = models.CharField(_("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED,
                              db_index=True)
    status_message = models.CharField(_("step"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    progress = models.JSONField(_("progress"), default=dict, blank=True,
                                help_text=_("step, total steps, epoch, loss, learning rate, ETA"))
    loss_curve = models.JSONField(_("loss curve"), default=list, blank=True)
    eval_curve = models.JSONField(_("evaluation curve"), default=list, blank=True)
    validation = models.JSONField(_("validation report"), default=dict, blank=True)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    device = models.CharField(_("device"), max_length=50, blank=True)
    work_dir = models.CharField(_("work folder"), max_length=500, blank=True)
    package_dir = models.CharField(_("package folder"), max_length=500, blank=True)
    registered_space = models.ForeignKey("search.EmbeddingSpace", null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+", verbose_name=_("registered space"))
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # Liveness (finetune/services/liveness.py): who runs the job (host:pid:token) and when it
    # was last handed to the queue (the sweep queues a job again only when it is lost).
    holder = models.CharField(_("worker"), max_length=120, blank=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    history = models.JSONField(_("history"), default=list, blank=True,
                               help_text=_("Each change of status, when and why."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("fine-tuning job")
        verbose_name_plural = _("fine-tuning jobs")
        constraints = [
            models.UniqueConstraint(fields=["base_key"], condition=Q(status__in=ACTIVE_JOB_STATUSES),
                                    name="one_active_finetune_job_per_base"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

    @property
    def status_message_display(self) -> str:
        """The current step in the active language (stored as a msgid)."""
        return gettext(self.status_message) if self.status_message else ""
