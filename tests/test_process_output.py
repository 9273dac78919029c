"""What long-running processes write (issue 9 item 23): log times in UTC with
their offset whatever TZ the process has, and no model-loading progress bars
in Celery workers (Celery logs stderr at WARNING). gunicorn's side is checked
end to end in tests/test_bin_run.py."""
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_log_times_are_utc_with_offset_whatever_the_process_zone(monkeypatch):
    from portal.runtime_output import UTCFormatter

    monkeypatch.setenv("TZ", "Asia/Ho_Chi_Minh")  # what Django sets in a web worker
    time.tzset()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        record.created, record.msecs = 1796000000.25, 250.0  # 2026-11-30 00:53:20.250 UTC
        line = UTCFormatter("%(asctime)s %(message)s").format(record)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert line == "2026-11-30T00:53:20.250+00:00 hello"


def test_django_logging_uses_the_utc_formatter(settings):
    assert settings.LOGGING["formatters"]["plain"]["()"] == "portal.runtime_output.UTCFormatter"


def _load_model_in_worker_process(minilm_path: str, *, worker_init: bool) -> str:
    code = f"""
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import portal.celery
from celery.signals import celeryd_init
if {worker_init!r}:
    celeryd_init.send(sender="test-worker", instance=None, conf=portal.celery.app.conf, options={{}})
from sentence_transformers import SentenceTransformer
SentenceTransformer({minilm_path!r}, device="cpu")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def test_a_celery_worker_loads_models_without_progress_bars(minilm_path):
    assert "Loading weights" not in _load_model_in_worker_process(minilm_path, worker_init=True)
    # the same process without the worker's start-up signal draws them: the check can fail
    assert "Loading weights" in _load_model_in_worker_process(minilm_path, worker_init=False)
