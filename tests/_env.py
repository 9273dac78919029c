"""Loaded with -p before pytest-django reads settings: the test run gets its own
embedded PostgreSQL + Redis under var/test, its own task queue, offline models."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PORTAL_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("PORTAL_TASK_QUEUE", "portal-tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
