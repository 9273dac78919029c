"""Migrations between embedding spaces: the state machine (issue 11).

Every change of state goes through `transition`, which locks the row, refuses a
move that is not in LEGAL_MOVES with a message that says what is possible, and
records when, who and why in the history. The work of the states a worker runs
(backfilling, indexing) is in search.services.migration_worker; this module holds
what people do: start, cancel, advance (A/B test, promote) and roll back.

One open migration at a time is a database constraint (`one_open_space_migration`):
two requests at once cannot both pass a check, so the constraint decides and its
IntegrityError becomes a clear error.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from search.migration_models import OPEN_STATES, WORKER_STATES, MigrationState as S, MigrationStep, SpaceMigration
from search.models import EmbeddingSpace, SpaceStatus

log = logging.getLogger(__name__)

HISTORY_KEPT = 200

# The legal moves. Final states: promoted (a rollback is still possible while the
# old space is kept), rolled_back, cancelled, failed.
LEGAL_MOVES: dict[str, tuple[str, ...]] = {
    S.PLANNED: (S.BACKFILLING, S.CANCELLED, S.FAILED),
    S.BACKFILLING: (S.INDEXING, S.CANCELLED, S.FAILED),
    S.INDEXING: (S.EVALUATING, S.CANCELLED, S.FAILED),
    S.EVALUATING: (S.AB_TESTING, S.PROMOTED, S.CANCELLED, S.FAILED),
    S.AB_TESTING: (S.PROMOTED, S.ROLLED_BACK, S.CANCELLED, S.FAILED),
    S.PROMOTED: (S.ROLLED_BACK,),
    S.ROLLED_BACK: (),
    S.CANCELLED: (),
    S.FAILED: (),
}


class MigrationError(ValueError):
    """A migration that cannot be started or moved; the message says why and what to do.
    `field` names the form field at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class TakenOver(Exception):
    """Another step of the migration was queued (the watchdog, a cancel): this one stops."""


def _chunks_to_embed(space: EmbeddingSpace):
    """The chunks a space must have a vector for."""
    from documents.models import Chunk

    # chunk sets (issue 11): becomes chunk_sets.chunks_for(space)
    return Chunk.objects.all()


def who(by) -> str:
    if by is None:
        return "system"
    if isinstance(by, str):
        return by
    return getattr(by, "username", "") or str(by)


def _label(state: str) -> str:
    return str(S(state).label)


def _event(old: str, new: str, by, step: str, reason: str = "", extra: dict | None = None) -> dict:
    return {"at": timezone.now().isoformat(timespec="seconds"), "from": str(old), "to": str(new),
            "by": who(by), "step": step, "reason": (reason or "")[:500], **(extra or {})}


def record(migration: SpaceMigration, step: str, by=None, reason: str = "", **fields) -> None:
    """Add a history entry (and set `fields`) without changing the state."""
    with transaction.atomic():
        row = SpaceMigration.objects.select_for_update().get(pk=migration.pk)
        history = (list(row.history or []) + [_event(row.state, row.state, by, step, reason)])[-HISTORY_KEPT:]
        SpaceMigration.objects.filter(pk=row.pk).update(history=history, status_message=step[:200], **fields)
    migration.refresh_from_db()


