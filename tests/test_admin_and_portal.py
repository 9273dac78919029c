"""Admin upload and actions; portal upload, document page with live status, i18n."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from documents.models import Document
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # messages asserted by their English msgids
    client.force_login(f.user("root", is_superuser=True, is_staff=True))
    return client


def test_admin_upload_creates_a_document_and_refuses_a_duplicate(admin_client):
    f.department("HR")
    form = {"code": "HR_PROC_2031_001", "title": "Quy trình", "document_type": "procedure",
            "access_level": "1", "language": "vi", "version": "1.0"}
    response = admin_client.post("/admin/documents/document/add/",
                                 {**form, "upload": files.upload_file("qt.md", files.md_bytes())})
    assert response.status_code == 302, response.content.decode()[:2000]
    doc = Document.objects.get(code="HR_PROC_2031_001")
    assert doc.status == "pending" and doc.original_filename == "qt.md"
    again = admin_client.post("/admin/documents/document/add/",
                              {**form, "code": "OTHER", "upload": files.upload_file("copy.md", files.md_bytes())})
    assert again.status_code == 200 and "Already have it" in again.content.decode()
    assert Document.objects.count() == 1


def test_admin_change_page_shows_live_status_and_chunks(admin_client):
    from documents.services.processing import process_document

    doc = f.document(1, status="pending")
    process_document(doc.pk)
    page = admin_client.get(f"/admin/documents/document/{doc.pk}/change/").content.decode()
    assert f"/documents/{doc.pk}/status/" in page and "hx-get" in page
    assert "Mục đích" in page  # chunk inline


def test_admin_bulk_actions(admin_client):
    docs = [f.document(1) for _ in range(3)]
    ids = [str(d.pk) for d in docs]
    admin_client.post("/admin/documents/document/", {"action": "set_access_level_3", "_selected_action": ids})
    assert set(Document.objects.values_list("access_level", flat=True)) == {3}
    admin_client.post("/admin/documents/document/", {"action": "reingest", "_selected_action": ids})
    assert set(Document.objects.values_list("status", flat=True)) == {"pending"}


def test_admin_list_filters_and_search(admin_client):
    f.document(0, code="FIN_REPORT_2025_009")
    page = admin_client.get("/admin/documents/document/?q=FIN_REPORT&status__exact=ready").content.decode()
    assert "FIN_REPORT_2025_009" in page
    for model in ("department", "tag", "chunk"):
        assert admin_client.get(f"/admin/documents/{model}/").status_code == 200
    assert admin_client.get("/admin/portal/user/").status_code == 200


def test_portal_upload_for_allowed_users_only():
    reader = f.user("reader")
    client = Client()
    client.force_login(reader)
    assert client.get("/documents/upload/").status_code == 403
    reader.user_permissions.add(Permission.objects.get(codename="add_document"))
    client.force_login(reader)
    assert client.get("/documents/upload/").status_code == 200
    response = client.post("/documents/upload/", {
        "file": files.upload_file("hd.html", files.html_bytes()), "document_type": "technical_guide",
        "access_level": "3", "language": "vi"})
    doc = Document.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/documents/{doc.pk}/"
    page = client.get(f"/documents/{doc.pk}/").content.decode()  # the uploader sees its own confidential doc
    assert 'hx-trigger="every 2s"' in page  # live status while pending
    again = client.post("/documents/upload/", {
        "file": files.upload_file("x.html", files.html_bytes()), "document_type": "policy",
        "access_level": "1", "language": "vi"}, follow=True)
    assert "Đã có tài liệu này" in again.content.decode()  # Vietnamese by default


def test_anonymous_upload_goes_to_login():
    response = Client().get("/documents/upload/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_interface_is_vietnamese_by_default_and_english_on_request():
    client = Client()
    assert "Đăng nhập" in client.get("/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    page = client.get("/").content.decode()
    assert 'lang="en"' in page and "Log in" in page and "Đăng nhập" not in page
    search_page = client.get("/search/", {"q": "zzzz không có"}).content.decode()
    assert "Search" in search_page and "No matching documents" in search_page


def test_login_and_logout():
    f.user("lan", departments=["HR"])
    client = Client()
    response = client.post("/login/", {"username": "lan", "password": "pw-lan"})
    assert response.status_code == 302
    assert "lan" in client.get("/").content.decode()
    client.post("/logout/")
    assert "Đăng nhập" in client.get("/").content.decode()
