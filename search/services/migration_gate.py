"""Compare the two spaces of a migration, and the gate that uses the comparison (issue 11 item 4).

`request_compare` queues a comparison on the embed queue; `run_compare` does it:
1. the target's relevance floors and hybrid fusion are calibrated with the existing
   calibration code (search.evaluation.floors, search.evaluation.calibration) and
   stored on the target — a small model's cosines sit in another range than a large
   one's, so the source's floors and weights would be wrong for it. It is calibrated
   on the set the source was calibrated on when that set is in this portal (both
   spaces then stand on the same footing), else on the evaluated set; the record
   says which, and whether that is the evaluated set itself (in-sample);
2. both spaces are scored in hybrid mode by the evaluation runner on the chosen set.

The result is kept in SpaceMigration.comparison. `check_gate` refuses evaluating →
A/B test or promoted without a finished comparison, or when the target's MRR@10 is
lower than the source's by more than PORTAL_MIGRATION_REGRESSION_MARGIN, unless
forced with a reason (recorded in the history entry of the move).
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _, gettext_noop

from search.migration_models import MigrationState as S, SpaceMigration
from search.services.space_migration import MigrationError, need_reason, update_work, who

log = logging.getLogger(__name__)

COMPARE_STATES = (S.EVALUATING, S.AB_TESTING)
GATED_FROM = S.EVALUATING
MODE, DEPTH = "hybrid", 100
HEADLINE = "MRR@10"
SHOWN_METRICS = ("MRR@10", "nDCG@10", "Recall@10", "Recall@100", "Hit@1")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# A comparison's or a retirement's status and phase are stored as English msgids and
# translated where shown (label()).
STATUS_MSGIDS = (gettext_noop("queued"), gettext_noop("running"), gettext_noop("done"), gettext_noop("failed"))
SCORING = {"source": gettext_noop("scoring the source"), "target": gettext_noop("scoring the target")}
BEAT_SECONDS = 5  # how often a running comparison renews `updated_at`


def _evaluation_set(name: str, field: str = "evaluation_set"):
    from search.evaluation.models import EvaluationSet

    evaluation_set = EvaluationSet.objects.filter(name=(name or "").strip()).first()
    if evaluation_set is None:
        names = ", ".join(EvaluationSet.objects.order_by("name").values_list("name", flat=True)[:20])
        raise MigrationError(_("There is no evaluation set named %(name)s (there are: %(names)s).")
                             % {"name": name or "—", "names": names or "—"}, field)
    usable = evaluation_set.items.exclude(relevant_chunks=[], relevant_documents=[]).count()
    if not usable:
        raise MigrationError(_("The evaluation set %(name)s has no item with a relevant chunk or document; it "
                               "cannot score a space.") % {"name": evaluation_set.name}, field)
    return evaluation_set


def calibration_set_for(migration: SpaceMigration, evaluation_set):
    """The set the source's settings were calibrated on, when this portal still has it."""
    from search.evaluation.models import EvaluationSet

    calibration = migration.source.calibration or {}
    for name in (calibration.get("set"), (calibration.get("floors") or {}).get("set")):
        found = EvaluationSet.objects.filter(name=name).first() if name else None
        if found is not None and found.items.exclude(relevant_chunks=[], relevant_documents=[]).exists():
            return found
    return evaluation_set


def _calibrated_on(space) -> set[str]:
    """Names of the sets the space's stored fusion and floors were calibrated on."""
    calibration = space.calibration or {}
    return {name for name in (calibration.get("set"), (calibration.get("floors") or {}).get("set")) if name}


def calibrated_copy(space, cal_set, progress=None):
    """The space with floors and fusion calibrated on `cal_set`, in memory only: the space
    that serves everyone keeps its stored settings. Scoring an uncalibrated source against
    a freshly calibrated target would credit the calibration to the model."""
    from search.evaluation import calibration, floors

    copy = type(space).objects.get(pk=space.pk)
    record = floors.calibrate_floors(cal_set, copy, save=False, progress=progress)
    copy.similarity_floor = record["vector"]["floor"]
    copy.keyword_floor = record["keyword"]["floor"]
    copy.semantic_only_floor = record["semantic_only"]["floor"]
    copy.vector_gap_floor = record["vector_gap"]["floor"]
    chosen = calibration.calibrate(cal_set, copy, save=False, progress=progress)["chosen"]
    for field in ("fusion", "vector_weight", "keyword_weight", "rrf_k", "candidate_depth"):
        setattr(copy, field, chosen[field])
    return copy