def transition(migration: SpaceMigration, to: str, by=None, reason: str = "", *, step: str = "",
               token: str | None = None, extra: dict | None = None, **fields) -> SpaceMigration:
    """Move the migration to `to`, recording who and why; an illegal move is refused.
    `step` is a MigrationStep msgid (status_message); `token`, when given, must be the
    row's step token (a worker whose step was superseded must not move the state);
    `extra` adds keys to the history entry (a forced gate: forced, gate)."""
    with transaction.atomic():
        row = SpaceMigration.objects.select_for_update().get(pk=migration.pk)
        if token is not None and row.step_token != token:
            raise TakenOver(f"migration {row.pk}: step {token} was superseded")
        if to not in LEGAL_MOVES[row.state]:
            allowed = ", ".join(_label(s) for s in LEGAL_MOVES[row.state])
            raise MigrationError(
                _("A migration that is %(state)s cannot become %(to)s (possible: %(allowed)s).")
                % {"state": _label(row.state), "to": _label(to), "allowed": allowed or _("nothing, it has ended")},
                "state")
        history = (list(row.history or []) + [_event(row.state, to, by, step, reason, extra)])[-HISTORY_KEPT:]
        now = timezone.now()
        stamps = {S.BACKFILLING: "started_at", S.INDEXING: "backfilled_at", S.EVALUATING: "indexed_at",
                  S.PROMOTED: "promoted_at"}
        if to in stamps:
            fields.setdefault(stamps[to], now)
        # The A/B test's window: the report reads the search log between these two.
        if to == S.AB_TESTING:
            fields.setdefault("ab_started_at", now)
        if row.state == S.AB_TESTING:
            fields.setdefault("ab_ended_at", now)
        if to not in OPEN_STATES:
            fields.setdefault("finished_at", now)
        SpaceMigration.objects.filter(pk=row.pk).update(state=to, status_message=step[:200], history=history,
                                                        **fields)
    migration.refresh_from_db()
    return migration


# --- starting ----------------------------------------------------------------------

def start(target: EmbeddingSpace, *, source: EmbeddingSpace | None = None, by=None, reason: str = "",
          queue: bool = True) -> SpaceMigration:
    """Plan a migration from the active space to `target` and hand it to the embed queue.
    From now on the target is a serving space (status building): every new, changed or
    deleted document is written to it as well as to the source."""
    from search.services.spaces import active_space

    active = active_space()
    source = source or active
    if source is None:
        raise MigrationError(_("There is no active space to migrate from."), "source")
    if active is None or source.pk != active.pk:
        raise MigrationError(_("Migrate from the active space (%(active)s); %(source)s is not active.")
                             % {"active": active.name if active else "—", "source": source.name}, "source")
    target.refresh_from_db()
    if target.pk == source.pk:
        raise MigrationError(_("The target is the active space already; choose another space."), "target")
    if target.status not in (SpaceStatus.BUILDING, SpaceStatus.READY):
        raise MigrationError(_("The target space %(name)s is %(status)s; only a building or ready space can be "
                               "migrated to.") % {"name": target.name, "status": target.get_status_display()},
                             "target")
    if target.traffic_share > 0:
        raise MigrationError(_("The target space %(name)s serves an A/B share already; set its share to 0 first.")
                             % {"name": target.name}, "target")
    if not Path(target.model_path).exists():
        raise MigrationError(_("The model folder of space %(name)s is missing: %(path)s")
                             % {"name": target.name, "path": target.model_path}, "target")
    try:
        with transaction.atomic():
            migration = SpaceMigration.objects.create(
                source=source, target=target, created_by=by if getattr(by, "pk", None) else None,
                target_previous_status=target.status, target_previous_share=target.traffic_share,
                total_chunks=_chunks_to_embed(target).count(), status_message=MigrationStep.CREATED,
                history=[_event("", S.PLANNED, by, MigrationStep.CREATED, reason)])
            # Serving from now on (dual-write), searched by nobody until the A/B test.
            EmbeddingSpace.objects.filter(pk=target.pk).update(status=SpaceStatus.BUILDING, traffic_share=0)
    except IntegrityError as exc:
        if "one_open_space_migration" in str(exc):
            running = SpaceMigration.objects.filter(state__in=OPEN_STATES).select_related("source", "target").first()
            raise MigrationError(_("Another migration is open: %(migration)s (%(state)s). Finish, cancel or roll it "
                                   "back first.") % {"migration": str(running) if running else "?",
                                                     "state": running.get_state_display() if running else "?"},
                                 "target") from None
        raise
    if queue:
        queue_step(migration)
    return migration


