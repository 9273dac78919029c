"""Embedded services start only where they are started on purpose (issue 9
item 18): importing the settings starts nothing, and a command run while they
are stopped says how to start them instead of printing a traceback."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(var_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_DATABASE_NAME")}
    return {**env, "PORTAL_VAR_DIR": str(var_dir), **extra}


def _run(args, var_dir: Path, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(var_dir), capture_output=True, text=True,
                          timeout=timeout)


def _nothing_started(var_dir: Path) -> bool:
    return not (var_dir / "pgdata").exists() and not (var_dir / "redis").exists()


def test_importing_settings_celery_and_the_config_doc_starts_no_service(tmp_path):
    var = tmp_path / "var"
    code = ("import django; django.setup(); from django.conf import settings; import portal.celery; "
            "print(settings.DATABASES['default']['HOST']); print(settings.CELERY_BROKER_URL)")
    result = _run(["-c", code], var)
    assert result.returncode == 0, result.stderr
    host, broker = result.stdout.split()
    assert host == str(var / "pgdata") and broker == f"redis+socket://{var / 'redis' / 'redis.sock'}"
    doc = _run(["-m", "portal.config"], var)
    assert doc.returncode == 0 and "| `DATABASE_URL` |" in doc.stdout, doc.stderr
    assert _nothing_started(var)


def test_a_command_with_services_stopped_says_how_to_start_them(tmp_path):
    var = tmp_path / "var"
    result = _run(["manage.py", "migrate", "--noinput"], var)
    assert result.returncode == 1
    assert "embedded PostgreSQL" in result.stderr and "manage.py services start" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert _nothing_started(var)


def test_the_database_engine_reports_a_stopped_server_as_an_operational_error(tmp_path, settings):
    """Workers and web processes see the same clear message, as an OperationalError
    (retried like any outage), and the server is not started behind anyone's back."""
    import pytest
    from django.db import OperationalError
    from django.db.backends.postgresql.base import DatabaseWrapper as Stock

    from portal.db.base import DatabaseWrapper

    var = tmp_path / "var"
    wrapper = DatabaseWrapper({**settings.DATABASES["default"], "EMBEDDED_VAR_DIR": str(var),
                               "NAME": "portal"}, alias="probe")
    with pytest.raises(OperationalError, match="manage.py services start"):
        wrapper.get_connection_params()  # what connect() calls first
    assert isinstance(wrapper, Stock) and _nothing_started(var)


def test_the_database_engine_finds_the_running_server(db, settings):
    from portal.db.base import DatabaseWrapper

    wrapper = DatabaseWrapper({**settings.DATABASES["default"], "HOST": "/nowhere"}, alias="probe")
    assert wrapper.get_connection_params()["host"] == str(Path(settings.VAR_DIR) / "pgdata")
