"""One step of a migration, run by a worker of the embed queue (issue 11).

A step holds the migration's advisory lock (portal.advisory, MIGRATION) on a
connection of its own; a background thread renews `heartbeat_at` there, reads
`cancel_requested`, and during an index build copies the build's progress from
`pg_stat_progress_create_index` and, on a cancel, stops the build
(pg_cancel_backend): a cancel stops the work for real, not only between batches.

A backfill step runs for PORTAL_MIGRATION_STEP_SECONDS, then queues the next step
behind whatever waits in the embed queue (uploads are never held up for a whole
backfill). Each queued step carries a fresh token written on the row; a step
whose token is no longer the row's (a duplicate delivery, a step the watchdog
replaced) stops without writing.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db.utils import DatabaseError
from django.utils import timezone

from portal.advisory import MIGRATION, SessionLock
from portal.tasking import is_transient
from search.migration_models import OPEN_STATES, WORKER_STATES, MigrationState as S, MigrationStep, SpaceMigration
from search.models import EmbeddingSpace
from search.services import encoders, migration_backfill as backfill, space_index, space_migration as sm
from search.services.migration_backfill import Cancelled
from search.services.space_migration import TakenOver

log = logging.getLogger(__name__)


class StepHeartbeat:
    def __init__(self, migration_id: int, token: str, interval: float | None = None):
        self.migration_id = migration_id
        self.token = token
        self.interval = interval or settings.MIGRATION_HEARTBEAT_SECONDS
        self.lock = SessionLock(MIGRATION, migration_id)
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._builder: int | None = None  # the session building the index, while it builds

    def acquire(self, wait: float = 0.0) -> bool:
        return self.lock.try_acquire(wait)

    def start(self) -> "StepHeartbeat":
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"migration-heartbeat-{self.migration_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except DatabaseError as exc:  # the next beat reconnects
                log.warning("heartbeat of migration %s failed: %s", self.migration_id, exc)

    def watch_build(self, pid: int | None) -> None:
        self._builder = pid
        if pid is not None and (self.cancelled.is_set() or self.lost.is_set()):
            self._stop_build()

    def _stop_build(self) -> None:
        if self._builder is not None:
            log.warning("migration %s: stopping the index build (session %s)", self.migration_id, self._builder)
            self.lock.execute("SELECT pg_cancel_backend(%s)", [self._builder])

    def beat(self) -> None:
        self.lock.still_held()
        rows = self.lock.execute("UPDATE search_spacemigration SET heartbeat_at = now() "
                                 "WHERE id = %s AND step_token = %s RETURNING cancel_requested",
                                 [self.migration_id, self.token])
        if not rows:
            self.lost.set()
            self._stop_build()
            return
        if rows[0][0]:
            self.cancelled.set()
            self._stop_build()
        builder = self._builder
        if builder is not None:
            progress = space_index.read_progress(self.lock.execute, builder)
            if progress:
                self.lock.execute("UPDATE search_spacemigration SET index_progress = %s::jsonb WHERE id = %s",
                                  [json.dumps(progress), self.migration_id])

    def check(self) -> None:
        if self.lost.is_set():
            raise TakenOver(f"migration {self.migration_id}: step {self.token} superseded")
        if self.cancelled.is_set():
            raise Cancelled()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.lock.close()


def new_holder() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


def run_step(migration_id: int, token: str) -> str:
    """Do the migration's work for a while; returns the outcome (for logs and tests)."""
    migration = SpaceMigration.objects.filter(pk=migration_id).first()
    if migration is None or migration.step_token != token:
        return "superseded"
    if migration.state not in OPEN_STATES:
        return "ended"
    if migration.state not in WORKER_STATES and not migration.cancel_requested:
        return "nothing to do"
    beat = StepHeartbeat(migration_id, token)
    requeue = False
    try:
        if not beat.acquire(wait=2 * settings.MIGRATION_HEARTBEAT_SECONDS):
            # Another step still finishes its batch (it stops at the next one): try again soon,
            # unless this very message was delivered twice.
            migration.refresh_from_db()
            if migration.step_token == token:
                from portal import tasking
                from search.tasks import space_migration_step_task

                tasking.send_later(space_migration_step_task, settings.MIGRATION_HEARTBEAT_SECONDS, migration_id,
                                   token)
            return "busy"
        migration.refresh_from_db()
        if migration.step_token != token:
            return "superseded"
        SpaceMigration.objects.filter(pk=migration_id).update(holder=new_holder(), heartbeat_at=timezone.now())
        beat.start()
        outcome, requeue = _work(migration, token, beat)
        return outcome
    except TakenOver:
        return "superseded"
    finally:
        beat.stop()  # the lock goes before the next step is queued, so the next one finds it free
        if requeue:
            sm.queue_step(migration)


