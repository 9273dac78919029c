"""manage.py keyword_index rebuild|sync|follow|verify|status — the tantivy
keyword index of this machine (search.services.keyword_engine).

- rebuild: a new copy from PostgreSQL, with a progress bar; searched once done.
- sync: apply the change log once; follow: every PORTAL_KEYWORD_SYNC_SECONDS,
  until stopped or for --seconds S (a machine with its own copy runs this:
  docs/scaling.md).
- verify: counts and a sample against PostgreSQL (exit status 1 on a difference).
- status: every copy's lag (change-log entries not applied, age of the oldest).
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.services.keyword_engine import maintenance, writer


class Command(BaseCommand):
    help = "Rebuild, update, verify or report the tantivy keyword index of this machine."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["rebuild", "sync", "follow", "verify", "status"])
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (rebuild)")
        parser.add_argument("--sample", type=int, default=200, help="chunks sampled each way (verify)")
        parser.add_argument("--seconds", type=float, default=None,
                            help="follow: stop after this many seconds (default: until stopped)")

    def handle(self, action, no_progress=False, sample=200, seconds=None, **opts):
        getattr(self, f"_{action}")(no_progress=no_progress, sample=sample, seconds=seconds)

    def _rebuild(self, no_progress, **_):
        bar = tqdm(desc="keyword index", unit="chunk", disable=no_progress)

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        started = time.monotonic()
        result = writer.rebuild(progress=progress)
        bar.close()
        self.stdout.write(self.style.SUCCESS(
            f"{result.chunks} chunks indexed in {time.monotonic() - started:.1f}s; then applied the change log: "
            f"{writer.sync(wait=True).entries} entries"))

    def _sync(self, **_):
        result = writer.sync(wait=True)
        self.stdout.write(f"{result.entries} change-log entries applied ({result.documents} documents, "
                          f"{result.chunks} chunks written{', copy built first' if result.rebuilt else ''})")

    def _follow(self, seconds=None, **_):
        until = "Ctrl-C stops" if seconds is None else f"for {seconds:g}s"
        self.stdout.write(f"applying the change log every {settings.KEYWORD_SYNC_SECONDS}s ({until})", ending="\n")
        self.stdout.flush()
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            result = writer.sync(wait=True)
            if result.entries:
                self.stdout.write(f"{result.entries} entries, {result.documents} documents")
                self.stdout.flush()
            if deadline is not None and time.monotonic() + settings.KEYWORD_SYNC_SECONDS > deadline:
                return
            time.sleep(settings.KEYWORD_SYNC_SECONDS)

    def _verify(self, sample, **_):
        report = maintenance.verify(sample=sample)
        self.stdout.write(f"{report.indexed} chunks in the index, {report.expected} in PostgreSQL; "
                          f"{report.sampled} sampled; {report.lag} change-log entries not applied yet")
        for problem in report.problems[:50]:
            self.stdout.write(self.style.ERROR(problem))
        if not report.ok:
            raise CommandError(f"{len(report.problems)} differences"
                               + (" (the copy lags behind the log: run sync first)" if report.lag else ""))
        self.stdout.write(self.style.SUCCESS("the index matches PostgreSQL"))

    def _status(self, **_):
        self.stdout.write(f"engine: {settings.KEYWORD_ENGINE}; folder: {settings.KEYWORD_INDEX_DIR}")
        lags = maintenance.status()
        if not lags:
            self.stdout.write("no copy of the tantivy index anywhere yet (keyword_index rebuild)")
        for lag in lags:
            oldest = f", oldest {lag.oldest_seconds:.0f}s old" if lag.oldest_seconds is not None else ""
            self.stdout.write(f"{lag.copy_id}{' (this machine)' if lag.local else ''}: {lag.chunks} chunks, "
                              f"lag {lag.entries} entries{oldest}; last applied {lag.applied_at:%Y-%m-%d %H:%M:%S}"
                              if lag.applied_at else f"{lag.copy_id}: never applied")
