"""Admin upload and actions; portal upload, document page with live status, i18n."""
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from documents.models import Document
from portal.models import User
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


def test_status_poll_brings_the_content_when_processing_ends():
    """The page polls the status fragment with the status it last saw; the poll
    that sees 'ready' after pending/processing carries the chunks out of band."""
    from documents.services.processing import process_document

    owner = f.user("ana", is_superuser=True)
    doc = f.document(1, status="pending", owner=owner)
    client = Client()
    client.force_login(owner)
    page = client.get(f"/documents/{doc.pk}/").content.decode()
    assert f"/documents/{doc.pk}/status/?since=pending" in page and '<div id="doc-content">' in page
    process_document(doc.pk)
    for since in ("pending", "processing"):
        fragment = client.get(f"/documents/{doc.pk}/status/?since={since}").content.decode()
        assert '<div id="doc-content" hx-swap-oob="true">' in fragment and "Mục đích" in fragment
    for url in (f"/documents/{doc.pk}/status/?since=ready", f"/documents/{doc.pk}/status/"):
        assert "hx-swap-oob" not in client.get(url).content.decode()  # later polls, the admin's fragment
    assert "Mục đích" in client.get(f"/documents/{doc.pk}/").content.decode()


def test_vote_buttons_are_labelled_text_with_an_icon_not_emoji():
    from documents.services.processing import process_document
    from search.services import keyword_index

    process_document(f.document(0, text="# Hướng dẫn VPN\n\n## Cài đặt\n\nTải VPN client về máy.\n",
                                status="pending").pk)
    keyword_index.rebuild()
    page = Client().get("/search/", {"q": "VPN", "mode": "keyword"}).content.decode()
    assert 'class="vote-helpful"' in page
    assert not re.search("[\U0001F300-\U0001FAFF\u2600-\u27BF]", page)  # no emoji anywhere
    helpful = re.search(r'<button[^>]*class="vote-helpful"[^>]*>(.*?)</button>', page, re.S)[1]
    assert "<svg" in helpful and 'aria-hidden="true"' in helpful
    assert re.sub(r"<svg.*?</svg>", "", helpful, flags=re.S).strip() == "Hữu ích"
    english = Client(HTTP_ACCEPT_LANGUAGE="en").get("/search/", {"q": "VPN", "mode": "keyword"}).content.decode()
    assert "Not helpful</button>" in english


def test_admin_carries_the_portal_name_in_both_languages(admin_client):
    page = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="vi").content.decode()
    assert "Quản trị cổng tài liệu" in page and "Django" not in page
    english = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Document portal administration" in english and "Django" not in english


def test_language_is_a_choice_everywhere_with_a_clear_refusal(admin_client):
    from rest_framework.authtoken.models import Token

    f.department("HR")
    root = User.objects.get(username="root")
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=root).key}", HTTP_ACCEPT_LANGUAGE="en")
    refused = api.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes()), "language": "fr"})
    assert refused.status_code == 400
    assert refused.json()["language"] == ['"fr" is not a language of the portal; use vi, en or mixed.']
    vi = api.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes()), "language": "fr"},
                  HTTP_ACCEPT_LANGUAGE="vi")
    assert "hãy dùng vi, en hoặc mixed" in vi.json()["language"][0]
    assert Document.objects.count() == 0
    created = api.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes()), "language": "mixed"})
    assert created.status_code == 201, created.content
    assert created.json()["language"] == "mixed" and created.json()["language_label"] == "Mixed (Vietnamese–English)"
    form = {"code": "HR_X_1", "title": "x", "document_type": "policy", "access_level": "1", "language": "de",
            "version": "1.0", "upload": files.upload_file("b.md", b"# B\n\nbbb\n")}
    page = admin_client.post("/admin/documents/document/add/", form)
    assert page.status_code == 200 and "language" in page.context["adminform"].form.errors
    assert Document.objects.count() == 1
    upload = Client()
    upload.force_login(root)
    response = upload.post("/documents/upload/", {"file": files.upload_file("c.md", b"# C\n\nccc\n"),
                                                  "document_type": "policy", "access_level": "1", "language": "xx"})
    assert response.status_code == 200 and "language" in response.context["form"].errors
    assert Document.objects.count() == 1


def test_language_migration_maps_free_text_onto_the_choices():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("documents.migrations.0003_document_language_choices")
    docs = [f.document(1) for _ in range(4)]
    for doc, value in zip(docs, ("Vietnamese", " EN ", "vi-en", "klingon")):
        Document.objects.filter(pk=doc.pk).update(language=value)
    migration.map_languages(apps, None)
    assert [Document.objects.get(pk=d.pk).language for d in docs] == ["vi", "en", "mixed", "vi"]