def label(value: str | None) -> str:
    """A stored status or phase (an English msgid), in the reader's language."""
    from django.utils.translation import gettext

    return gettext(value) if value else ""


def is_busy(comparison: dict) -> bool:
    """A comparison queued or running, whose worker showed life within the lease."""
    if (comparison or {}).get("status") not in (QUEUED, RUNNING):
        return False
    updated = comparison.get("updated_at")
    if not updated:
        return False
    age = (timezone.now() - datetime.fromisoformat(updated)).total_seconds()
    return age < settings.MIGRATION_LEASE_SECONDS


def request_compare(migration: SpaceMigration, set_name: str, *, by=None, queue: bool = True) -> SpaceMigration:
    """Record a comparison request (a fresh token) and queue it on the embed queue."""
    from portal import tasking
    from search.tasks import compare_spaces_task

    evaluation_set = _evaluation_set(set_name)
    with transaction.atomic():
        row = SpaceMigration.objects.select_for_update().get(pk=migration.pk)
        if row.state not in COMPARE_STATES:
            raise MigrationError(_("Only a migration that is evaluating or A/B testing can compare its spaces; "
                                   "this one is %(state)s.") % {"state": row.get_state_display()}, "state")
        if is_busy(row.comparison):
            raise MigrationError(_("A comparison is running already (on %(set)s); wait for it to finish.")
                                 % {"set": row.comparison.get("set", "?")})
        now = timezone.now().isoformat(timespec="seconds")
        comparison = {"status": QUEUED, "token": uuid.uuid4().hex, "set": evaluation_set.name,
                      "requested_by": who(by), "requested_at": now, "updated_at": now}
        SpaceMigration.objects.filter(pk=row.pk).update(comparison=comparison)
    migration.refresh_from_db()
    if queue and not tasking.send(compare_spaces_task, migration.pk, comparison["token"]):
        _update(migration.pk, comparison["token"], status=FAILED,
                error=_("The task queue cannot be reached; try again when it is back."))
        raise MigrationError(_("The task queue cannot be reached; try again when it is back."))
    migration.refresh_from_db()
    return migration


def _update(pk: int, token: str, **fields) -> bool:
    return update_work("comparison", pk, token, **fields)


def _space_summary(space, run) -> dict:
    perf = run.performance or {}
    return {"name": space.name, "dimension": int(space.dimension), "run": run.pk,
            "metrics": {k: round(float(run.metrics[k]), 6) for k in SHOWN_METRICS if k in (run.metrics or {})},
            "queries": run.query_count, "latency_p50_ms": perf.get("latency_p50_ms"),
            "latency_p95_ms": perf.get("latency_p95_ms")}


def _settings_of(space) -> dict:
    return {"similarity_floor": space.similarity_floor, "keyword_floor": space.keyword_floor,
            "semantic_only_floor": space.semantic_only_floor, "vector_gap_floor": space.vector_gap_floor,
            "fusion": space.fusion,
            "vector_weight": space.vector_weight, "keyword_weight": space.keyword_weight, "rrf_k": space.rrf_k,
            "candidate_depth": space.candidate_depth}


