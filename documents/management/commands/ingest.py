"""manage.py ingest PATH... — add files or folders to the portal."""
from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from documents.models import AccessLevel, DocumentType
from documents.services.extraction import SUPPORTED_TYPES
from documents.services.intake import UploadMetadata, register_upload

from ._progress import process_here, summary, wait_for_worker


class Command(BaseCommand):
    help = "Ingest files or folders (recursively). By default the Celery worker processes them."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--department", action="append", default=[], help="department code (repeatable)")
        parser.add_argument("--type", dest="document_type", default=DocumentType.POLICY,
                            choices=DocumentType.values)
        parser.add_argument("--level", type=int, default=AccessLevel.INTERNAL, choices=AccessLevel.values)
        parser.add_argument("--tags", default="", help="comma-separated tag slugs")
        parser.add_argument("--language", default="vi")
        parser.add_argument("--sync", action="store_true", help="process here instead of in the worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once")
        parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the worker")

    def handle(self, paths, **opts):
        files = self._collect(paths)
        if not files:
            raise CommandError("No supported files found (supported: " + ", ".join(sorted(SUPPORTED_TYPES)) + ").")
        tags = [t.strip() for t in opts["tags"].split(",") if t.strip()]
        ids, duplicates = [], 0
        for path in tqdm(files, desc="registering", unit="file", file=self.stdout):
            meta = UploadMetadata(document_type=opts["document_type"], access_level=opts["level"],
                                  departments=opts["department"], tags=tags, language=opts["language"])
            try:
                with path.open("rb") as fh, transaction.atomic():
                    result = register_upload(fh, path.name, meta)
            except ValidationError as exc:
                raise CommandError(f"{path}: {'; '.join(exc.messages)}")
            if result.duplicate:
                duplicates += 1
                self.stdout.write(f"already have {path.name}: {result.document.code}")
            else:
                ids.append(result.document.pk)
        self.stdout.write(f"{len(ids)} new, {duplicates} already present")
        self.follow(ids, opts)

    def follow(self, ids, opts):
        if not ids or opts["no_wait"]:
            return
        if opts["sync"]:
            process_here(ids, self.stdout)
        elif not wait_for_worker(ids, self.stdout, opts["timeout"]):
            raise CommandError("Timed out waiting for the worker. Is it running? (or use --sync)")
        self.stdout.write(summary(ids))

    @staticmethod
    def _collect(paths) -> list[Path]:
        found = []
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise CommandError(f"{path} does not exist")
            candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
            found += [p for p in candidates if p.is_file() and p.suffix.lower() in SUPPORTED_TYPES]
        return found
