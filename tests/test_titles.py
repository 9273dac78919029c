"""Item 7: an upload without a title gets the document's own title when it is
processed (file properties, else its first heading); a title a person typed is
never replaced, on processing or on re-ingest."""
import io

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from documents.models import Document, TitleSource
from documents.services.intake import UploadMetadata, register_upload, request_reprocessing
from documents.services.processing import process_document
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str, **meta) -> Document:
    return register_upload(io.BytesIO(data), name, UploadMetadata(**meta)).document


def processed(doc: Document) -> Document:
    assert process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return doc


@pytest.mark.parametrize("kind", sorted(files.GOOD))
def test_without_a_typed_title_the_document_gets_its_own(kind):
    doc = upload(files.GOOD[kind](), f"so-tay-kho-luu-tru.{kind}")
    assert (doc.title, doc.title_source) == ("so-tay-kho-luu-tru", TitleSource.FILENAME)  # until processed
    doc = processed(doc)
    assert doc.title.casefold() == files.VI_TITLE.casefold()
    assert doc.title_source == TitleSource.DOCUMENT


def test_a_typed_title_is_never_replaced_not_even_by_a_reingest():
    doc = processed(upload(files.docx_bytes(), "a.docx", title="Tên do người tải lên đặt"))
    assert (doc.title, doc.title_source) == ("Tên do người tải lên đặt", TitleSource.UPLOADER)
    request_reprocessing(Document.objects.filter(pk=doc.pk))
    doc = processed(doc)
    assert doc.title == "Tên do người tải lên đặt"


def test_a_file_without_a_title_keeps_its_file_name():
    doc = processed(upload("chỉ một đoạn văn bản ngắn, không có tiêu đề.".encode(), "ghi-chu-hop.txt"))
    assert (doc.title, doc.title_source) == ("ghi-chu-hop", TitleSource.FILENAME)


def test_a_new_version_gets_the_new_files_title_unless_one_was_typed():
    doc = processed(upload(files.md_bytes(), "a.md", code="IT_POLICY_2031_001"))
    assert doc.title == files.VI_TITLE
    newer = "# Chính sách bảo mật thông tin (sửa đổi 2031)\n\nNội dung mới.\n".encode()
    register_upload(io.BytesIO(newer), "b.md", UploadMetadata(code="IT_POLICY_2031_001"), replace=True)
    assert processed(doc).title == "Chính sách bảo mật thông tin (sửa đổi 2031)"
    register_upload(io.BytesIO(files.txt_bytes()), "c.txt",
                    UploadMetadata(code="IT_POLICY_2031_001", title="Đặt tay"), replace=True)
    assert processed(doc).title == "Đặt tay"
    register_upload(io.BytesIO(files.html_bytes()), "d.html", UploadMetadata(code="IT_POLICY_2031_001"),
                    replace=True)
    assert processed(doc).title == "Đặt tay"  # the typed title stays with later versions


def test_a_title_edited_in_admin_counts_as_typed():
    admin = Client()
    admin.force_login(f.user("root", is_superuser=True, is_staff=True))
    doc = processed(upload(files.md_bytes(), "a.md"))
    assert doc.title_source == TitleSource.DOCUMENT
    form = {"code": doc.code, "title": "Sửa trong trang quản trị", "document_type": doc.document_type,
            "access_level": doc.access_level, "language": doc.language, "version": doc.version,
            "chunks-TOTAL_FORMS": "0", "chunks-INITIAL_FORMS": "0"}
    response = admin.post(f"/admin/documents/document/{doc.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    request_reprocessing(Document.objects.filter(pk=doc.pk))
    doc = processed(doc)
    assert (doc.title, doc.title_source) == ("Sửa trong trang quản trị", TitleSource.UPLOADER)


def test_portal_upload_without_a_title_shows_the_documents_own_title():
    user = f.user("uploader")
    user.user_permissions.add(Permission.objects.get(codename="add_document"))
    client = Client()
    client.force_login(user)
    client.post("/documents/upload/", {"file": files.upload_file("so-tay-kho-luu-tru.pptx", files.pptx_bytes()),
                                       "document_type": "policy", "access_level": "1", "language": "vi"})
    doc = processed(Document.objects.get())
    assert files.VI_TITLE in client.get(f"/documents/{doc.pk}/").content.decode()
    assert "so-tay-kho-luu-tru" not in doc.title
