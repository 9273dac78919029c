"""manage.py load_samples — the sample corpus (documents/samples): departments,
tags and documents with their metadata; once every sample document is ready,
its evaluation sets (calibration and guard) through the `samples_loaded`
hand-off. Idempotent: files already present are skipped, sets that are current kept."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from documents.models import Department, Document, DocumentStatus, Tag
from documents.signals import samples_loaded
from documents.services.intake import UploadMetadata, register_upload

from ._progress import process_here, summary, wait_for_worker

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load_taxonomy(manifest: dict) -> None:
    for dept in manifest["departments"]:
        Department.objects.update_or_create(code=dept["code"], defaults={"name": dept["name"]})
    pending = list(manifest["tags"])
    while pending:  # parents before children
        progressed = False
        for tag in list(pending):
            parent = tag.get("parent")
            if parent and not Tag.objects.filter(slug=parent).exists():
                continue
            Tag.objects.update_or_create(slug=tag["slug"], defaults={
                "name": tag["name"], "parent": Tag.objects.get(slug=parent) if parent else None})
            pending.remove(tag)
            progressed = True
        if not progressed:
            raise CommandError(f"Tags with unknown parents: {[t['slug'] for t in pending]}")


class Command(BaseCommand):
    help = "Load the sample corpus (departments, tags, documents) and, once processed, its evaluation sets."

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="process here instead of in the worker")
        parser.add_argument("--no-wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=1800)

    def handle(self, **opts):
        manifest = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))
        load_taxonomy(manifest)
        ids, present = [], 0
        for entry in tqdm(manifest["documents"], desc="registering", unit="doc", file=self.stdout):
            meta = UploadMetadata(
                code=entry["code"], title=entry["title"], document_type=entry["document_type"],
                access_level=entry["access_level"], departments=entry["departments"], tags=entry["tags"],
                language=entry["language"], version=entry.get("version", "1.0"),
                effective_date=date.fromisoformat(entry["effective_date"]) if entry.get("effective_date") else None)
            path = SAMPLES / "files" / entry["file"]
            with path.open("rb") as fh, transaction.atomic():
                result = register_upload(fh, path.name, meta, replace=True)
            if result.duplicate:
                present += 1
            else:
                ids.append(result.document.pk)
        self.stdout.write(f"{len(ids)} sample documents queued, {present} already loaded")
        if ids and opts["no_wait"]:
            self.stdout.write("The evaluation sets are imported once the documents are processed: "
                              "run load_samples again then.")
            return
        if ids:
            if opts["sync"]:
                process_here(ids, self.stdout)
            elif not wait_for_worker(ids, self.stdout, opts["timeout"]):
                raise CommandError("Timed out waiting for the worker (or use --sync).")
            self.stdout.write(summary(ids))
        self.hand_off(manifest)

    def hand_off(self, manifest: dict) -> None:
        """Evaluation sets resolve their answers to chunks: only with every sample ready."""
        codes = [entry["code"] for entry in manifest["documents"]]
        not_ready = sorted(set(codes) - set(Document.objects.filter(code__in=codes, status=DocumentStatus.READY)
                                            .values_list("code", flat=True)))
        if not_ready:
            self.stdout.write(f"Evaluation sets not imported: {len(not_ready)} sample documents are not ready "
                              f"({', '.join(not_ready[:5])}{' …' if len(not_ready) > 5 else ''}).")
            return
        for _receiver, lines in samples_loaded.send(sender=self.__class__, samples_dir=SAMPLES):
            for line in lines or []:
                self.stdout.write(line)
