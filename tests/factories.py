"""Small builders for tests: documents with real files, users of each kind."""
from __future__ import annotations

import io
import itertools

from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm

from documents.models import Department, Document, DocumentStatus
from documents.services.intake import UploadMetadata, register_upload
from portal.models import Clearance, User

_seq = itertools.count(1)


def department(code: str) -> Department:
    return Department.objects.get_or_create(code=code, defaults={"name": f"Phòng {code}"})[0]


def user(username: str, *, departments=(), clearance=Clearance.DEPARTMENT, **extra) -> User:
    u = User.objects.create_user(username=username, password="pw-" + username, clearance=clearance, **extra)
    for code in departments:
        u.departments.add(department(code))
    return u


def document(level: int, *, departments=("HR",), text: str | None = None, filename: str | None = None,
             status: str = DocumentStatus.READY, owner=None, code: str | None = None) -> Document:
    n = next(_seq)
    for code_ in departments:
        department(code_)
    body = text or f"# Tài liệu {n}\n\n## Mục đích\n\nNội dung mức truy cập {level}, số {n}.\n"
    meta = UploadMetadata(code=code or f"DOC_{level}_{n}", title=f"Tài liệu {n} mức {level}",
                          access_level=level, departments=list(departments))
    result = register_upload(io.BytesIO(body.encode()), filename or f"doc{n}.md", meta, owner=owner)
    Document.objects.filter(pk=result.document.pk).update(status=status)
    result.document.refresh_from_db()
    return result.document


def grant(doc: Document, *, user: User | None = None, group: Group | None = None) -> None:
    assign_perm("documents.view_document", user or group, doc)