def _work(migration: SpaceMigration, token: str, beat: StepHeartbeat) -> tuple[str, bool]:
    """(outcome, queue another step?)"""
    try:
        if migration.cancel_requested:
            raise Cancelled()
        if migration.stalls > settings.MIGRATION_MAX_STALLS:
            fail(migration, token, MigrationStep.GAVE_UP, f"{migration.stalls} stalls")
            return "failed", False
        if migration.state == S.PLANNED:
            target = EmbeddingSpace.objects.get(pk=migration.target_id)
            # Rows are loaded before the index exists (inserting into a live HNSW index is
            # ~200x slower than a bulk load): the index is built once they are all in.
            space_index.drop(target)
            sm.transition(migration, S.BACKFILLING, None, step=MigrationStep.BACKFILLING, token=token)
        if migration.state == S.BACKFILLING:
            deadline = time.monotonic() + settings.MIGRATION_STEP_SECONDS
            with encoders.encode_threads(settings.MIGRATION_ENCODE_THREADS):
                more = backfill.run_batches(migration, token, beat.check, deadline=deadline)
            if more:
                return "continues", True
            sm.record(migration, MigrationStep.CATCHING_UP)
            caught = backfill.catch_up(migration, token, beat.check)
            migration.refresh_from_db()
            sm.transition(migration, S.INDEXING, None, f"{caught} chunks caught up" if caught else "",
                          step=MigrationStep.INDEXING, token=token, eta_seconds=0)
            return "backfilled", True  # the build is a step of its own, queued behind other work
        if migration.state == S.INDEXING:
            target = EmbeddingSpace.objects.get(pk=migration.target_id)
            space_index.ensure_valid(target, on_start=beat.watch_build,
                                     on_invalid=lambda: sm.record(migration, MigrationStep.INVALID_INDEX_DROPPED))
            beat.check()
            sm.transition(migration, S.EVALUATING, None, step=MigrationStep.EVALUATING, token=token, stalls=0)
            return "indexed", False
        return "nothing to do", False
    except Cancelled:
        finish_cancel(migration, token)
        return "cancelled", False
    except TakenOver:
        raise
    except Exception as exc:
        if beat.cancelled.is_set():  # the build was stopped by the cancel
            finish_cancel(migration, token)
            return "cancelled", False
        if beat.lost.is_set():
            raise TakenOver(str(exc)) from exc
        if is_transient(exc):
            raise  # the task retries with the same token
        log.exception("migration %s failed", migration.pk)
        fail(migration, token, MigrationStep.FAILED, f"{exc.__class__.__name__}: {exc}")
        return "failed", False


def finish_cancel(migration: SpaceMigration, token: str | None) -> None:
    """Stop routing to the target, then remove what the migration built: its index and
    its vectors; the target goes back to its previous status."""
    migration.refresh_from_db()
    target = EmbeddingSpace.objects.get(pk=migration.target_id)
    sm.restore_target(migration)
    space_index.drop(target)
    removed = backfill.delete_vectors(target)
    EmbeddingSpace.objects.filter(pk=target.pk).update(embedded_chunks=0)
    sm.transition(migration, S.CANCELLED, None, f"{removed} vectors removed", step=MigrationStep.CANCELLED,
                  token=token, eta_seconds=None, index_progress={})


def fail(migration: SpaceMigration, token: str | None, step: str, error: str) -> None:
    """End the migration as failed: the target stops being served as a migration target and
    an invalid index is dropped; its vectors stay (a new migration reuses them)."""
    migration.refresh_from_db()
    target = EmbeddingSpace.objects.get(pk=migration.target_id)
    sm.restore_target(migration)
    if space_index.index_state(target) == space_index.INVALID:
        space_index.drop(target)
    sm.transition(migration, S.FAILED, None, error[:500], step=step, token=token, error=error[:5000])
