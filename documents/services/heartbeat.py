"""The sign of life of a document being processed.

Before a worker claims a document it takes the document's advisory lock
(portal.advisory) on a connection of its own; a background thread then renews
`heartbeat_at` on that connection every PORTAL_INGEST_HEARTBEAT_SECONDS while
the steps run (a 3-minute extraction included). If the worker dies, its session
ends and the lock is free at once, so a redelivered task (or the recovery
sweep) takes the document over instead of waiting for a lease to run out. A
heartbeat older than PORTAL_INGEST_LEASE_SECONDS covers what the lock cannot see
(a worker on a machine that vanished while its connection lingers).

If another worker took the document over meanwhile (the database restarted and
this worker lost its lock), the heartbeat finds a different holder on the row
and says so: the pipeline stops at its next step and never writes over the new
holder's work.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from django.conf import settings
from django.db.utils import DatabaseError

from portal.advisory import INGEST, SessionLock

log = logging.getLogger(__name__)


def new_holder() -> str:
    """Who is processing: host and process (shown in admin), and a token unique to this claim."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_pid(holder: str) -> int | None:
    try:
        return int(holder.split(":")[1])
    except (IndexError, ValueError):
        return None


class Heartbeat:
    def __init__(self, document_id: int, holder: str, interval: float | None = None):
        self.document_id = document_id
        self.holder = holder
        self.interval = interval or settings.INGEST_HEARTBEAT_SECONDS
        self.lock = SessionLock(INGEST, document_id)
        self.lost = threading.Event()  # another worker took the document over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, wait: float = 0.0) -> bool:
        return self.lock.try_acquire(wait)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.document_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except DatabaseError as exc:
                # The database is away (the next beat reconnects and takes the lock again),
                # or the row is locked by a long write: keep beating.
                log.warning("heartbeat of document %s failed: %s", self.document_id, exc)

    def beat(self) -> None:
        if not self.lock.still_held():
            log.warning("document %s: advisory lock not held (database restarted?)", self.document_id)
        rows = self.lock.execute(
            "UPDATE documents_document SET heartbeat_at = now() WHERE id = %s AND holder = %s "
            "AND status = 'processing' RETURNING id", [self.document_id, self.holder])
        if rows:
            return
        # The row is not ours any more (taken over, re-ingest requested, deleted) — or not
        # visible to this session (a caller's transaction has not committed it yet).
        current = self.lock.execute("SELECT holder, status FROM documents_document WHERE id = %s",
                                    [self.document_id])
        if not current:
            return
        holder, status = current[0]
        if status in ("ready", "failed"):
            self._stop.set()  # finished (by this worker a moment ago, or by one that took over: the final write tells)
        elif holder != self.holder or status != "processing":
            log.warning("document %s was taken over (%s, by %r); this worker stops", self.document_id, status, holder)
            self.lost.set()
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.lock.close()

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
