"""A migration between embedding spaces (issue 11): a durable state machine.

planned → backfilling → indexing → evaluating → ab_testing → promoted | rolled_back | cancelled | failed.
The legal moves are search.services.space_migration.LEGAL_MOVES; every move is
recorded in `history` with who made it and why. At most one migration is open
(not promoted, rolled back, cancelled or failed): a partial unique index over a
constant decides, so two requests at once cannot both start one.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.utils.translation import gettext, gettext_lazy as _, gettext_noop


class MigrationState(models.TextChoices):
    PLANNED = "planned", _("planned")
    BACKFILLING = "backfilling", _("backfilling")
    INDEXING = "indexing", _("building the index")
    EVALUATING = "evaluating", _("evaluating")
    AB_TESTING = "ab_testing", _("A/B testing")
    PROMOTED = "promoted", _("promoted")
    ROLLED_BACK = "rolled_back", _("rolled back")
    CANCELLED = "cancelled", _("cancelled")
    FAILED = "failed", _("failed")


def state_label(value: str | None) -> str:
    """A state as stored (e.g. in a history entry), in the reader's language."""
    return MigrationState(value).label if value in MigrationState.values else (value or "·")


OPEN_STATES = (MigrationState.PLANNED, MigrationState.BACKFILLING, MigrationState.INDEXING,
               MigrationState.EVALUATING, MigrationState.AB_TESTING)
# States in which a worker does the work (the watchdog looks after them).
WORKER_STATES = (MigrationState.PLANNED, MigrationState.BACKFILLING, MigrationState.INDEXING)


class MigrationStep:
    """Stable English msgids for `status_message` and each history entry's `reason`,
    translated when shown; what varies (who, numbers) goes to the entry's `detail`."""

    CREATED = gettext_noop("Planned; waiting for a worker of the embed queue")
    WAITING_FOR_QUEUE = gettext_noop("Waiting for the task queue (the migration goes on when it is back)")
    BACKFILLING = gettext_noop("Embedding the chunks into the target space")
    CATCHING_UP = gettext_noop("Embedding chunks that are still missing in the target")
    INDEXING = gettext_noop("Building the target's vector index (CREATE INDEX CONCURRENTLY)")
    INVALID_INDEX_DROPPED = gettext_noop("An invalid index left by a failed build was dropped; rebuilding")
    EVALUATING = gettext_noop("Index built; compare the two spaces before going on")
    AB_TESTING = gettext_noop("A share of the users searches the target space")
    PROMOTED = gettext_noop("The target space is the active space")
    ROLLED_BACK = gettext_noop("All traffic is back on the source space")
    CANCEL_REQUESTED = gettext_noop("Cancel requested; stopping and removing what was built")
    CANCELLED = gettext_noop("Cancelled; the target's vectors and index were removed")
    STALLED = gettext_noop("Stalled: its worker stopped; queued again")
    GAVE_UP = gettext_noop("Gave up: its worker stopped too often without progress")
    FAILED = gettext_noop("Failed")
    RETIRE_REQUESTED = gettext_noop("Retiring the old space was requested")
    RETIRED = gettext_noop("The old space is retired: its vectors and index are deleted")


class SpaceMigration(models.Model):
    source = models.ForeignKey("search.EmbeddingSpace", on_delete=models.PROTECT, related_name="+",
                               verbose_name=_("source space"))
    target = models.ForeignKey("search.EmbeddingSpace", on_delete=models.PROTECT, related_name="+",
                               verbose_name=_("target space"))
    state = models.CharField(_("state"), max_length=16, choices=MigrationState.choices,
                             default=MigrationState.PLANNED, db_index=True)
    status_message = models.CharField(_("step"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    # What the target was before the migration made it a serving (dual-written) space:
    # a cancel or a failure puts it back.
    target_previous_status = models.CharField(_("target's previous status"), max_length=16, blank=True)
    target_previous_share = models.FloatField(_("target's previous traffic share"), default=0.0)
    # Backfill progress: chunks are walked in id order; `cursor` is the last chunk id whose
    # vector is written (committed in the same transaction as the vectors).
    cursor = models.BigIntegerField(_("cursor (last chunk id done)"), default=0)
    done_chunks = models.PositiveIntegerField(_("chunks done"), default=0)
    total_chunks = models.PositiveIntegerField(_("chunks in all"), default=0)
    embedded_chunks = models.PositiveIntegerField(_("chunks encoded"), default=0,
                                                  help_text=_("Chunks this migration encoded (the others already "
                                                              "had a vector in the target)."))
    chunks_per_second = models.FloatField(_("chunks per second"), null=True, blank=True)
    eta_seconds = models.PositiveIntegerField(_("seconds left (estimate)"), null=True, blank=True)
    index_progress = models.JSONField(_("index build progress"), default=dict, blank=True,
                                      help_text=_("Read from pg_stat_progress_create_index."))
    # Liveness: the worker of a step holds the migration's advisory lock and renews
    # heartbeat_at; each queued step carries `step_token` (a stale duplicate stops).
    step_token = models.CharField(max_length=32, blank=True, editable=False)
    holder = models.CharField(_("worker"), max_length=120, blank=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    stalls = models.PositiveSmallIntegerField(_("stalls without progress"), default=0)
    # The two spaces scored side by side before going on (search.services.migration_gate),
    # and the old space's retirement after promote (search.services.migration_retire).
    comparison = models.JSONField(_("comparison"), default=dict, blank=True,
                                  help_text=_("Both spaces scored on an evaluation set, and the target's "
                                              "calibrated settings."))
    retirement = models.JSONField(_("retirement"), default=dict, blank=True,
                                  help_text=_("The source space's retirement: vector storage before and after."))
    history = models.JSONField(_("history"), default=list, blank=True,
                               help_text=_("Each change of state: when, who and why."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("started by"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("backfill started"), null=True, blank=True)
    backfilled_at = models.DateTimeField(_("backfill finished"), null=True, blank=True)
    indexed_at = models.DateTimeField(_("index built"), null=True, blank=True)
    promoted_at = models.DateTimeField(_("promoted"), null=True, blank=True)
    # The A/B test's window (search.services.ab_stats reads the search log between them).
    ab_started_at = models.DateTimeField(_("A/B test started"), null=True, blank=True)
    ab_ended_at = models.DateTimeField(_("A/B test ended"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        app_label = "search"
        ordering = ["-created_at"]
        verbose_name = _("space migration")
        verbose_name_plural = _("space migrations")
        constraints = [
            # A unique index over a constant, restricted to open migrations: at most one such row.
            models.UniqueConstraint(Value(True), condition=Q(state__in=OPEN_STATES), name="one_open_space_migration"),
            models.CheckConstraint(condition=~Q(source=models.F("target")), name="migration_source_is_not_target"),
        ]

    def __str__(self) -> str:
        return f"{self.source.name} → {self.target.name}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def status_message_display(self) -> str:
        return gettext(self.status_message) if self.status_message else ""

    @property
    def percent(self) -> int:
        return int(100 * self.done_chunks / self.total_chunks) if self.total_chunks else 0
