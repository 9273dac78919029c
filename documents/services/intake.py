"""Registering an upload: every entry point (admin, portal, API, `manage.py
ingest`) comes through `register_upload`, which stores the original file,
creates the Document (status pending) and queues processing once the row is
committed. Identical bytes are recognised by SHA-256 and not stored twice.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from documents.models import (
    AccessLevel,
    Department,
    Document,
    DocumentStatus,
    DocumentType,
    ProcessingStep,
    Tag,
    TitleSource,
    original_upload_path,
)
from documents.selectors import visible_documents
from documents.services.inspection import upload_refusal
from documents.services.text import code_from_filename, nfc

log = logging.getLogger(__name__)


@dataclass
class UploadMetadata:
    code: str = ""
    title: str = ""
    document_type: str = DocumentType.POLICY
    access_level: int = AccessLevel.INTERNAL
    departments: list[str] = field(default_factory=list)  # department codes
    tags: list[str] = field(default_factory=list)  # tag slugs
    language: str = "vi"
    version: str = "1.0"
    effective_date: date | None = None


@dataclass
class UploadResult:
    document: Document
    created: bool
    replaced: bool = False

    @property
    def duplicate(self) -> bool:
        return not self.created and not self.replaced


def sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    fh.seek(0)
    return digest.hexdigest()


def code_scope(user) -> QuerySet:
    """The documents whose codes a new document's code must differ from.

    Codes are unique per visible scope (docs/decisions.md): only the documents
    `user` may see count, so a code held by a document the user cannot see
    behaves exactly like a free code and reveals nothing. Without a signed-in
    user (`manage.py ingest`, `load_samples`: the operator) every document counts."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Document.objects.all()
    return visible_documents(user)


def find_by_code(code: str, user) -> Document | None:
    """The document with this code that `user` may see (their own first: two
    documents may share a code when neither owner could see the other's)."""
    candidates = list(code_scope(user).filter(code=code).order_by("pk")[:20])
    mine = [d for d in candidates if user is not None and d.owner_id == getattr(user, "pk", None)]
    return (mine or candidates or [None])[0]


def _lock_code(code: str) -> None:
    # Two uploads choosing the same code wait for each other (until commit), so
    # both cannot see it free and take it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"documents.code:{code}"])


def _unique_code(base: str, scope: QuerySet) -> str:
    """`base`, or base_2, base_3 … when a document in `scope` holds it."""
    code, n = base, 2
    while scope.filter(code=code).exists():
        code, n = f"{base}_{n}", n + 1
    return code


def size_of(fh) -> int:
    """Bytes in an upload: its declared size (a form upload over the limit carries
    only that, see documents/uploads.py), else measured."""
    size = getattr(fh, "size", None)
    if size is None:
        size = fh.seek(0, 2)
        fh.seek(0)
    return size


def refusal_of(upload) -> str | None:
    """Why a form's uploaded file is refused (type, size), or None: forms and the
    API call this in their validation, so the message sits on the file field."""
    return upload_refusal(Path(upload.name or "").name, size_of(upload), settings.UPLOAD_MAX_BYTES)


def _validate(meta: UploadMetadata, filename: str, size: int) -> tuple[list[Department], list[Tag]]:
    errors = {}
    refusal = upload_refusal(filename, size, settings.UPLOAD_MAX_BYTES)
    if refusal:
        errors["file"] = refusal
    if meta.document_type not in DocumentType.values:
        errors["document_type"] = _("Unknown type %(type)s; one of %(types)s.") % {
            "type": repr(meta.document_type), "types": ", ".join(DocumentType.values)}
    if meta.access_level not in AccessLevel.values:
        errors["access_level"] = _("Access level must be 0, 1, 2 or 3.")
    departments = list(Department.objects.filter(code__in=meta.departments))
    missing = sorted(set(meta.departments) - {d.code for d in departments})
    if missing:
        errors["departments"] = _("Unknown department(s): %(codes)s.") % {"codes": ", ".join(missing)}
    tags = list(Tag.objects.filter(slug__in=meta.tags))
    missing = sorted(set(meta.tags) - {t.slug for t in tags})
    if missing:
        errors["tags"] = _("Unknown tag(s): %(codes)s.") % {"codes": ", ".join(missing)}
    if meta.code and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", meta.code):
        errors["code"] = _("Code may use letters, digits, '_', '-', '.' (at most 64).")
    if errors:
        raise ValidationError(errors)
    return departments, tags


