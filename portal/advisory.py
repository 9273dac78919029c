"""PostgreSQL session advisory locks held on a connection of their own.

A session lock lasts exactly as long as the connection that took it: when the
process holding it dies (SIGKILL, out of memory, a hard time limit), the server
ends its session and the lock is free at once. The portal uses that as the
liveness signal of a worker — "is anyone alive still working on this?" —
without waiting for a timeout:

- ingestion: a worker holds (INGEST, document id) while it processes a document;
- embedding: (EMBED_BASE + space id, document id) while it writes a document's vectors;
- beat: (BEAT, 0) while it is the one scheduler that sends periodic tasks;
- fine-tuning: (FINETUNE, job id) while a worker runs a fine-tuning job;
- space migration: (MIGRATION, migration id) while a worker runs a step of a migration.

The connection sets TCP keepalives, so a worker on another machine that vanished
(no FIN, no RST) loses its session within about a minute too. On a Unix socket
(the embedded server) a dead process closes its socket immediately.
"""
from __future__ import annotations

import logging
import os
import socket
import time

from django.db import connections
from django.db.utils import DatabaseError

log = logging.getLogger(__name__)

# First key of the two-key lock form (pg_locks: classid; the second key is objid).
INGEST = 1
BEAT = 2
FINETUNE = 3
MIGRATION = 4
EMBED_BASE = 1_000_000  # + space id


def _int4(value: int) -> int:
    """Document ids are bigint; the lock keys are int4 (ids beyond 2**31 wrap: a
    collision only makes a worker wait for, or skip, an unrelated document)."""
    return int(value) % 2**31


class SessionLock:
    """One advisory lock on its own connection (not the thread's Django connection,
    which Django and Celery close and reopen between tasks)."""

    def __init__(self, key1: int, key2: int, *, alias: str = "default"):
        self.key = (int(key1), _int4(key2))
        self.alias = alias
        self._db = None
        self.held = False

    def _connect(self):
        if self._db is None:
            self._db = connections.create_connection(self.alias)
            self._db.inc_thread_sharing()  # taken in one thread, renewed in the heartbeat thread
        if self._db.connection is not None:
            return self._db
        self._db.ensure_connection()
        with self._db.cursor() as cur:
            # Server-side keepalives end the session of a machine that vanished within ~1 minute
            # (ignored on Unix sockets); a heartbeat must not wait behind a long row lock.
            cur.execute("SET tcp_keepalives_idle = 20; SET tcp_keepalives_interval = 10; "
                        "SET tcp_keepalives_count = 3; SET lock_timeout = '2s'")
            # Who holds which lock, for operators (pg_stat_activity) and the fault tests.
            cur.execute("SELECT set_config('application_name', %s, false)",
                        [f"portal:{socket.gethostname()[:40]}:{os.getpid()}"])
        return self._db

    def try_acquire(self, wait: float = 0.0) -> bool:
        """Take the lock if nobody holds it; poll for up to `wait` seconds (a session
        that just died may take a moment to end). Database errors propagate."""
        deadline = time.monotonic() + wait
        db = self._connect()
        while True:
            with db.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", self.key)
                self.held = bool(cur.fetchone()[0])
            if self.held or time.monotonic() >= deadline:
                return self.held
            time.sleep(0.2)

    def execute(self, sql: str, params=()) -> list[tuple]:
        """Run a statement on the lock's own session (autocommit)."""
        with self._connect().cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def still_held(self) -> bool:
        """True while the session that took the lock is alive. After a lost connection
        (a database restart ends every session) the lock is taken again if it is free."""
        if self._db is not None and self.held:
            try:
                with self._db.cursor() as cur:
                    cur.execute("SELECT 1")
                return True
            except DatabaseError:
                self.close()
        try:
            return self.try_acquire()
        except DatabaseError:
            self.close()
            return False

    def close(self) -> None:
        """Release the lock by ending the session."""
        self.held = False
        if self._db is not None:
            try:
                self._db.close()
            except DatabaseError:
                pass
            self._db.dec_thread_sharing()
            self._db = None

    def __enter__(self) -> "SessionLock":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def holder_pids(key1: int, key2: int, *, using: str = "default") -> list[int]:
    """Process ids (from application_name) of the portal processes holding a lock."""
    with connections[using].cursor() as cur:
        cur.execute("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s::oid "
                    "AND l.objid = %s::oid", [int(key1), _int4(key2)])
        return [int(name.rsplit(":", 1)[1]) for (name,) in cur.fetchall() if name.startswith("portal:")]


def held_keys(key1: int, *, using: str = "default") -> set[int]:
    """Second keys of the advisory locks of namespace `key1` held right now in this database."""
    with connections[using].cursor() as cur:
        cur.execute("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objsubid = 2 AND classid = %s::oid "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    [int(key1)])
        return {row[0] for row in cur.fetchall()}