def queue_step(migration: SpaceMigration) -> bool:
    """Hand the migration's next step to the embed queue with a fresh token: any older
    message of it (a duplicate delivery, a step the watchdog replaced) then stops."""
    from portal import tasking
    from search.tasks import space_migration_step_task

    token = uuid.uuid4().hex
    migration.step_token, migration.queued_at = token, timezone.now()
    SpaceMigration.objects.filter(pk=migration.pk).update(step_token=token, queued_at=migration.queued_at)
    if tasking.send(space_migration_step_task, migration.pk, token):
        return True
    SpaceMigration.objects.filter(pk=migration.pk, step_token=token).update(
        queued_at=None, status_message=MigrationStep.WAITING_FOR_QUEUE)
    return False


# --- what people do afterwards -----------------------------------------------------------

def _check_move(migration: SpaceMigration, to: str) -> None:
    migration.refresh_from_db()
    if to not in LEGAL_MOVES[migration.state]:
        allowed = ", ".join(_label(s) for s in LEGAL_MOVES[migration.state])
        raise MigrationError(_("A migration that is %(state)s cannot become %(to)s (possible: %(allowed)s).")
                             % {"state": _label(migration.state), "to": _label(to),
                                "allowed": allowed or _("nothing, it has ended")}, "state")


def need_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise MigrationError(_("Give a reason: it is recorded in the migration's history."), "reason")
    return reason


def request_cancel(migration: SpaceMigration, *, by=None, reason: str = "") -> SpaceMigration:
    """Ask the migration to stop. A worker stops between two batches (an index build at
    its next heartbeat) and removes what the migration built: the target's vectors and
    index; the target goes back to its previous status."""
    from portal.advisory import MIGRATION, held_keys

    reason = need_reason(reason)
    _check_move(migration, S.CANCELLED)
    if migration.cancel_requested:
        raise MigrationError(_("A cancel was requested already; the migration is stopping."))
    record(migration, MigrationStep.CANCEL_REQUESTED, by, reason, cancel_requested=True)
    if migration.pk % 2**31 not in held_keys(MIGRATION):  # nobody runs it now: a step does the cleanup
        queue_step(migration)
    return migration


def start_ab_test(migration: SpaceMigration, *, share: float | None = None, by=None,
                  reason: str = "", force: bool = False) -> SpaceMigration:
    """Send a sticky share of the users (default PORTAL_MIGRATION_AB_SHARE) to the target.
    From evaluating, the comparison must allow it (search.services.migration_gate) or
    the move is forced with a reason."""
    from search.services import migration_gate

    share = settings.MIGRATION_AB_SHARE if share is None else share
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
        raise MigrationError(_("The A/B share must be more than 0 and at most 1 (got %(share)s).")
                             % {"share": share}, "share")
    _check_move(migration, S.AB_TESTING)
    _check_index(migration)
    gate = migration_gate.check_gate(migration, force=force, reason=reason)
    with transaction.atomic():
        EmbeddingSpace.objects.filter(pk=migration.target_id).update(status=SpaceStatus.READY,
                                                                    traffic_share=float(share))
        transition(migration, S.AB_TESTING, by, reason, step=MigrationStep.AB_TESTING, extra=gate)
    return migration


def promote(migration: SpaceMigration, *, by=None, reason: str = "", force: bool = False) -> SpaceMigration:
    """Make the target the active space, in one transaction with the state change; the
    source stays ready (dual-written) so a rollback is instant. Straight from evaluating,
    the comparison must allow it or the move is forced with a reason (as for the A/B test)."""
    from search.services import migration_gate, spaces

    _check_move(migration, S.PROMOTED)
    _check_index(migration)
    gate = migration_gate.check_gate(migration, force=force, reason=reason)
    with transaction.atomic():
        spaces.activate(EmbeddingSpace.objects.select_for_update().get(pk=migration.target_id))
        transition(migration, S.PROMOTED, by, reason, step=MigrationStep.PROMOTED, extra=gate)
    return migration


