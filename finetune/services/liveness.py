"""The sign of life of a running fine-tuning job, and its cancel signal.

The worker that runs a job holds the job's advisory lock (portal.advisory,
FINETUNE) on a connection of its own; a background thread renews
`heartbeat_at` there every PORTAL_FINETUNE_HEARTBEAT_SECONDS and reads
`cancel_requested`, so a cancel is noticed within a heartbeat even while the
job is inside a long evaluation, not only between training steps. When the
worker dies its session ends and the lock is free at once: the recovery sweep
(finetune/services/recovery.py) queues the job again and it resumes from its
last checkpoint.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from django.conf import settings
from django.db.utils import DatabaseError

from portal.advisory import FINETUNE, SessionLock

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The job was cancelled; the work stops here."""


class TakenOver(Exception):
    """Another worker runs the job now (this one lost its lock); stop without writing."""


def JobLock(job_id: int) -> SessionLock:  # noqa: N802 - a factory that reads like the class it returns
    return SessionLock(FINETUNE, job_id)


def new_holder() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobHeartbeat:
    """Holds the lock, beats, and turns a requested cancel into `cancelled` (an Event)."""

    def __init__(self, job_id: int, holder: str, interval: float | None = None):
        self.job_id = job_id
        self.holder = holder
        self.interval = interval or settings.FINETUNE_HEARTBEAT_SECONDS
        self.lock = JobLock(job_id)
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, wait: float = 0.0) -> bool:
        return self.lock.try_acquire(wait)

    def start(self) -> "JobHeartbeat":
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"finetune-heartbeat-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except DatabaseError as exc:  # the database is away: the next beat reconnects
                log.warning("heartbeat of fine-tuning job %s failed: %s", self.job_id, exc)

    def beat(self) -> None:
        if not self.lock.still_held():
            log.warning("fine-tuning job %s: advisory lock not held (database restarted?)", self.job_id)
        rows = self.lock.execute(
            "UPDATE finetune_finetunejob SET heartbeat_at = now() WHERE id = %s AND holder = %s "
            "RETURNING cancel_requested, status", [self.job_id, self.holder])
        if not rows:
            current = self.lock.execute("SELECT holder FROM finetune_finetunejob WHERE id = %s", [self.job_id])
            if not current or current[0][0] == self.holder:
                return  # not visible to this session (a caller's transaction has not committed it), or deleted
            log.warning("fine-tuning job %s was taken over by %r; this worker stops", self.job_id, current[0][0])
            self.lost.set()
            self._stop.set()
            return
        cancel, status = rows[0]
        if cancel:
            self.cancelled.set()
        if status in ("succeeded", "failed", "cancelled"):
            self._stop.set()

    def check(self) -> None:
        """Raise when the work must stop (called between steps and inside long loops)."""
        if self.lost.is_set():
            raise TakenOver(f"fine-tuning job {self.job_id} was taken over by another worker")
        if self.cancelled.is_set():
            raise Cancelled(f"fine-tuning job {self.job_id} was cancelled")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.lock.close()

    def __enter__(self) -> "JobHeartbeat":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
