"""Every user-visible string is translated, in Vietnamese and in English.

Two kinds of checks: the catalogs themselves (complete, current with the
sources and compiled), and the pages as served — each main page rendered in
each language while every gettext lookup is recorded, failing on a msgid the
active language has no translation for, and on UI words of the other language
in the visible text (strings that never went through gettext at all)."""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation
from django.utils.translation import trans_real

from documents.models import Document, DocumentStatus, ProcessingStep
from documents.services.processing import process_document
from portal import catalogs
from search.services import keyword_index
from tests import factories as f

# --- the catalogs ------------------------------------------------------------


def test_every_msgid_has_a_translation_in_both_languages():
    untranslated, fuzzy = catalogs.translation_gaps()
    assert set(untranslated) >= {"vi/django.po", "en/django.po", "vi/djangojs.po", "en/djangojs.po"}
    assert not any(untranslated.values()), untranslated
    assert not any(fuzzy.values()), fuzzy


def test_catalogs_hold_exactly_the_msgids_of_the_sources():
    """A string added to the code or a template without `manage.py translations update` fails here."""
    added, removed = catalogs.source_drift()
    assert not any(added.values()), f"not in the catalogs: {added}"
    assert not any(removed.values()), f"no longer in the sources: {removed}"


def test_compiled_catalogs_are_current():
    assert catalogs.stale_compiled() == []


def test_django_guardian_and_drf_messages_all_have_vietnamese():
    """Admin, auth, forms, the admin's JavaScript, guardian's object permissions
    and DRF's API errors: what the packages lack, our catalog provides."""
    assert catalogs.third_party_without_vietnamese() == []


def test_msgid_language_follows_the_conventions():
    assert catalogs.msgid_language("Tải lên") == "vi"
    assert catalogs.msgid_language("Trang", [("templates/search/_results.html", "30")]) == "vi"
    assert catalogs.msgid_language("Title", [("documents/views.py", "77")]) == "en"
    assert catalogs.msgid_language("Show all", [("templates/admin/search_form.html", "11")]) == "en"


# --- the pages -----------------------------------------------------------------

# UI words of one language that must not show on pages of the other (visible
# text and the attributes people read: title, placeholder, aria-label, alt,
# button values). Document content in these tests avoids them.
ENGLISH_UI = ["Queued", "Extracting text", "Chunking", "Extracting keywords", "Ready", "Failed", "Choose all",
              "Object permissions", "OBJECT PERMISSIONS", "File", "Title", "Code", "Type", "Language",
              "Departments", "Tags", "Access level", "Upload", "Documents", "Document", "Search", "Status",
              "Log in", "Log out", "Save", "Delete", "Add", "Change", "History", "Home", "Filter", "Welcome",
              "Django administration", "Django site admin", "Site administration", "View site", "Users", "Groups",
              "Sessions", "Tokens", "Search logs", "Feedbacks", "Embedding spaces", "Evaluation", "Portal",
              "Mixed", "English", "Vietnamese", "No matching", "Not found", "Page", "Next", "Previous",
              "Authentication credentials", "is not a valid choice", "This field is required"]
VIETNAMESE_LETTERS = catalogs.VIETNAMESE_LETTERS  # on English pages no Vietnamese text at all outside lang="vi"

# Each language's own name in the language switcher is deliberately untranslated.
OWN_NAMES = {name for _, name in settings.LANGUAGES}