def advance(migration: SpaceMigration, *, to: str | None = None, share: float | None = None, by=None,
            reason: str = "", force: bool = False) -> SpaceMigration:
    """The next step a person takes: evaluating → A/B test (or straight to promoted),
    A/B test → promoted."""
    migration.refresh_from_db()
    if to is None:
        to = {S.EVALUATING: S.AB_TESTING, S.AB_TESTING: S.PROMOTED}.get(migration.state)
    if to == S.AB_TESTING:
        return start_ab_test(migration, share=share, by=by, reason=reason, force=force)
    if to == S.PROMOTED:
        return promote(migration, by=by, reason=reason, force=force)
    if to is None and migration.state in WORKER_STATES:
        raise MigrationError(_("A migration that is %(state)s is moved on by its worker, not by hand.")
                             % {"state": migration.get_state_display()}, "state")
    if to is None:
        _check_move(migration, S.PROMOTED)  # refused: says what is possible
    raise MigrationError(_("A migration is advanced to the A/B test or to promoted; cancel or roll back to stop "
                           "it."), "to")


def rollback(migration: SpaceMigration, *, by=None, reason: str = "") -> SpaceMigration:
    """All traffic back to the source at once: during the A/B test the target's share
    goes to 0; after promote the source is activated again. The target keeps its
    vectors and index (status ready, no traffic) until it is retired."""
    from search.services import spaces

    reason = need_reason(reason)
    _check_move(migration, S.ROLLED_BACK)
    with transaction.atomic():
        source = EmbeddingSpace.objects.select_for_update().get(pk=migration.source_id)
        target = EmbeddingSpace.objects.select_for_update().get(pk=migration.target_id)
        if migration.state == S.PROMOTED:
            if (migration.retirement or {}).get("status"):
                raise MigrationError(_("The source space %(name)s is retired or being retired; a migration "
                                       "cannot be rolled back after its old space is retired.")
                                     % {"name": source.name}, "state")
            if SpaceMigration.objects.filter(state__in=OPEN_STATES).exclude(pk=migration.pk).exists():
                raise MigrationError(_("Another migration is open; finish or cancel it before rolling this one "
                                       "back."))
            if source.status == SpaceStatus.RETIRED:
                raise MigrationError(_("The source space %(name)s is retired; there is nothing to roll back to.")
                                     % {"name": source.name})
            if target.status != SpaceStatus.ACTIVE:
                raise MigrationError(_("The target space %(name)s is no longer the active space; roll back the "
                                       "migration that replaced it instead.") % {"name": target.name})
            spaces.activate(source)
        EmbeddingSpace.objects.filter(pk=target.pk).update(status=SpaceStatus.READY, traffic_share=0)
        transition(migration, S.ROLLED_BACK, by, reason, step=MigrationStep.ROLLED_BACK)
    return migration


def _check_index(migration: SpaceMigration) -> None:
    from search.services import space_index

    target = EmbeddingSpace.objects.get(pk=migration.target_id)
    if space_index.index_state(target) != "valid":
        raise MigrationError(_("The target space %(name)s has no valid vector index; it cannot serve searches.")
                             % {"name": target.name})


def restore_target(migration: SpaceMigration) -> None:
    """Put the target back as it was before the migration (a cancel, a failure)."""
    EmbeddingSpace.objects.filter(pk=migration.target_id).exclude(status=SpaceStatus.ACTIVE).update(
        status=migration.target_previous_status or SpaceStatus.READY,
        traffic_share=migration.target_previous_share)


def update_work(field: str, pk: int, token: str, **fields) -> bool:
    """Merge `fields` into the migration's record of a queued piece of work (`comparison`,
    `retirement`) if it is still the request with `token`: a superseded request writes nothing."""
    with transaction.atomic():
        row = SpaceMigration.objects.select_for_update().filter(pk=pk).first()
        current = getattr(row, field, None) or {}
        if row is None or current.get("token") != token:
            return False
        SpaceMigration.objects.filter(pk=pk).update(
            **{field: {**current, **fields, "updated_at": timezone.now().isoformat(timespec="seconds")}})
    return True

