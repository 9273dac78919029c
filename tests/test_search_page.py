"""The portal search page as a visitor meets it: no session row for anonymous
searches (their votes still work), hostile input, invisible characters,
facets that belong to the results, passage labels."""
import re

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from documents.models import Tag
from documents.services.processing import process_document
from search.models import Feedback, SearchLog
from search.services import keyword_index
from search.views import CLIENT_COOKIE
from tests import factories as f

pytestmark = pytest.mark.django_db

LEAVE = ("# Quy chế nghỉ phép\n\n## Số ngày nghỉ\n\nNhân viên được nghỉ phép năm 12 ngày có hưởng lương.\n\n"
         "## Thủ tục\n\nĐơn xin nghỉ phép gửi quản lý trực tiếp trước 3 ngày.\n")
SAFETY = ("An toàn văn phòng: khi nghỉ phép dài ngày, tắt thiết bị điện. Lối thoát hiểm luôn thông thoáng.\n\n"
          "Diễn tập phòng cháy mỗi năm hai lần; nhân viên nghỉ phép được diễn tập bù.\n")


def ready(level, text, departments=("HR",), tags=()):
    doc = f.document(level, text=text, departments=departments, status="pending")
    for slug in tags:
        doc.tags.add(Tag.objects.get(slug=slug))
    assert process_document(doc.pk) == "ready"
    return doc


@pytest.fixture
def corpus():
    parent = Tag.objects.create(slug="nhan-su", name="Nhân sự")
    Tag.objects.create(slug="nghi-phep", name="Nghỉ phép", parent=parent)
    Tag.objects.create(slug="luong-mat", name="Lương mật")
    docs = {"leave": ready(0, LEAVE, tags=["nghi-phep"]), "safety": ready(0, SAFETY, ("OPS",), tags=["nhan-su"]),
            "salary": ready(3, "# Lương\n\nBảng lương mật của ban giám đốc: nghỉ phép không lương.\n",
                            ("FIN",), tags=["luong-mat"])}
    keyword_index.rebuild()
    return docs


def test_an_anonymous_search_stores_no_session_and_can_still_vote(corpus):
    visitor = Client()
    page = visitor.get("/search/", {"q": "nghỉ phép", "mode": "keyword"})
    assert page.status_code == 200 and Session.objects.count() == 0
    assert CLIENT_COOKIE in page.cookies and page.cookies[CLIENT_COOKIE]["httponly"]
    log = SearchLog.objects.get()
    assert log.user is None and len(log.client_key) == 64 and page.cookies[CLIENT_COOKIE].value not in log.client_key
    vote = {"search_id": log.pk, "document_id": corpus["leave"].pk, "kind": "helpful"}
    assert visitor.post("/search/feedback/", vote).status_code == 200
    assert Client().post("/search/feedback/", vote).status_code == 404  # another visitor: not their search
    assert Feedback.objects.get().kind == "helpful" and Session.objects.count() == 0
    again = visitor.get("/search/", {"q": "nghỉ phép", "mode": "keyword"})
    assert CLIENT_COOKIE not in again.cookies  # the cookie is set once, then kept
    assert SearchLog.objects.latest("pk").client_key == log.client_key


@pytest.mark.parametrize("params", [
    {"q": "nghỉ\x00phép"}, {"q": "nghỉ phép", "dept": "\x00"}, {"q": "nghỉ phép", "tag": "a\x00b"},
    {"q": "nghỉ phép", "lang": "<script>"}, {"q": "nghỉ phép", "type": "\x00"}, {"q": "\x00\x01"},
    {"q": "nghỉ phép", "from": "2024-13-45", "page": "x"}, {"q": "x" * 5000},
])
def test_hostile_query_strings_get_a_page_not_a_500(corpus, params):
    response = Client().get("/search/", params)
    assert response.status_code == 200
    assert "<script>" not in response.content.decode().split("<main>")[1]


def test_the_api_refuses_a_nul_byte_with_a_400(corpus):
    response = Client().post("/api/v1/search", {"query": "nghỉ\x00phép"}, content_type="application/json")
    assert response.status_code == 400 and "query" in response.json()


def test_zero_width_characters_in_a_query_find_the_words(corpus):
    root = f.user("root", is_superuser=True)
    from search.services.results import run_search

    typed = run_search(root, "ngh\u200bỉ ph\u200dép", "keyword")
    assert typed.query == "nghỉ phép"
    assert [h.document.pk for h in typed.hits] == [h.document.pk for h in run_search(root, "nghỉ phép",
                                                                                      "keyword").hits]
    assert typed.hits


def test_tags_of_hidden_documents_are_not_offered_and_children_sit_under_parents(corpus):
    page = Client().get("/search/").content.decode()
    assert 'value="nghi-phep"' in page and 'value="nhan-su"' in page
    assert 'value="luong-mat"' not in page  # used only by a confidential document
    assert page.index('value="nhan-su"') < page.index('value="nghi-phep"')
    assert re.search(r'data-depth="1"><input[^>]*value="nghi-phep"', page)


def test_facet_counts_belong_to_the_results_shown_after_an_htmx_search(corpus):
    client = Client()
    fragment = client.get("/search/", {"q": "nghỉ phép", "mode": "keyword", "dept": "OPS"},
                          HTTP_HX_REQUEST="true").content.decode()
    assert fragment.count('class="card result"') == 1
    facets = fragment[fragment.index('id="facets"'):]
    assert 'hx-swap-oob="true"' in fragment
    counts = dict(re.findall(r'value="([\w-]+)"[^>]*>[^<]*<span class="muted count">\((\d+)\)', facets))
    # the parent tag counts its child's documents; only the OPS result is counted
    assert counts["OPS"] == "1" and counts["HR"] == "0" and counts["nhan-su"] == "1" and counts["nghi-phep"] == "0"
    assert counts["vi"] == "1"  # languages have counts too


def test_further_passages_are_labelled_by_heading_or_position(corpus):
    doc = ready(0, "Đoạn mở đầu về nghỉ phép năm cho nhân viên mới.\n\n" + "\n\n".join(
        f"Nghỉ phép trường hợp {i}: " + "nội dung chi tiết " * 60 for i in range(4)), ("OPS",))
    keyword_index.rebuild()
    page = Client().get("/search/", {"q": "nghỉ phép", "mode": "keyword"}).content.decode()
    links = re.findall(rf'href="/documents/{doc.pk}/#chunk-(\d+)">([^<]+)</a>', page)
    assert links and all(label == f"Đoạn {int(n) + 1}" for n, label in links)
