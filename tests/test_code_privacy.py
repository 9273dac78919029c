"""S6: the code of a document a user cannot see must be indistinguishable, for
that user, from a code nobody uses — on the portal upload form, the API (create
and upsert by code) and the admin add form — and a file named after such a code
keeps that code (no "_2" suffix). Codes are unique among the documents a user
may see (docs/decisions.md). The admin's duplicate check and its department
counts say nothing about invisible documents either."""
import io
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils import translation
from rest_framework.authtoken.models import Token

from documents.models import Document
from documents.services.intake import UploadMetadata, register_upload
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db

HIDDEN = "FIN_REPORT_2025_003"
FREE = "FIN_REPORT_2025_099"
BODY = "# Báo cáo\n\nNội dung của người tải lên.\n".encode()


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English (the msgids): the default interface
    language is Vietnamese, and its catalog translates them once the i18n work lands."""
    with translation.override("en"):
        yield


@pytest.fixture
def world():
    owner = f.user("ke_toan_truong", departments=["FIN"])
    secret = f.document(3, departments=("FIN",), code=HIDDEN, owner=owner)
    user = f.user("nhan_vien", departments=["HR"], is_staff=True)
    for codename in ("add_document", "change_document", "view_document", "view_department"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return {"secret": secret, "user": user}


def masked(value, code: str):
    """A response with what must differ (ids, times, the code itself) blanked out."""
    if isinstance(value, dict):
        return {k: "<volatile>" if k in {"id", "created_at", "updated_at", "download_url"} else masked(v, code)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, code) for v in value]
    if isinstance(value, str):
        return re.sub(r"/\d+/", "/<id>/", value.replace(code, "<CODE>"))
    return value


def attempt(code: str, send) -> tuple:
    """Run one upload with `code`, return what the user saw, and undo it (the
    next attempt starts from the same state)."""
    point = transaction.savepoint()
    try:
        seen = masked(send(code), code)
        stored = list(Document.objects.exclude(code=HIDDEN, owner__username="ke_toan_truong")
                      .values_list("code", flat=True))
    finally:
        transaction.savepoint_rollback(point)
        shutil.rmtree(Path(settings.MEDIA_ROOT), ignore_errors=True)
    return seen, [c.replace(code, "<CODE>") for c in stored]


def assert_indistinguishable(send):
    hidden, free = attempt(HIDDEN, send), attempt(FREE, send)
    assert hidden == free
    return hidden


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def token_client(user) -> Client:
    return Client(HTTP_ACCEPT_LANGUAGE="en", HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def signed_in(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # a fresh one per attempt: no message or cookie carried over
    client.force_login(user)
    return client


def test_portal_upload_form(world):
    def send(code):
        response = signed_in(world["user"]).post("/documents/upload/", {
            "file": files.upload_file("bao-cao.md", BODY), "code": code, "document_type": "report",
            "access_level": "1", "language": "vi"})
        return response.status_code, response.get("Location"), messages_of(response)

    seen, stored = assert_indistinguishable(send)
    assert seen[0] == 302 and stored == ["<CODE>"]


def test_api_create(world):
    client = token_client(world["user"])

    def send(code):
        response = client.post("/api/v1/documents/", {"file": files.upload_file("bao-cao.md", BODY), "code": code})
        return response.status_code, response.json()

    seen, stored = assert_indistinguishable(send)
    assert seen[0] == 201 and seen[1]["code"] == "<CODE>" and stored == ["<CODE>"]


def test_api_upsert_by_code(world):
    client = token_client(world["user"])

    def send(code):
        body = encode_multipart(BOUNDARY, {"file": files.upload_file("bao-cao.md", BODY)})
        response = client.generic("PUT", f"/api/v1/documents/by-code/{code}/", body, MULTIPART_CONTENT)
        return response.status_code, response.json()

    seen, stored = assert_indistinguishable(send)
    assert seen[0] == 201 and stored == ["<CODE>"]
    assert Document.objects.get(pk=world["secret"].pk).checksum == world["secret"].checksum  # untouched


def test_admin_add_form(world):
    def send(code):
        response = signed_in(world["user"]).post("/admin/documents/document/add/", {
            "upload": files.upload_file("bao-cao.md", BODY), "code": code, "document_type": "report",
            "access_level": "1", "language": "vi", "version": "1.0"})
        return response.status_code, response.get("Location"), messages_of(response)

    seen, stored = assert_indistinguishable(send)
    assert seen[0] == 302 and stored == ["<CODE>"]


def test_a_file_named_after_the_code_gets_no_suffix(world):
    def send(code):
        doc = register_upload(io.BytesIO(BODY), f"{code}.md", UploadMetadata(), owner=world["user"]).document
        return doc.code

    seen, stored = assert_indistinguishable(send)
    assert seen == "<CODE>" and stored == ["<CODE>"]


def test_a_visible_code_is_still_unique_for_that_user(world):
    register_upload(io.BytesIO(BODY), "a.md", UploadMetadata(code="HR_NOTE_1"), owner=world["user"])
    client = token_client(world["user"])
    again = client.post("/api/v1/documents/", {"file": files.upload_file("b.md", b"# Khac\n\nKhac.\n"),
                                               "code": "HR_NOTE_1"})
    assert again.status_code == 400 and "already exists" in again.json()["code"][0]
    named = register_upload(io.BytesIO(b"# C\n\nC.\n"), "HR_NOTE_1.md", UploadMetadata(), owner=world["user"])
    assert named.document.code == "HR_NOTE_1_2"


def test_admin_duplicate_check_does_not_name_an_invisible_document(world):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world["user"])
    response = client.post("/admin/documents/document/add/", {
        "upload": files.upload_file("copy.md", world["secret"].source_file.open("rb").read()),
        "document_type": "report", "access_level": "1", "language": "vi", "version": "1.0"})
    page = response.content.decode()
    expected = "An identical file is already in the portal; you do not have access to it."  # the portal's wording
    assert response.status_code == 200 and expected in page
    assert HIDDEN not in page and f"/{world['secret'].pk}/change/" not in page
    mine = register_upload(io.BytesIO(BODY), "mine.md", UploadMetadata(), owner=world["user"]).document
    response = client.post("/admin/documents/document/add/", {
        "upload": files.upload_file("copy.md", BODY), "document_type": "report", "access_level": "1",
        "language": "vi", "version": "1.0"})
    assert f"/admin/documents/document/{mine.pk}/change/" in response.content.decode()  # visible: linked


def test_admin_department_counts_only_visible_documents(world):
    for _ in range(2):
        f.document(1, departments=("FIN",))
    for _ in range(2):
        f.document(3, departments=("FIN",))
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world["user"])
    page = client.get("/admin/documents/department/").content.decode()
    row = re.search(r"FIN</a></th>.*?field-document_count\">(\d+)<", page, re.S)
    assert row and row.group(1) == "2", page[:3000]
    root = Client(HTTP_ACCEPT_LANGUAGE="en")
    root.force_login(f.user("root", is_superuser=True, is_staff=True))
    page = root.get("/admin/documents/department/").content.decode()
    assert re.search(r"FIN</a></th>.*?field-document_count\">(\d+)<", page, re.S).group(1) == "5"
