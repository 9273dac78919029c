"""A space's HNSW index built and dropped without blocking search or ingestion
(issue 11): `CREATE INDEX CONCURRENTLY` / `DROP INDEX CONCURRENTLY`, progress read
from `pg_stat_progress_create_index`, and an invalid index (left by a build that
failed or was killed: pg_index.indisvalid is false) detected, dropped and built again.

Neither statement may run inside a transaction block: callers run in autocommit
(a Celery task, a management command) and never inside `transaction.atomic`.
"""
from __future__ import annotations

import logging
from typing import Callable

from django.conf import settings
from django.db import connection

from search.models import EmbeddingSpace
from search.services import spaces

log = logging.getLogger(__name__)

MISSING, VALID, INVALID = "missing", "valid", "invalid"

PROGRESS_SQL = ("SELECT phase, blocks_total, blocks_done, tuples_total, tuples_done, lockers_total, lockers_done "
                "FROM pg_stat_progress_create_index WHERE pid = %s")
PROGRESS_FIELDS = ("phase", "blocks_total", "blocks_done", "tuples_total", "tuples_done", "lockers_total",
                   "lockers_done")


def index_state(space: EmbeddingSpace, cursor=None) -> str:
    """missing, valid, or invalid (a failed or unfinished concurrent build)."""
    def ask(cur):
        cur.execute("SELECT i.indisvalid AND i.indisready FROM pg_index i "
                    "WHERE i.indexrelid = to_regclass(%s)", [space.index_name])
        row = cur.fetchone()
        return MISSING if row is None else VALID if row[0] else INVALID

    if cursor is not None:
        return ask(cursor)
    with connection.cursor() as cur:
        return ask(cur)


def _require_autocommit() -> None:
    if connection.in_atomic_block:
        raise RuntimeError("a concurrent index build or drop cannot run inside a transaction block")


def cancel_builders(space: EmbeddingSpace) -> list[int]:
    """Stop any build of this index still running in another session (a killed worker's
    statement may outlive it for a moment); returns their process ids."""
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_progress_create_index "
                    "WHERE index_relid = to_regclass(%s) AND pid <> pg_backend_pid()", [space.index_name])
        pids = [row[0] for row in cur.fetchall()]
        for pid in pids:
            cur.execute("SELECT pg_cancel_backend(%s)", [pid])
    return pids


def drop(space: EmbeddingSpace) -> None:
    """DROP INDEX CONCURRENTLY: searches of other spaces never wait for it."""
    _require_autocommit()
    cancel_builders(space)
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {space.index_name}")


def build(space: EmbeddingSpace, *, on_start: Callable[[int | None], None] | None = None) -> None:
    """CREATE INDEX CONCURRENTLY for the space. `on_start(pid)` is told the building
    session's process id (progress is read, and a cancel stops it, from another
    session), and `on_start(None)` when the build is over. A build that fails leaves
    an invalid index; it is dropped here before the error goes on."""
    _require_autocommit()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        # More memory builds the graph in memory (much faster); a session whose client died
        # ends its build within seconds instead of running on for nobody. Parallel workers
        # take cores from the searches that go on meanwhile (p95 2.8 s with two on 2 cores).
        cur.execute("SELECT set_config('maintenance_work_mem', %s, false), "
                    "set_config('max_parallel_maintenance_workers', %s, false), "
                    "set_config('client_connection_check_interval', '5s', false)",
                    [settings.MIGRATION_INDEX_MEMORY, str(settings.MIGRATION_INDEX_WORKERS)])
    if on_start:
        on_start(pid)
    try:
        spaces.create_index(space, concurrently=True)
    except Exception:
        if on_start:
            on_start(None)
        _reset_session()
        if index_state(space) == INVALID:
            log.warning("space %s: the index build failed; dropping the invalid index it left", space.name)
            drop(space)
        raise
    if on_start:
        on_start(None)
    _reset_session()


def _reset_session() -> None:
    with connection.cursor() as cur:
        cur.execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers; "
                    "RESET client_connection_check_interval")


def ensure_valid(space: EmbeddingSpace, *, on_start=None, on_invalid=None) -> bool:
    """Build the index unless a valid one exists; an invalid one is dropped first
    (`on_invalid()` is told). True when a build ran."""
    state = index_state(space)
    if state == VALID:
        return False
    if state == INVALID:
        log.warning("space %s: invalid index %s found (a failed build); dropping and rebuilding",
                    space.name, space.index_name)
        drop(space)
        if on_invalid:
            on_invalid()
    build(space, on_start=on_start)
    if index_state(space) != VALID:
        drop(space)
        raise RuntimeError(f"the index {space.index_name} is not valid after its build")
    return True


def read_progress(execute: Callable[[str, list], list], pid: int) -> dict:
    """The build's progress (phase, blocks, tuples) from pg_stat_progress_create_index,
    read by `execute` on another session than the one building."""
    rows = execute(PROGRESS_SQL, [pid])
    if not rows:
        return {}
    return {name: value for name, value in zip(PROGRESS_FIELDS, rows[0]) if value is not None}
