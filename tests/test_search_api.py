"""Search API, feedback, upsert by code — and each new endpoint's access rules."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.authtoken.models import Token

from documents.models import Chunk, Document
from documents.services.processing import process_document
from search.models import Feedback, SearchLog
from search.services import embedding, keyword_index, spaces
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db

PUBLIC = "# Hướng dẫn VPN\n\n## Cài đặt\n\nTải VPN client và đăng nhập SSO để làm việc từ xa.\n"
SECRET = "# Kế hoạch sáp nhập\n\n## VPN riêng\n\nDự án Hoa Sen dùng VPN riêng cho ban giám đốc.\n"


def ready(level, text, departments=("IT",)):
    doc = f.document(level, text=text, departments=departments, status="pending")
    process_document(doc.pk)
    return doc


@pytest.fixture
def corpus(minilm_path):
    docs = {"public": ready(0, PUBLIC), "secret": ready(3, SECRET, departments=("FIN",))}
    space = spaces.create_space("api", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    keyword_index.rebuild()
    return docs


def post_search(client, **body):
    return client.post("/api/v1/search", json.dumps(body), content_type="application/json")


def token_client(user):
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword", "rerank"])
def test_search_api_returns_ranked_grouped_results_with_the_space(corpus, mode):
    response = post_search(Client(), query="VPN client", mode=mode)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["space"] == "api" and body["mode"] == mode
    assert [r["document"]["code"] for r in body["results"]] == [corpus["public"].code]
    hit = body["results"][0]
    assert hit["rank"] == 1 and "<mark>VPN client</mark>" in hit["snippet"]
    assert SearchLog.objects.get(pk=body["search_id"]).results[0]["document_id"] == corpus["public"].pk


def test_hidden_documents_are_absent_not_refused(corpus):
    anon = post_search(Client(), query="Hoa Sen sáp nhập", mode="keyword").json()
    assert corpus["secret"].code not in json.dumps(anon["results"])
    assert "ban giám đốc" not in json.dumps(anon["results"], ensure_ascii=False)  # no hidden snippet
    assert all(r["document"]["id"] == corpus["public"].pk for r in anon["results"])
    granted = f.user("board")
    f.grant(corpus["secret"], user=granted)
    seen = post_search(token_client(granted), query="Hoa Sen sáp nhập", mode="keyword").json()
    assert seen["results"][0]["document"]["code"] == corpus["secret"].code


def test_bad_search_requests_are_400(corpus):
    client = Client()
    assert post_search(client, query="").status_code == 400
    assert post_search(client, query="x", mode="magic").status_code == 400
    assert post_search(client, query="x", k=0).status_code == 400
    assert post_search(client, query="x", filters={"document_types": ["memo"]}).status_code == 400
    assert post_search(client, query="x", filters={"date_from": "yesterday"}).status_code == 400


def test_vector_mode_without_any_space_is_a_clear_503():
    ready(0, PUBLIC)
    keyword_index.rebuild()
    response = post_search(Client(HTTP_ACCEPT_LANGUAGE="en"), query="VPN", mode="vector")
    assert response.status_code == 503 and "No embedding space" in response.json()["detail"]
    vietnamese = post_search(Client(), query="VPN", mode="vector")  # the default language
    assert "Chưa có không gian nhúng" in vietnamese.json()["detail"]
    fallback = post_search(Client(), query="VPN", mode="hybrid").json()  # hybrid falls back to keywords
    assert fallback["notice"] == "no-space" and fallback["total_documents"] == 1


def test_feedback_only_on_results_you_were_shown(corpus):
    user = f.user("lan")
    client = token_client(user)
    search_id = post_search(client, query="VPN").json()["search_id"]
    ok = client.post("/api/v1/feedback", {"search_id": search_id, "document_id": corpus["public"].pk,
                                          "kind": "helpful"})
    assert ok.status_code == 201
    assert Feedback.objects.get().rank == 1
    # a document that was not in the results, someone else's search, an unknown search: all 404
    assert client.post("/api/v1/feedback", {"search_id": search_id, "document_id": corpus["secret"].pk,
                                            "kind": "helpful"}).status_code == 404
    other = token_client(f.user("other"))
    assert other.post("/api/v1/feedback", {"search_id": search_id, "document_id": corpus["public"].pk,
                                           "kind": "helpful"}).status_code == 404
    assert client.post("/api/v1/feedback", {"search_id": 999999, "document_id": corpus["public"].pk,
                                            "kind": "helpful"}).status_code == 404
    assert client.post("/api/v1/feedback", {"search_id": search_id, "document_id": corpus["public"].pk,
                                            "kind": "love"}).status_code == 400


def test_feedback_after_the_document_was_re_ingested(corpus):
    """A vote on a result whose passages were replaced since the search is kept, without the old passage."""
    client = Client()
    client.force_login(f.user("lan"))
    client.get("/search/", {"q": "VPN"})
    log = SearchLog.objects.latest("pk")
    Chunk.objects.filter(document=corpus["public"]).delete()  # what a re-ingest does to the old chunks
    vote = client.post("/search/feedback/", {"search_id": log.pk, "document_id": corpus["public"].pk,
                                             "kind": "helpful"})
    assert vote.status_code == 200
    click = client.get(f"/search/open/{log.pk}/{corpus['public'].pk}/")
    assert click.status_code == 302 and click["Location"] == f"/documents/{corpus['public'].pk}/"
    assert sorted((fb.kind, fb.chunk_id) for fb in Feedback.objects.all()) == [("click", None), ("helpful", None)]


def test_portal_vote_and_click(corpus):
    client = Client()
    client.force_login(f.user("lan"))
    page = client.get("/search/", {"q": "VPN"})
    assert page.status_code == 200 and "Hướng dẫn VPN" in page.content.decode()
    log = SearchLog.objects.latest("pk")
    vote = client.post("/search/feedback/", {"search_id": log.pk, "document_id": corpus["public"].pk,
                                             "kind": "not_helpful"})
    assert vote.status_code == 200 and "chưa hữu ích" in vote.content.decode()
    click = client.get(f"/search/open/{log.pk}/{corpus['public'].pk}/")
    assert click.status_code == 302 and click["Location"].startswith(f"/documents/{corpus['public'].pk}/#chunk-")
    assert {fb.kind for fb in Feedback.objects.all()} == {"not_helpful", "click"}
    # opening a hidden document through the click URL still ends at a 404 page
    hidden = client.get(f"/search/open/{log.pk}/{corpus['secret'].pk}/", follow=True)
    assert hidden.status_code == 404


def test_upsert_by_code_creates_then_replaces(corpus):
    system = f.user("erp")
    system.user_permissions.add(Permission.objects.get(codename="add_document"))
    client = token_client(system)
    url = "/api/v1/documents/by-code/ERP_PROC_2030_001/"
    first = client.generic("PUT", url, *_multipart({"file": ("a.md", files.md_bytes()), "title": "Quy trình ERP"}))
    assert first.status_code == 201, first.content
    second = client.generic("PUT", url, *_multipart({"file": ("a.txt", files.txt_bytes()), "title": "Quy trình ERP v2"}))
    assert second.status_code == 200 and second.json()["title"] == "Quy trình ERP v2"
    assert Document.objects.filter(code="ERP_PROC_2030_001").count() == 1
    # a code held by a document the client cannot see is free for it (tests/test_code_privacy.py):
    # a new document of its own, the hidden one untouched and not named
    secret = corpus["secret"]
    hidden = client.generic("PUT", f"/api/v1/documents/by-code/{secret.code}/",
                            *_multipart({"file": ("b.md", b"# x\n\nnew text\n")}))
    assert hidden.status_code == 201 and secret.title not in hidden.content.decode()
    assert hidden.json()["id"] != secret.pk
    assert Document.objects.get(pk=secret.pk).checksum == secret.checksum
    anonymous = Client().generic("PUT", url, *_multipart({"file": ("c.md", b"# y\n\nz\n")}))
    assert anonymous.status_code in (401, 403)


def _multipart(fields):
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {k: SimpleUploadedFile(v[0], v[1]) if isinstance(v, tuple) else v for k, v in fields.items()}
    return encode_multipart(BOUNDARY, data), MULTIPART_CONTENT


def test_search_api_is_throttled(monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES,
                                                              "search": "3/min"})
    client = Client()
    codes = [post_search(client, query="VPN", mode="keyword").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    cache.clear()