class VisibleText(HTMLParser):
    """Text a reader sees (and the attributes read aloud or shown), skipping
    <script>/<style> and any element marked as another language (lang=…)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    SHOWN_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt"}

    def __init__(self, language: str):
        super().__init__()
        self.language, self.parts, self.stack = language, [], []

    def _skipping(self) -> bool:
        return any(self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        other_language = bool(attrs.get("lang")) and not attrs["lang"].startswith(self.language)
        if not self._skipping() and not other_language:
            self.parts += [v for k, v in attrs.items() if k in self.SHOWN_ATTRIBUTES and v]
            if tag == "input" and attrs.get("type") in ("submit", "button") and attrs.get("value"):
                self.parts.append(attrs["value"])
        if tag not in self.VOID:
            self.stack.append(other_language or tag in ("script", "style", "template"))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not self._skipping() and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str, language: str) -> str:
    parser = VisibleText(language)
    parser.feed(html)
    return "\n".join(parser.parts)


# Vietnamese on purpose in the English interface: the search tips' example of
# typing with and without diacritics.
VIETNAMESE_EXAMPLES = ("“nghỉ phép”",)


def other_language_words(text: str, language: str) -> list[str]:
    if language == "en":
        for example in VIETNAMESE_EXAMPLES:
            text = text.replace(example, "")
        return sorted({line for line in text.splitlines() if VIETNAMESE_LETTERS.search(line)})
    return sorted({word for word in ENGLISH_UI if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)})


@contextmanager
def untranslated_lookups(language: str):
    """Record every gettext/ngettext/pgettext lookup that has no translation in
    `language` (Django's, the packages' and ours merged, as served)."""
    catalog = trans_real.translation(language)._catalog
    missing: set[str] = set()
    trans = translation._trans
    originals = {name: getattr(trans, name) for name in ("gettext", "ngettext", "pgettext", "npgettext")}

    def note(key, shown):
        if key and key not in catalog and (key, 0) not in catalog and shown not in OWN_NAMES:
            if language == "vi" or VIETNAMESE_LETTERS.search(shown):
                missing.add(shown)  # English msgids need no English catalog entry

    def gettext(message):
        note(message, message)
        return originals["gettext"](message)

    def ngettext(singular, plural, number):
        note((singular, 0), singular)
        return originals["ngettext"](singular, plural, number)

    def pgettext(context, message):
        note(f"{context}\x04{message}", message)
        return originals["pgettext"](context, message)

    def npgettext(context, singular, plural, number):
        note((f"{context}\x04{singular}", 0), singular)
        return originals["npgettext"](context, singular, plural, number)

    for name, fn in (("gettext", gettext), ("ngettext", ngettext), ("pgettext", pgettext),
                     ("npgettext", npgettext)):
        setattr(trans, name, fn)
    try:
        yield missing
    finally:
        for name, fn in originals.items():
            setattr(trans, name, fn)


VPN = "# VPN guide\n\n## Setup\n\nInstall the VPN client and sign in with SSO before working remotely.\n"


@pytest.fixture
def site(db):
    """A ready document, one still processing, a superuser; English-only data so
    that what is Vietnamese on an English page can only be the interface."""
    for code, name in (("IT", "IT team"), ("HR", "People team")):
        f.Department.objects.update_or_create(code=code, defaults={"name": name})
    ready = f.document(1, text=VPN, departments=("IT",), status="pending", code="IT_GUIDE_2031_001")
    process_document(ready.pk)
    Document.objects.filter(pk=ready.pk).update(title="VPN guide", language="en")
    busy = f.document(1, departments=("HR",), code="HR_NOTE_2031_002", text="# Leave\n\nTwelve days a year.\n")
    Document.objects.filter(pk=busy.pk).update(title="Leave note", status=DocumentStatus.PROCESSING, progress=50,
                                               status_message=ProcessingStep.CHUNKING)
    keyword_index.rebuild()
    root = f.user("root", is_superuser=True, is_staff=True)
    return {"ready": Document.objects.get(pk=ready.pk), "busy": Document.objects.get(pk=busy.pk), "root": root}


MISSING_PAGE = "/documents/999999/"  # the 404 page is a page too: translated, nothing from outside


def expected_status(url: str) -> int:
    return 404 if url == MISSING_PAGE else 200


def portal_pages(site) -> list[str]:
    ready, busy, root = site["ready"], site["busy"], site["root"]
    return ["/", "/search/", "/search/?q=VPN&mode=keyword", "/search/?q=zzzxqv&mode=keyword", "/search/?q=VPN",
            "/documents/", f"/documents/{ready.pk}/", f"/documents/{busy.pk}/", "/documents/upload/",
            f"/documents/{busy.pk}/status/", f"/documents/{ready.pk}/status/?since=processing",
            MISSING_PAGE,
            "/admin/", "/admin/documents/document/", f"/admin/documents/document/{ready.pk}/change/",
            f"/admin/documents/document/{busy.pk}/change/", "/admin/documents/document/add/",
            f"/admin/documents/document/{ready.pk}/permissions/", "/admin/documents/department/",
            "/admin/documents/tag/", "/admin/documents/chunk/", "/admin/portal/user/",
            f"/admin/portal/user/{root.pk}/change/", "/admin/auth/group/add/",
            # after the searches above, so the search log has rows (and column headers)
            "/admin/search/searchlog/", "/admin/search/feedback/", "/admin/search/embeddingspace/"]


def api_errors(client: Client, anonymous: Client) -> list:
    return [client.post("/api/v1/documents/", {}),
            client.post("/api/v1/documents/", {"file": "x", "language": "fr", "access_level": 9}),
            client.get("/api/v1/documents/999999/"),
            anonymous.post("/api/v1/documents/", {}),
            client.post("/api/v1/search", {"mode": "x"}, content_type="application/json"),
            client.post("/api/v1/feedback", {"search_id": 999999, "document_id": 1, "kind": "helpful"},
                        content_type="application/json"),
            Client(HTTP_AUTHORIZATION="Token nope", HTTP_ACCEPT_LANGUAGE=client.defaults["HTTP_ACCEPT_LANGUAGE"])
            .get("/api/v1/documents/")]


ADMIN_LABELS = re.compile(r'<th scope="col"[^>]*>.*?<(?:a|span)[^>]*>([^<]+)</(?:a|span)>|<label[^>]*>([^<]+?):?</label>'
                          r'|<h2 class="fieldset-heading"[^>]*>([^<]+)</h2>', re.S)


def untranslated_admin_labels(html: str) -> list[str]:
    """Column headers, field labels and fieldset titles of an admin page that are
    no Vietnamese translation of anything: Django made them from a field or model
    name without gettext (a missing verbose_name)."""
    translations = {str(v).lower() for _, v in trans_real.translation("vi")._catalog.items()}
    found = {next(g for g in m.groups() if g).strip() for m in ADMIN_LABELS.finditer(html)}
    return sorted(label for label in found if re.search(r"[A-Za-z]", label)
                  and label.lower().rstrip(":") not in translations and label not in OWN_NAMES)


def test_admin_labels_check_finds_a_field_name_without_verbose_name():
    html = ('<th scope="col" class="sortable"><div class="text"><a href="?o=1">Result count</a></div></th>'
            '<label for="id_q">Tiêu đề:</label><h2>Quyền trên đối tượng</h2>')
    assert untranslated_admin_labels(html) == ["Result count"]


@pytest.mark.parametrize("language", ["vi", "en"])
def test_pages_and_api_errors_speak_one_language(site, language):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(site["root"])
    anonymous = Client(HTTP_ACCEPT_LANGUAGE=language)
    problems = {}
    with untranslated_lookups(language) as missing:
        pages = [(url, client.get(url)) for url in portal_pages(site)]
        pages += [("/login/", anonymous.get("/login/")),
                  ("/login/ (wrong password)", anonymous.post("/login/", {"username": "x", "password": "y"}))]
        responses = api_errors(client, anonymous)
    for url, response in pages:
        assert response.status_code == expected_status(url.split(" ")[0]), (url, response.status_code)
        assert response.headers["Content-Language"] == language, url
        html = response.content.decode()
        page_language = re.search(r'<html lang="([^"]*)"', html)
        assert page_language is None or page_language[1] == language, url
        words = other_language_words(visible_text(html, language), language)
        if language == "vi" and url.startswith("/admin/"):
            words += untranslated_admin_labels(html)
        if words:
            problems[url] = words
    for response in responses:
        assert 400 <= response.status_code < 500, response.content
        body = json.dumps(response.json(), ensure_ascii=False)
        words = other_language_words(body, language)
        if words:
            problems[f"API {response.request['PATH_INFO']} {response.status_code}"] = words
    assert not missing, f"msgids without a {language} translation: {sorted(missing)}"
    assert not problems, problems


def test_admin_javascript_catalog_is_vietnamese(site):
    client = Client(HTTP_ACCEPT_LANGUAGE="vi")
    client.force_login(site["root"])
    script = client.get("/admin/jsi18n/").content.decode()
    for english, vietnamese in (("Choose all %s", "Chọn tất cả %s"), ("Remove all %s", "Bỏ tất cả %s"),
                                ("Monday", "Thứ Hai")):
        assert f"{json.dumps(english)}: {json.dumps(vietnamese)}" in script


# --- statuses stored as msgids -------------------------------------------------


@pytest.mark.django_db
def test_processing_steps_are_stored_as_msgids_and_shown_translated():
    doc = f.document(1, status="pending")
    assert doc.status_message == ProcessingStep.QUEUED == "Queued"  # stored as the stable msgid
    seen = []
    from documents.services import processing

    original = processing._set_progress
    processing._set_progress = lambda pk, holder, progress, message: (
        seen.append(message), original(pk, holder, progress, message))
    try:
        process_document(doc.pk)
    finally:
        processing._set_progress = original
    doc.refresh_from_db()
    assert seen == [ProcessingStep.CHUNKING, ProcessingStep.KEYWORDS]
    assert doc.status_message == ProcessingStep.READY
    steps = [v for k, v in vars(ProcessingStep).items() if k.isupper()]
    for language, expected in (("vi", {"Queued": "Đang chờ xử lý", "Ready": "Sẵn sàng"}),
                               ("en", {"Queued": "Queued", "Ready": "Ready"})):
        with translation.override(language):
            shown = {step: Document(status_message=step).status_message_display for step in steps}
        for step, text in expected.items():
            assert shown[step] == text
        if language == "vi":
            assert all(shown[step] != step for step in steps), shown

    client = Client(HTTP_ACCEPT_LANGUAGE="vi")
    client.force_login(f.user("owner", is_superuser=True, is_staff=True))
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.PROCESSING,
                                              status_message=ProcessingStep.EXTRACTING)
    page = client.get(f"/documents/{doc.pk}/").content.decode()
    assert "Đang trích xuất văn bản" in page and "Extracting text" not in page
    admin_list = client.get("/admin/documents/document/").content.decode()
    assert "Đang trích xuất văn bản" in admin_list and "Extracting text" not in admin_list
    for language, label in (("vi", "Đang trích xuất văn bản"), ("en", "Extracting text")):
        body = client.get(f"/api/v1/documents/{doc.pk}/", HTTP_ACCEPT_LANGUAGE=language).json()
        assert body["step"] == "Extracting text"  # the machine key never changes
        assert body["status_message"] == label
        assert body["status"] == "processing"
        assert body["status_label"] == ("Đang xử lý" if language == "vi" else "Processing")


def test_server_error_page_is_translated_and_standalone():
    """500.html renders without a request context (no user, no database)."""
    from django.test import RequestFactory
    from django.views.defaults import server_error

    for language, text in (("vi", "Lỗi máy chủ"), ("en", "Server error")):
        with translation.override(language):
            page = server_error(RequestFactory().get("/")).content.decode()
        assert text in page and f'<html lang="{language}">' in page
