"""manage.py rebuild_keyword_index — rebuild the BM25 postings of every ready
document with the current average chunk length (searches wait while it runs)."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from tqdm import tqdm

from search.services import keyword_index


class Command(BaseCommand):
    help = "Rebuild the BM25 keyword index (all ready documents)."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, no_progress=False, **opts):
        bars: dict[str, tqdm] = {}

        def progress(phase: str, done: int, total: int) -> None:
            bar = bars.get(phase)
            if bar is None:
                bar = bars[phase] = tqdm(total=total, desc=phase, unit="chunk", disable=no_progress)
            bar.update(done - bar.n)

        started = time.monotonic()
        written = keyword_index.rebuild(progress=progress)
        for bar in bars.values():
            bar.close()
        stats = keyword_index.KeywordStats.objects.order_by("pk").first()
        self.stdout.write(self.style.SUCCESS(
            f"{written} postings for {stats.chunk_count if stats else 0} chunks "
            f"(average length {stats.avg_length_at_build if stats else 0:.1f}) in {time.monotonic() - started:.1f}s"))