def run_compare(migration_id: int, token: str) -> str:
    """Calibrate the target, score both spaces, store the comparison (module docstring).
    A superseded request (another token) stops without writing anything."""
    from search.evaluation import calibration, floors, runner

    migration = SpaceMigration.objects.select_related("source", "target").filter(pk=migration_id).first()
    if migration is None or (migration.comparison or {}).get("token") != token:
        return "superseded"
    set_name = migration.comparison["set"]
    by = migration.comparison.get("requested_by", "")
    started = time.monotonic()
    last = [0.0]

    def beat(phase: str):
        def progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= BEAT_SECONDS or done == total:
                last[0] = time.monotonic()
                _update(migration_id, token, phase=phase, progress=f"{done}/{total}")
        return progress

    try:
        if not _update(migration_id, token, status=RUNNING, started_at=timezone.now().isoformat(timespec="seconds"),
                       phase=gettext_noop("calibrating the target"), error=""):
            return "superseded"
        evaluation_set = _evaluation_set(set_name)
        source, target = migration.source, migration.target
        cal_set = calibration_set_for(migration, evaluation_set)
        before = _settings_of(target)
        floors.calibrate_floors(cal_set, target, save=True,
                                progress=beat(gettext_noop("calibrating the target's relevance floors")))
        fusion_record = calibration.calibrate(cal_set, target, save=True,
                                              progress=beat(gettext_noop("calibrating the target's fusion")))
        target.refresh_from_db()
        source.refresh_from_db()
        # Both spaces on the same footing: the source as it serves when its settings come from
        # the same set, else scored with settings calibrated here for the comparison only.
        if cal_set.name in _calibrated_on(source):
            source_settings = {"as_served": True, "set": cal_set.name, "settings": _settings_of(source)}
        else:
            source = calibrated_copy(source, cal_set, progress=beat(
                gettext_noop("calibrating the source for this comparison (not stored)")))
            source_settings = {"as_served": False, "set": cal_set.name, "settings": _settings_of(source)}
        spaces = {}
        for role, space in (("source", source), ("target", target)):
            run = runner.evaluate(evaluation_set, space, MODE, depth=DEPTH, measure=False,
                                  name=f"migration-{migration_id}-{role}", progress=beat(SCORING[role]))
            spaces[role] = _space_summary(space, run)
        difference = spaces["target"]["metrics"].get(HEADLINE, 0.0) - spaces["source"]["metrics"].get(HEADLINE, 0.0)
        result = {
            "status": DONE, "phase": "", "progress": "", "mode": MODE, "depth": DEPTH, "metric": HEADLINE,
            "spaces": spaces, "difference": round(difference, 6),
            "calibration": {"set": cal_set.name, "in_sample": cal_set.pk == evaluation_set.pk,
                            "before": before, "after": _settings_of(target),
                            "fusion_adopted_grid_best": fusion_record["chosen"].get("adopted_grid_best")},
            "source_calibration": source_settings,
            "finished_at": timezone.now().isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1)}
        if _update(migration_id, token, **result):
            log.info("migration %s compared by %s on %s: %s %+.4f", migration_id, by, set_name, HEADLINE, difference)
            return DONE
        return "superseded"
    except Exception as exc:
        from portal.tasking import is_transient

        if is_transient(exc):  # the task retries it
            raise
        log.exception("comparison of migration %s failed", migration_id)
        _update(migration_id, token, status=FAILED, phase="", error=f"{type(exc).__name__}: {exc}"[:1000])
        return FAILED


# --- the gate ---------------------------------------------------------------------------

def verdict(migration: SpaceMigration) -> dict:
    """{"ok": bool, "message": str} — may the migration go on, according to its comparison?"""
    comparison = migration.comparison or {}
    margin = float(settings.MIGRATION_REGRESSION_MARGIN)
    if comparison.get("status") != DONE:
        state = comparison.get("status")
        message = (_("The two spaces have not been compared yet (the comparison is %(status)s).")
                   % {"status": state} if state else _("The two spaces have not been compared yet."))
        return {"ok": False, "message": message, "margin": margin}
    spaces, diff = comparison["spaces"], float(comparison["difference"])
    values = {"metric": comparison.get("metric", HEADLINE), "set": comparison.get("set"),
              "target": spaces["target"]["metrics"].get(HEADLINE, 0.0),
              "source": spaces["source"]["metrics"].get(HEADLINE, 0.0), "diff": diff, "margin": margin}
    if diff < -margin - 1e-9:
        return {"ok": False, "difference": diff, "margin": margin, "message": _(
            "The target space scores %(metric)s %(target).4f on %(set)s against the source's %(source).4f "
            "(%(diff)+.4f): worse than the allowed margin of %(margin).3f.") % values}
    return {"ok": True, "difference": diff, "margin": margin, "message": _(
        "The target space scores %(metric)s %(target).4f on %(set)s against the source's %(source).4f "
        "(%(diff)+.4f): within the allowed margin of %(margin).3f.") % values}


def check_gate(migration: SpaceMigration, *, force: bool = False, reason: str = "") -> dict:
    """Before evaluating → A/B test or promoted: refuse (field "gate") unless the
    comparison allows it or the move is forced with a reason. Returns what the
    history entry of the move records."""
    migration.refresh_from_db()
    if force:
        need_reason(reason)
    if migration.state != GATED_FROM:
        return {}
    outcome = verdict(migration)
    if outcome["ok"]:
        return {"gate": outcome["message"]}
    if force:
        return {"forced": True, "gate": outcome["message"]}
    raise MigrationError(outcome["message"] + " " + _("Compare the spaces (again), or force the move with a "
                                                      "reason."), "gate")
