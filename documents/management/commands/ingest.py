"""manage.py ingest PATH... — add files or folders to the portal.

Exits non-zero when a file was refused (unsupported type, too large, bad
metadata) or a document failed processing, after printing each with its reason.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from documents.models import AccessLevel, DocumentType
from documents.services.inspection import SUPPORTED_TYPES, supported_list, upload_refusal
from documents.services.intake import UploadMetadata, register_upload

from ._progress import failed_count, process_here, summary, wait_for_worker


class Command(BaseCommand):
    help = ("Ingest files or folders (recursively). By default the Celery worker processes them. "
            "Exits with status 1 if any file was refused or failed.")

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
        files, skipped = self._collect(paths)
        if skipped:
            self.stdout.write(f"skipped {len(skipped)} file(s) of unsupported types in folders "
                              f"(supported: {supported_list()}): " + ", ".join(str(p) for p in skipped[:10])
                              + (" …" if len(skipped) > 10 else ""))
        if not files:
            raise CommandError(f"No supported files found (supported: {supported_list()}).")
        tags = [t.strip() for t in opts["tags"].split(",") if t.strip()]
        ids, duplicates, refused = [], 0, []
        for path in tqdm(files, desc="registering", unit="file", file=self.stdout):
            # Refused here, before anything is stored, like an upload at the request.
            reason = upload_refusal(path.name, path.stat().st_size, settings.UPLOAD_MAX_BYTES)
            if reason:
                refused.append((path, reason))
                continue
            meta = UploadMetadata(document_type=opts["document_type"], access_level=opts["level"],
                                  departments=opts["department"], tags=tags, language=opts["language"])
            try:
                with path.open("rb") as fh, transaction.atomic():
                    result = register_upload(fh, path.name, meta)
            except ValidationError as exc:
                refused.append((path, "; ".join(exc.messages)))
                continue
            if result.duplicate:
                duplicates += 1
                self.stdout.write(f"already have {path.name}: {result.document.code}")
            else:
                ids.append(result.document.pk)
        self.stdout.write(f"{len(ids)} new, {duplicates} already present, {len(refused)} refused")
        for path, reason in refused:
            self.stdout.write(f"  REFUSED {path}: {reason}")
        failed = self.follow(ids, opts)
        if refused or failed:
            reasons = "; ".join(f"{path.name}: {reason}" for path, reason in refused[:3])
            raise CommandError(f"{len(refused)} file(s) refused, {failed} document(s) failed (see above)"
                               + (f". {reasons}" if reasons else "."))

    def follow(self, ids, opts) -> int:
        """Process or wait for the worker, print the outcome; the number of failed documents."""
        if not ids or opts["no_wait"]:
            return 0
        if opts["sync"]:
            process_here(ids, self.stdout)
        elif not wait_for_worker(ids, self.stdout, opts["timeout"]):
            raise CommandError("Timed out waiting for the worker. Is it running? (or use --sync)")
        self.stdout.write(summary(ids))
        return failed_count(ids)

    @staticmethod
    def _collect(paths) -> tuple[list[Path], list[Path]]:
        """Files to ingest, and the unsupported files found inside folders (skipped).
        A file named on the command line is always tried: an unsupported one is refused."""
        found, skipped = [], []
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise CommandError(f"{path} does not exist")
            if path.is_dir():
                for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                    (found if candidate.suffix.lower() in SUPPORTED_TYPES else skipped).append(candidate)
            else:
                found.append(path)
        return found, skipped