def register_upload(fh: BinaryIO, filename: str, meta: UploadMetadata, owner=None, *,
                    replace: bool = False) -> UploadResult:
    """Store the file and create (or, with `replace`, update by code) a Document.

    Same bytes as an existing document → that document is returned with
    created=False, nothing is stored. `replace=True` with an existing code
    swaps in the new file, bumps nothing else the caller did not set, and
    processes it again (the API's upsert by code). Codes are looked up among
    the documents `owner` may see (`code_scope`).
    """
    filename = Path(filename).name or "upload"
    size = size_of(fh)
    departments, tags = _validate(meta, filename, size)  # a refused file is never stored
    checksum = sha256_of(fh)
    same_bytes = Document.objects.filter(checksum=checksum).first()
    if same_bytes is not None:
        return UploadResult(same_bytes, created=False)

    scope = code_scope(owner)
    stored = target_dir = None
    try:
        with transaction.atomic():
            base = meta.code or code_from_filename(filename)
            _lock_code(base)
            existing = find_by_code(meta.code, owner) if meta.code else None
            if existing is not None and not replace:
                raise ValidationError({"code": _("A document with code %(code)s already exists (upload with "
                                                 "replace to store a new version).") % {"code": meta.code}})
            doc = existing or Document(code=meta.code or _unique_code(base, scope))
            old_file = doc.source_file.name if existing else None
            _set_title(doc, meta.title, filename, new=existing is None)
            doc.document_type = meta.document_type
            doc.access_level = meta.access_level
            doc.language = meta.language
            doc.version = meta.version
            doc.effective_date = meta.effective_date
            doc.checksum = checksum
            doc.original_filename = fit_filename(filename, ORIGINAL_NAME_CHARS, unit="chars")
            doc.file_size = size
            doc.status = DocumentStatus.PENDING
            doc.progress, doc.status_message, doc.error, doc.attempts = 0, ProcessingStep.QUEUED, "", 0
            if owner is not None and getattr(owner, "is_authenticated", False) and doc.owner_id is None:
                doc.owner = owner
            target_dir = original_upload_path(doc, "")
            doc.source_file.save(fit_filename(filename, STORED_NAME_BYTES), File(fh), save=False)
            stored = doc.source_file.name
            doc.save()
            doc.departments.set(departments)
            doc.tags.set(tags)
            transaction.on_commit(lambda: enqueue_processing(doc.pk, doc), robust=True)
    except IntegrityError:
        _discard(stored, target_dir)
        # A concurrent upload of the same bytes won the race.
        same_bytes = Document.objects.filter(checksum=checksum).first()
        if same_bytes is None:
            raise
        return UploadResult(same_bytes, created=False)
    except BaseException:
        _discard(stored, target_dir)  # no stray file, no empty folder
        raise
    if old_file and old_file != doc.source_file.name:
        _discard(old_file, str(PurePosixPath(old_file).parent))
    return UploadResult(doc, created=existing is None, replaced=existing is not None)


# A file name is at most 255 bytes on Linux filesystems; the storage may add
# "_abc1234" to a name that is taken, so stored names stay well below.
STORED_NAME_BYTES = 200
ORIGINAL_NAME_CHARS = 255  # Document.original_filename


def fit_filename(filename: str, limit: int, *, unit: str = "bytes") -> str:
    """The name NFC-normalised and shortened to `limit` UTF-8 bytes (or characters),
    cut between whole characters, keeping the extension: a Vietnamese name of 300
    bytes must not fail with "File name too long"."""
    name = nfc(filename)
    size = (lambda text: len(text.encode("utf-8"))) if unit == "bytes" else len
    if size(name) <= limit:
        return name
    suffix = PurePosixPath(name).suffix
    suffix = suffix if size(suffix) < limit // 2 else ""
    stem = name[:len(name) - len(suffix)] if suffix else name
    room = limit - size(suffix)
    if unit == "bytes":
        stem = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore")  # drops a cut character
    else:
        stem = stem[:room]
    return stem.rstrip() + suffix


def _discard(name: str | None, folder: str | None) -> None:
    """Delete a file stored by a registration that did not complete, and the
    folders it leaves empty."""
    storage = Document._meta.get_field("source_file").storage
    if name:
        storage.delete(name)
    folder = folder.rstrip("/") if folder else None
    while folder and folder not in ("", "originals"):
        try:
            os.rmdir(storage.path(folder))
        except OSError:  # not empty (another document's file) or not there
            break
        folder = str(PurePosixPath(folder).parent)


def _set_title(doc: Document, typed: str, filename: str, *, new: bool) -> None:
    """A typed title is the uploader's and stays; otherwise the file name stands in
    until processing finds the document's own title (processing.py)."""
    if typed:
        doc.title, doc.title_source = typed, TitleSource.UPLOADER
    elif new or doc.title_source == TitleSource.FILENAME:
        doc.title, doc.title_source = Path(filename).stem[:300] or filename, TitleSource.FILENAME
    # else a new version without a typed title: the current title stays until processing


WAITING_FOR_QUEUE = ProcessingStep.WAITING_FOR_QUEUE  # the step shown while the broker is away

def enqueue_processing(document_id: int, document: Document | None = None) -> bool:
    """Queue processing. The upload is already committed, so a broker that cannot be
    reached never turns it into an error: the document stays pending with a message
    saying so, and the recovery sweep queues it as soon as the broker answers
    (documents.services.recovery). Returns whether it was queued."""
    from documents.tasks import process_document_task
    from portal.tasking import send

    queued = send(process_document_task, document_id)
    changes = ({"queued_at": timezone.now(), "status_message": ProcessingStep.QUEUED} if queued
               else {"queued_at": None, "status_message": WAITING_FOR_QUEUE})
    try:
        Document.objects.filter(pk=document_id, status=DocumentStatus.PENDING).update(**changes)
    except DatabaseError:  # the queued task (or the sweep) reads the document again anyway
        log.warning("could not record the queueing of document %s", document_id, exc_info=True)
    if document is not None and not queued and document.status == DocumentStatus.PENDING:
        document.status_message, document.queued_at = WAITING_FOR_QUEUE, None
    return queued


def waits_for_queue(document: Document) -> bool:
    """The document could not be queued yet (the broker was unreachable)."""
    return document.status == DocumentStatus.PENDING and document.status_message == WAITING_FOR_QUEUE


def request_reprocessing(documents) -> int:
    """Re-ingest (admin action, API): back to pending and queued again (a worker still
    processing one of them notices and stops; the broker being away only delays it)."""
    ids = list(documents.values_list("pk", flat=True))
    Document.objects.filter(pk__in=ids).update(status=DocumentStatus.PENDING, progress=0, holder="",
                                               status_message=ProcessingStep.QUEUED, error="", attempts=0, queued_at=None)
    for pk in ids:
        transaction.on_commit(lambda pk=pk: enqueue_processing(pk), robust=True)
    return len(ids)
