"""S9: a Vietnamese file name over 255 bytes is stored under a shortened name (the
extension kept, cut between whole characters, the original name kept truncated
to its field) and never leaves an empty folder; the API list filters answer a
NUL byte or a value of the wrong type with a 400 naming the parameter, never a 500."""
import io
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from documents.models import Document
from documents.services.intake import UploadMetadata, fit_filename, register_upload
from documents.services.processing import process_document
from tests import factories as f
from tests import files

LONG_NAME = "Quy định về việc quản lý và sử dụng tài sản công nghệ thông tin của công ty " * 5 + ".docx"


def media_entries() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(root.rglob("*")) if root.exists() else []


def empty_folders() -> list[Path]:
    """Folders under originals/ with no file anywhere below them."""
    return [p for p in media_entries() if p.is_dir() and p.name != "originals"
            and not any(q.is_file() for q in p.rglob("*"))]


@pytest.mark.django_db
def test_a_name_over_255_bytes_is_stored_shortened_and_processed():
    assert len(LONG_NAME.encode()) > 255 and len(LONG_NAME) > 255
    user = f.user("uploader")
    user.user_permissions.add(Permission.objects.get(codename="add_document"))
    client = Client()
    client.force_login(user)
    response = client.post("/documents/upload/", {"file": files.upload_file(LONG_NAME, files.docx_bytes()),
                                                   "document_type": "policy", "access_level": "1",
                                                   "language": "vi"})
    assert response.status_code == 302
    doc = Document.objects.get()
    stored = Path(doc.source_file.path)
    assert stored.exists() and len(stored.name.encode()) <= 255 and stored.suffix == ".docx"
    assert len(doc.original_filename) <= 255 and doc.original_filename.endswith(".docx")
    assert LONG_NAME.startswith(doc.original_filename[:-len(".docx")])
    assert process_document(doc.pk) == "ready"
    download = client.get(f"/documents/{doc.pk}/download/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == stored.read_bytes()


@pytest.mark.django_db
def test_a_failed_registration_leaves_no_file_and_no_empty_folder(monkeypatch):
    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Document, "save", broken_save)
    with pytest.raises(OSError):
        register_upload(io.BytesIO(files.md_bytes()), "a.md", UploadMetadata())
    assert [p for p in media_entries() if p.is_file()] == []
    assert empty_folders() == []


@pytest.mark.django_db
def test_a_new_version_leaves_no_empty_folder_behind():
    register_upload(io.BytesIO(files.md_bytes()), "a.md", UploadMetadata(code="X_1"))
    doc = register_upload(io.BytesIO(files.txt_bytes()), "b.txt", UploadMetadata(code="X_1"), replace=True).document
    assert [p for p in media_entries() if p.is_file()] == [Path(doc.source_file.path)]  # the old file is gone
    assert empty_folders() == []  # and so is its folder
    assert Path(doc.source_file.path).read_bytes() == files.txt_bytes()


@hypothesis_settings(max_examples=200, deadline=None)
@given(stem=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=400),
       suffix=st.sampled_from([".docx", ".pdf", ".md", ""]), limit=st.integers(20, 255))
def test_fit_filename_cuts_between_characters_and_keeps_the_extension(stem, suffix, limit):
    name = stem + suffix
    fitted = fit_filename(name, limit)
    assert len(fitted.encode("utf-8")) <= limit
    fitted.encode("utf-8").decode("utf-8")  # whole characters only
    if suffix and len(fit_filename(name, 10**6).encode()) > limit:
        assert fitted.endswith(suffix)


@pytest.fixture
def api_client(db):
    f.document(0, departments=("HR",))
    return Client()


@pytest.mark.parametrize("query, field", [
    ("q=%00", "q"), ("department=%00", "department"), ("tag=a%00b", "tag"), ("access_level=abc", "access_level"),
    ("access_level=%00", "access_level"), ("status=%00", "status"), ("document_type=memo", "document_type"),
    ("q=" + "x" * 201, "q"),
])
def test_bad_list_filters_are_a_400_naming_the_parameter(api_client, query, field):
    response = api_client.get(f"/api/v1/documents/?{query}")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()


def test_good_list_filters_still_filter(api_client):
    assert api_client.get("/api/v1/documents/?access_level=0").json()["count"] == 1
    assert api_client.get("/api/v1/documents/?access_level=1").json()["count"] == 0
    assert api_client.get("/api/v1/documents/?access_level=&q=&department=").json()["count"] == 1
    assert api_client.get("/api/v1/documents/?department=HR&status=ready").json()["count"] == 1
    assert api_client.get("/api/v1/documents/?q=Tài liệu").json()["count"] == 1
