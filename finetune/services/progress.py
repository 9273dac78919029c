"""Live progress of a job on its row: step, total steps, epoch, loss, learning
rate, seconds per step and ETA, with the loss and evaluation curves — written at
most every PORTAL_FINETUNE_PROGRESS_SECONDS (admin and API read the row), and
never the reason a run stops: a write that meets a database outage is skipped
(the next one catches up; the checkpoint on disk is what resuming needs)."""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from finetune.models import FineTuneJob
from portal.tasking import is_transient

log = logging.getLogger(__name__)


class Reporter:
    def __init__(self, job: FineTuneJob, heartbeat=None, *, interval: float | None = None):
        self.job = job
        self.heartbeat = heartbeat
        self.interval = settings.FINETUNE_PROGRESS_SECONDS if interval is None else interval
        self._last = 0.0
        self._started = time.monotonic()
        self._first_step: int | None = None

    def check(self) -> None:
        """Stop here if the job was cancelled or taken over (raises)."""
        if self.heartbeat is not None:
            self.heartbeat.check()

    def training(self, *, step: int, total: int, epoch: float, loss: float | None, lr: float,
                 loss_curve: list, eval_curve: list, force: bool = False, **extra) -> None:
        now = time.monotonic()
        if self._first_step is None:
            self._first_step, self._started = step - 1, now
        done = step - self._first_step
        per_step = (now - self._started) / done if done > 0 else None
        if not force and now - self._last < self.interval:
            return
        self._last = now
        progress = {"phase": "training", "step": step, "total_steps": total, "epoch": round(epoch, 3),
                    "loss": None if loss is None else round(float(loss), 5), "learning_rate": lr,
                    "seconds_per_step": None if per_step is None else round(per_step, 3),
                    "eta_seconds": None if per_step is None else round(per_step * (total - step)), **extra}
        self.write(progress=progress, loss_curve=loss_curve, eval_curve=eval_curve)

    def phase(self, phase: str, done: int = 0, total: int = 0, **extra) -> None:
        now = time.monotonic()
        if done and done < total and now - self._last < self.interval:
            return
        self._last = now
        keep = {k: v for k, v in (self.job.progress or {}).items()
                if k in ("step", "total_steps", "epoch", "loss", "learning_rate", "seconds_per_step")}
        self.write(progress={**keep, "phase": phase, "done": done, "total": total, **extra})

    def write(self, **fields) -> None:
        for name, value in fields.items():
            setattr(self.job, name, value)
        try:
            rows = FineTuneJob.objects.filter(pk=self.job.pk).update(heartbeat_at=timezone.now(), **fields)
            if rows and self.heartbeat is not None and \
                    FineTuneJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                self.heartbeat.cancelled.set()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("fine-tuning job %s: progress not recorded (%s)", self.job.pk, exc)
