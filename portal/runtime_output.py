"""What long-running processes (gunicorn's master and workers, Celery workers)
write to their logs.

Time: every log line carries UTC with an explicit offset
(`2026-11-27T15:34:01.123+00:00`). Django sets the process's TZ to TIME_ZONE
when its settings load, which gunicorn's master never does, so before this the
master logged in the machine's zone and its workers in Asia/Ho_Chi_Minh.
Django's LOGGING, portal/gunicorn_conf.py and portal/celery.py use this formatter.

Progress bars: loading a model draws tqdm bars on stderr ("Loading weights:
100%|…"), which Celery logs at WARNING, line after line. Workers and web
processes turn them off; management commands keep their own progress bars.
"""
from __future__ import annotations

import logging
import os
import sys
import time

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UTCFormatter(logging.Formatter):
    """ISO 8601 in UTC with its offset, whatever TZ the process has."""

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}+00:00"


def use_utc_times(logger: logging.Logger) -> None:
    """Keep each handler's format but write its times in UTC (for loggers
    that others configure, such as Celery's)."""
    for handler in logger.handlers:
        fmt = handler.formatter._fmt if handler.formatter else LOG_FORMAT
        handler.setFormatter(UTCFormatter(fmt))


def quiet_progress_bars() -> None:
    """No tqdm / transformers / huggingface_hub progress bars in this process
    and the ones it starts; transformers logs errors only."""
    os.environ["TQDM_DISABLE"] = "1"  # read when tqdm is imported
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # read when transformers is imported
    if "transformers" in sys.modules:  # already imported: switch it off there too
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    elif "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
