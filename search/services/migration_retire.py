"""Retiring the old space after a promoted migration has soaked (issue 11 item 6).

`request_retire` checks and records the request (after PORTAL_MIGRATION_SOAK_HOURS
since promote, or forced with a reason); `run_retire`, a long task on the embed
queue, then:
1. marks the source space retired first — from then on nothing writes to it
   (dual-write and the embedding tasks skip retired spaces) and nothing routes to it;
2. drops its HNSW index (CONCURRENTLY when it can: a plain DROP INDEX takes an
   exclusive lock on the embedding table, which would stop every search meanwhile);
3. deletes its vector rows in batches of PORTAL_MIGRATION_RETIRE_BATCH, one short
   transaction each, the progress kept in `retirement`;
4. VACUUMs the table (ANALYZE too), so the freed pages are reused by new rows.
Storage is measured before and after: the embedding table with its indexes
(pg_total_relation_size) and, per space, its vectors plus its index. Plain VACUUM
gives back to the disk only the table's empty trailing pages; the rest is reused
inside the table — VACUUM FULL would give it all back but locks the table.

Each step can run again (IF EXISTS, delete what is left), so a task that died
midway is simply queued again. Once a retirement is requested the migration
can no longer be rolled back.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _, gettext_noop

from search.migration_models import OPEN_STATES, MigrationState as S, MigrationStep, SpaceMigration
from search.models import EmbeddingSpace, SpaceStatus
from search.services.space_migration import MigrationError, need_reason, record, update_work, who
from search.services.spaces import drop_index, space_storage

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
TABLE = "search_chunkembedding"


def soak_ends_at(migration: SpaceMigration):
    if migration.promoted_at is None:
        return None
    return migration.promoted_at + timedelta(hours=float(settings.MIGRATION_SOAK_HOURS))


def _busy(retirement: dict) -> bool:
    if (retirement or {}).get("status") not in (QUEUED, RUNNING):
        return False
    updated = retirement.get("updated_at")
    age = (timezone.now() - datetime.fromisoformat(updated)).total_seconds() if updated else 0
    return age < settings.MIGRATION_LEASE_SECONDS


def request_retire(migration: SpaceMigration, *, by=None, force: bool = False, reason: str = "",
                   queue: bool = True) -> SpaceMigration:
    """Check that the old space may go, record the request and queue the work."""
    from portal import tasking
    from search.tasks import retire_space_task

    if force:
        reason = need_reason(reason)
    with transaction.atomic():
        row = SpaceMigration.objects.select_for_update().select_related("source", "target").get(pk=migration.pk)
        source = row.source
        status = (row.retirement or {}).get("status")
        if row.state != S.PROMOTED:
            raise MigrationError(_("Only the old space of a promoted migration can be retired; this migration is "
                                   "%(state)s.") % {"state": row.get_state_display()}, "state")
        if status == DONE or (source.status == SpaceStatus.RETIRED and status != FAILED):
            raise MigrationError(_("The space %(name)s is retired already.") % {"name": source.name}, "state")
        if _busy(row.retirement):
            raise MigrationError(_("The space %(name)s is being retired already.") % {"name": source.name}, "state")
        if source.status == SpaceStatus.ACTIVE or source.traffic_share > 0:
            raise MigrationError(_("The space %(name)s serves searches again; it cannot be retired.")
                                 % {"name": source.name}, "state")
        if SpaceMigration.objects.filter(Q(source_id=source.pk) | Q(target_id=source.pk),
                                         state__in=OPEN_STATES).exists():
            raise MigrationError(_("An open migration uses the space %(name)s; finish or cancel it first.")
                                 % {"name": source.name}, "state")
        ends = soak_ends_at(row)
        early = ends is not None and timezone.now() < ends
        if early and not force:
            raise MigrationError(_("The soak period ends at %(at)s (%(hours)s h after promote): until then a "
                                   "rollback stays possible. Retire then, or force it with a reason.")
                                 % {"at": date_format(timezone.localtime(ends), "DATETIME_FORMAT"),
                                    "hours": settings.MIGRATION_SOAK_HOURS}, "soak")
        now = timezone.now().isoformat(timespec="seconds")
        retirement = {"status": QUEUED, "token": uuid.uuid4().hex, "space": source.name, "requested_by": who(by),
                      "requested_at": now, "updated_at": now, "forced": bool(early and force),
                      "reason": (reason or "")[:500], "deleted_rows": 0}
        if (row.retirement or {}).get("before"):  # a retry: what there was before the first try
            retirement["before"] = row.retirement["before"]
        record(migration, MigrationStep.RETIRE_REQUESTED, by, reason, retirement=retirement)  # under the row lock
    if queue and not tasking.send(retire_space_task, migration.pk, retirement["token"]):
        _update(migration.pk, retirement["token"], status=FAILED,
                error=_("The task queue cannot be reached; try again when it is back."))
        raise MigrationError(_("The task queue cannot be reached; try again when it is back."))
    migration.refresh_from_db()
    return migration


def _update(pk: int, token: str, **fields) -> bool:
    return update_work("retirement", pk, token, **fields)


# --- measuring ----------------------------------------------------------------------------



def storage(source: EmbeddingSpace) -> dict:
    """The embedding table on disk (with its indexes and TOAST) and the vector storage
    of every space that is not retired, the old space's share of it apart."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT pg_total_relation_size('{TABLE}'), pg_indexes_size('{TABLE}')")
        table_total, indexes = cur.fetchone()
    kept = EmbeddingSpace.objects.exclude(status=SpaceStatus.RETIRED).exclude(pk=source.pk)
    per_space = {s.name: space_storage(s) for s in kept}
    per_space[source.name] = space_storage(source)
    return {"table_total_bytes": int(table_total), "table_index_bytes": int(indexes),
            "vector_storage_bytes": sum(s["total_bytes"] for s in per_space.values()), "spaces": per_space}


