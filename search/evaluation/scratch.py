"""A throwaway PostgreSQL database on the same server, for benchmarks that must
not touch the portal's documents:

    with scratch_database() as name:   # eval_scratch_<pid>, created and migrated
        ...                            # Django's default connection points at it
    # connections closed, the old database name restored, the scratch one dropped
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from django.conf import settings
from django.core.management import call_command
from django.db import connections


def _admin_connection(db: dict):
    import psycopg

    kwargs = {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None,
              "password": db.get("PASSWORD") or None, "dbname": "postgres", "autocommit": True}
    return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})


def _set_name(name: str) -> None:
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


@contextmanager
def scratch_database(name: str | None = None, *, keep: bool = False, migrate: bool = True):
    name = name or f"eval_scratch_{os.getpid()}"
    db = settings.DATABASES["default"]
    previous = db["NAME"]
    connections.close_all()
    with _admin_connection(db) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _set_name(name)
    try:
        if migrate:
            call_command("migrate", verbosity=0, interactive=False)
        yield name
    finally:
        connections.close_all()
        _set_name(previous)
        if not keep:
            with _admin_connection(db) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
