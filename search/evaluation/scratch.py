"""A throwaway PostgreSQL database on the same server, for benchmarks that must
not touch the portal's documents:

    with scratch_database() as name:   # eval_scratch_<pid>, created and migrated
        ...                            # Django's default connection points at it
    # connections closed, the old database name restored, the scratch one dropped

Its tantivy keyword index (PORTAL_KEYWORD_ENGINE=tantivy) lives in a temporary
folder for as long as the database does: the machine's own copy indexes the
portal's documents, never the scratch ones (keyword_engine.rebuild builds it).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from psycopg import sql

PREFIX = "eval_scratch_"


class DatabaseNotReady(Exception):
    """The portal's database cannot be used yet; the message says what to do."""


def require_migrated_database() -> None:
    """Refuse early, with what to do, when the portal's database is unreachable
    or not migrated (instead of a traceback half-way through a benchmark)."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except OperationalError as exc:
        raise DatabaseNotReady(f"The portal's database is not reachable ({exc}); start it with "
                               "`manage.py services start`") from exc
    if pending:
        raise DatabaseNotReady(f"The portal's database is not set up ({len(pending)} migrations not applied): "
                               "run `manage.py migrate` first")


def _admin_connection(db: dict):
    import psycopg

    kwargs = {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None,
              "password": db.get("PASSWORD") or None, "dbname": "postgres", "autocommit": True}
    return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})


def _set_name(name: str) -> None:
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def _drop(db: dict, name: str) -> None:
    with _admin_connection(db) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(name: str | None = None, *, keep: bool = False, migrate: bool = True):
    """A scratch database named PREFIX…; a name without the prefix is refused,
    so this can never drop the portal's own database."""
    name = name or f"{PREFIX}{os.getpid()}"
    if not name.startswith(PREFIX) or name == settings.DATABASES["default"]["NAME"]:
        raise ValueError(f"a scratch database name must start with {PREFIX!r}: {name!r}")
    db = settings.DATABASES["default"]
    previous = db["NAME"]
    connections.close_all()
    _drop(db, name)
    with _admin_connection(db) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _set_name(name)
    index_dir, previous_index_dir = tempfile.mkdtemp(prefix=f"{name}-keyword-"), settings.KEYWORD_INDEX_DIR
    settings.KEYWORD_INDEX_DIR = index_dir
    try:
        if migrate:
            call_command("migrate", verbosity=0, interactive=False)
        yield name
    finally:
        connections.close_all()
        _set_name(previous)
        settings.KEYWORD_INDEX_DIR = previous_index_dir
        shutil.rmtree(index_dir, ignore_errors=True)
        if not keep:
            _drop(db, name)
