"""Loaded with -p before pytest-django reads settings: the test run gets its own
embedded PostgreSQL + Redis under var/test, its own task queue, offline models.
Settings only compute paths; this plugin starts the services (bin/test stops
them at the end; a bare `python -m pytest` leaves them running for the next run)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PORTAL_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("PORTAL_TASK_QUEUE", "portal-tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")


def pytest_configure(config):
    if config.getoption("help", False) or config.getoption("version", 0):
        return
    from django.conf import settings

    from portal import embedded

    embedded.start_configured(settings)