def freed(before: dict, after: dict) -> dict:
    """What the retirement gave back: on disk now, and the vector storage of the spaces."""
    on_disk = before["table_total_bytes"] - after["table_total_bytes"]
    vectors = before["vector_storage_bytes"] - after["vector_storage_bytes"]
    return {"on_disk_bytes": on_disk, "vector_storage_bytes": vectors,
            "vector_storage_percent": round(100 * vectors / before["vector_storage_bytes"], 1)
            if before["vector_storage_bytes"] else 0.0,
            "reusable_in_table_bytes": max(0, vectors - on_disk)}


# --- the work -------------------------------------------------------------------------------

def _drop_index(space: EmbeddingSpace) -> None:
    if connection.in_atomic_block:  # CONCURRENTLY cannot run in a transaction (tests, a shell's atomic block)
        drop_index(space)
        return
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {space.index_name}")


def _delete_batches(migration_id: int, token: str, space: EmbeddingSpace) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE space_id = %s "
                            "LIMIT %s)", [space.pk, int(settings.MIGRATION_RETIRE_BATCH)])
                n = cur.rowcount
        deleted += n
        if not _update(migration_id, token, deleted_rows=deleted,
                       phase=gettext_noop("deleting the old space's vectors")):
            raise RuntimeError("superseded")
        if n == 0:
            return deleted


def _vacuum() -> bool:
    if connection.in_atomic_block:  # VACUUM cannot run in a transaction; recorded as not done
        return False
    with connection.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {TABLE}")
    return True


def run_retire(migration_id: int, token: str) -> str:
    """Retire the old space (module docstring); records storage before and after."""
    migration = SpaceMigration.objects.select_related("source").filter(pk=migration_id).first()
    if migration is None or (migration.retirement or {}).get("token") != token:
        return "superseded"
    source = migration.source
    try:
        before = migration.retirement.get("before") or storage(source)
        if not _update(migration_id, token, status=RUNNING, phase=gettext_noop("dropping the old space's index"),
                       before=before, error="",
                       started_at=timezone.now().isoformat(timespec="seconds")):
            return "superseded"
        EmbeddingSpace.objects.filter(pk=source.pk).update(status=SpaceStatus.RETIRED, traffic_share=0,
                                                           retired_at=timezone.now())
        source.refresh_from_db()
        _drop_index(source)
        deleted = _delete_batches(migration_id, token, source)
        _update(migration_id, token, phase=gettext_noop("vacuuming the vector table"))
        vacuumed = _vacuum()
        after = storage(source)
        result = {"status": DONE, "phase": "", "after": after, "freed": freed(before, after), "vacuumed": vacuumed,
                  "deleted_rows": deleted, "finished_at": timezone.now().isoformat(timespec="seconds")}
        if not _update(migration_id, token, **result):
            return "superseded"
        record(migration, MigrationStep.RETIRED, migration.retirement.get("requested_by") or None,
               migration.retirement.get("reason", ""))
        log.info("migration %s: space %s retired, %s rows deleted, freed %s", migration_id, source.name, deleted,
                 result["freed"])
        return DONE
    except Exception as exc:
        from portal.tasking import is_transient

        if is_transient(exc):  # the task retries; every step can run again
            raise
        if str(exc) == "superseded":
            return "superseded"
        log.exception("retiring the old space of migration %s failed", migration_id)
        _update(migration_id, token, status=FAILED, phase="", error=f"{type(exc).__name__}: {exc}"[:1000])
        return FAILED
