"""A PDF decompression bomb through extraction: time and memory.

    .venv/bin/python bench/pdf_bomb.py [--inflated-mb 256] [--unguarded]

Builds a one-page PDF whose content stream inflates to --inflated-mb MB of
spaces (tests/files.py pdf_bomb_bytes, zlib level 1: about 1 MB) and extracts
it with the default limits. --unguarded turns the bounded stream check off (the
behaviour before issue 9): pdfminer then inflates the stream whole. Prints the
outcome, wall time, Python's traced peak and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("PORTAL_EMBEDDED_AUTOSTART", "0")  # extraction needs no database
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inflated-mb", type=int, default=256)
    parser.add_argument("--unguarded", action="store_true")
    args = parser.parse_args()
    run = _record.start()

    import django

    django.setup()
    from django.conf import settings

    from documents.services import extraction, inspection
    from tests.files import pdf_bomb_bytes

    if args.unguarded:
        inspection._check_pdf_streams = lambda reader, **limits: None
    path = Path(tempfile.mkdtemp()) / "bomb.pdf"
    path.write_bytes(pdf_bomb_bytes(args.inflated_mb, level=1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}; {path.stat().st_size / 1048576:.1f} MB PDF inflating to {args.inflated_mb} MB; "
          f"{'unguarded' if args.unguarded else 'guarded'}")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        extraction.extract(path, path.name, max_bytes=settings.UPLOAD_MAX_BYTES,
                           max_unpacked=settings.INGEST_MAX_UNPACKED_BYTES,
                           max_ratio=settings.INGEST_MAX_COMPRESSION_RATIO)
        outcome = "extracted"
    except extraction.ExtractionError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    print(outcome)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds:.1f} s, traced peak {peak / 1048576:.0f} MB, max RSS {rss:.0f} MB")
    _record.save(f"pdf-bomb-{args.inflated_mb}mb-{'unguarded' if args.unguarded else 'guarded'}", {
        "inflated_mb": args.inflated_mb, "guarded": not args.unguarded, "outcome": outcome,
        "seconds": round(seconds, 2), "traced_peak_mb": round(peak / 1048576), "max_rss_mb": round(rss)}, run)


if __name__ == "__main__":
    main()
