"""Item 12 / S5: unsupported types and over-size files are refused at the request
— portal form, admin add form, API, `manage.py ingest`, and `register_upload`
under them all — with the limit and the supported types in the message, and
nothing is stored. An upload over the limit is not even written to a temporary
file past the limit. `manage.py ingest` exits non-zero on a refused or failed file."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import translation
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.core.management import CommandError, call_command
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.authtoken.models import Token

from documents.models import Document
from documents.services.intake import UploadMetadata, register_upload
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db

LIMIT = 1024 * 1024
SUPPORTED = ".docx, .htm, .html, .markdown, .md, .pdf, .pptx, .txt, .xlsx"
BAD_FILES = {
    "exe": ("bad.exe", b"MZ\x90\x00" + b"\x00" * 100, "Unsupported file type '.exe'"),
    "no_extension": ("README", b"hello", "Unsupported file type '(none)'"),
    "too_large": ("big.txt", b"a" * (3 * LIMIT), "The file is 3.0 MB, over the 1.0 MB limit"),
}


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English (the msgids): the default interface
    language is Vietnamese, and its catalog translates them once the i18n work lands."""
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.UPLOAD_MAX_BYTES = LIMIT


def stored_files() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    return list(root.rglob("*")) if root.exists() else []  # files and folders alike


def uploader():
    user = f.user("uploader", is_staff=True)
    for codename in ("add_document", "change_document", "view_document"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def assert_refused(message: str, expected: str):
    assert expected in message, message
    assert SUPPORTED in message or "Supported" in message, message
    assert Document.objects.count() == 0
    assert stored_files() == []


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_register_upload_refuses_before_storing(case):
    name, data, expected = BAD_FILES[case]
    with pytest.raises(ValidationError) as err:
        register_upload(io.BytesIO(data), name, UploadMetadata())
    assert_refused(str(err.value.message_dict["file"]), expected)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_portal_form_refuses(case):
    name, data, expected = BAD_FILES[case]
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(uploader())
    response = client.post("/documents/upload/", {"file": files.upload_file(name, data), "document_type": "policy",
                                                   "access_level": "1", "language": "vi"})
    assert response.status_code == 200
    assert_refused(" ".join(response.context["form"].errors["file"]), expected)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_api_refuses_with_a_400_on_the_file_field(case):
    name, data, expected = BAD_FILES[case]
    token = Token.objects.create(user=uploader())
    client = Client(HTTP_ACCEPT_LANGUAGE="en", HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post("/api/v1/documents/", {"file": files.upload_file(name, data)})
    assert response.status_code == 400
    assert_refused(" ".join(response.json()["file"]), expected)
    response = client.generic("PUT", "/api/v1/documents/by-code/X_1/",
                              encode_multipart(BOUNDARY, {"file": files.upload_file(name, data)}), MULTIPART_CONTENT)
    assert response.status_code == 400
    assert_refused(" ".join(response.json()["file"]), expected)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_admin_add_form_refuses(case):
    name, data, expected = BAD_FILES[case]
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(uploader())
    response = client.post("/admin/documents/document/add/", {
        "upload": files.upload_file(name, data), "document_type": "policy", "access_level": "1",
        "language": "vi", "version": "1.0"})
    assert response.status_code == 200
    assert_refused(" ".join(response.context["adminform"].form.errors["upload"]), expected)


@pytest.mark.parametrize("path", ["portal", "api", "admin"])
def test_an_oversized_upload_is_not_written_past_the_limit(settings, monkeypatch, path):
    """The storing handler (a temporary file on disk) receives at most the limit;
    the answer still names the real size."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload goes to a temporary file
    written = []
    original = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        written.append(len(raw_data))
        return original(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    big = files.upload_file("big.txt", b"a" * (8 * LIMIT))
    form = {"document_type": "policy", "access_level": "1", "language": "vi", "version": "1.0"}
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(uploader())
    if path == "portal":
        response = client.post("/documents/upload/", {"file": big, **form})
        message = " ".join(response.context["form"].errors["file"])
    elif path == "api":
        response = client.post("/api/v1/documents/", {"file": big})
        message = " ".join(response.json()["file"])
    else:
        response = client.post("/admin/documents/document/add/", {"upload": big, **form})
        message = " ".join(response.context["adminform"].form.errors["upload"])
    assert "The file is 8.0 MB, over the 1.0 MB limit" in message
    assert 0 < sum(written) <= LIMIT
    assert Document.objects.count() == 0 and stored_files() == []


def test_a_file_at_the_limit_is_accepted():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(uploader())
    response = client.post("/documents/upload/", {"file": files.upload_file("exact.txt", b"a " * (LIMIT // 2)),
                                                   "document_type": "policy", "access_level": "1", "language": "vi"})
    assert response.status_code == 302 and Document.objects.count() == 1


def test_the_forms_say_what_is_supported():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(uploader())
    for url in ("/documents/upload/", "/admin/documents/document/add/"):
        page = client.get(url).content.decode()
        assert ".docx, .htm" in page and "1.0 MB" in page


def test_ingest_refuses_unsupported_and_oversized_files_and_skips_them_in_folders(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "quy-dinh.md").write_bytes(files.md_bytes())
    (folder / "setup.exe").write_bytes(b"MZ")
    (folder / "big.txt").write_bytes(b"a" * (2 * LIMIT))
    with pytest.raises(CommandError, match="1 file\\(s\\) refused, 0 document\\(s\\) failed"):
        call_command("ingest", str(folder), "--sync")
    out = capsys.readouterr().out
    assert "skipped 1 file(s) of unsupported types" in out and "setup.exe" in out
    assert "REFUSED" in out and "big.txt: The file is 2.0 MB, over the 1.0 MB limit" in out
    assert list(Document.objects.values_list("original_filename", "status")) == [("quy-dinh.md", "ready")]
    with pytest.raises(CommandError, match="1 file\\(s\\) refused"):
        call_command("ingest", str(folder / "setup.exe"), "--sync")
    assert "Unsupported file type '.exe'" in capsys.readouterr().out


def test_ingest_exits_non_zero_and_prints_the_failures(transactional_db, tmp_path):
    """The real command line: status 1 and the reason when a document fails."""
    from django.db import connection

    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "good.md").write_bytes(files.md_bytes())
    env = {**os.environ, "PORTAL_DATABASE_NAME": connection.settings_dict["NAME"],
           "PORTAL_MEDIA_ROOT": str(tmp_path / "media")}
    done = subprocess.run([sys.executable, "manage.py", "ingest", str(tmp_path), "--sync"], env=env,
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 ready, 1 failed" in done.stdout and "FAILED BROKEN: The PDF is damaged" in done.stdout
    assert "0 file(s) refused, 1 document(s) failed" in done.stderr
