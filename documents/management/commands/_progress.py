"""Shared by ingest and load_samples: register files, then follow them to the end."""
from __future__ import annotations

import time

from tqdm import tqdm

from documents.models import Document, DocumentStatus
from documents.services.processing import process_document

FINAL = (DocumentStatus.READY, DocumentStatus.FAILED)


def process_here(ids: list[int], stdout) -> None:
    """Process in this process (no worker needed), one progress bar over the documents."""
    for pk in tqdm(ids, desc="processing", unit="doc", file=stdout):
        process_document(pk)


def wait_for_worker(ids: list[int], stdout, timeout: float) -> bool:
    """Follow the worker's progress; False when the timeout passes first."""
    deadline = time.monotonic() + timeout
    with tqdm(total=len(ids), desc="processing (worker)", unit="doc", file=stdout) as bar:
        done = 0
        while time.monotonic() < deadline:
            now = Document.objects.filter(pk__in=ids, status__in=FINAL).count()
            bar.update(now - done)
            done = now
            if done >= len(ids):
                return True
            time.sleep(0.5)
    return False


def failed_count(ids: list[int]) -> int:
    return Document.objects.filter(pk__in=ids, status=DocumentStatus.FAILED).count()


def summary(ids: list[int]) -> str:
    docs = Document.objects.filter(pk__in=ids)
    ready = docs.filter(status=DocumentStatus.READY).count()
    failed = list(docs.filter(status=DocumentStatus.FAILED).values_list("code", "error"))
    chunks = sum(d.chunks.count() for d in docs)
    lines = [f"{ready} ready, {len(failed)} failed, {chunks} chunks"]
    lines += [f"  FAILED {code}: {error}" for code, error in failed]
    return "\n".join(lines)
