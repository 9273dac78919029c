"""The portal in a real headless browser (Debian's chromium driven by
Playwright): log in, search, filter, open a result, vote; ask in the Q&A
panel, watch the answer stream in, vote on it and open a citation."""
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from documents.services.processing import process_document
from search.models import Feedback, SearchLog
from search.services import embedding, keyword_index, spaces
from tests import factories as f

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is installed by bin/test")]

LEAVE = ("# Chính sách nghỉ phép năm\n\n## 1. Số ngày nghỉ\n\nNhân viên chính thức được nghỉ phép năm 12 ngày "
         "có hưởng lương.\n\n## 2. Thủ tục\n\nĐơn xin nghỉ phép gửi quản lý trực tiếp qua hệ thống HRM.\n")
LEAVE_REPORT = ("# Báo cáo nghỉ phép quý 3\n\n## Tổng hợp\n\nSố ngày nghỉ phép bình quân là 4,2 ngày mỗi nhân viên.\n")
VPN = "# Hướng dẫn VPN\n\n## Cài đặt\n\nTải VPN client, đăng nhập bằng SSO.\n"


@pytest.fixture
def browser():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright

    from django.db import connections

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()
        # Queries made while Playwright's loop ran used a connection of that
        # context: close it here, or the test database cannot be dropped.
        connections.close_all()


@pytest.fixture
def portal_data(transactional_db, minilm_path):
    docs = []
    for level, text, doc_type in ((0, LEAVE, "policy"), (1, LEAVE_REPORT, "report"), (0, VPN, "technical_guide")):
        doc = f.document(level, text=text, status="pending")
        doc.document_type = doc_type
        doc.title = text.splitlines()[0].lstrip("# ")
        doc.save()
        process_document(doc.pk)
        docs.append(doc)
    space = spaces.create_space("browser", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    keyword_index.rebuild()
    f.user("lan", departments=["HR"])
    return docs


def test_login_search_filter_open_and_vote(live_server, browser, portal_data, tmp_path):
    page = browser.new_page(locale="vi-VN")
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "lan")
    page.fill("input[name=password]", "pw-lan")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/search/")
    page.fill("input[name=q]", "nghỉ phép")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("article.result")
    titles = page.locator("article.result h3").all_inner_texts()
    assert any("Chính sách nghỉ phép năm" in t for t in titles)
    assert page.locator("article.result mark").count() > 0  # matched terms highlighted
    page.screenshot(path=str(tmp_path / "search.png"))

    # filter: reports only (the facet checkbox re-runs the search through htmx)
    page.click("summary")
    page.check("input[name=type][value=report]")
    page.wait_for_function("() => document.querySelectorAll('article.result').length === 1")
    assert "Báo cáo nghỉ phép quý 3" in page.locator("article.result h3").inner_text()
    assert "type=report" in page.url

    # vote on the result (a labelled button with an icon, not an emoji), then open it
    assert page.locator("article.result .vote-helpful").first.inner_text().strip() == "Hữu ích"
    assert page.locator("article.result .vote-helpful svg").first.bounding_box()["width"] > 0
    page.click("article.result .vote-helpful")
    page.wait_for_selector("article.result .voted")
    assert Feedback.objects.filter(kind="helpful", user__username="lan").count() == 1
    page.click("article.result a.result-link")
    page.wait_for_url("**/documents/**")
    assert "Báo cáo nghỉ phép quý 3" in page.locator("h1").inner_text()
    assert Feedback.objects.filter(kind="click").count() == 1
    assert SearchLog.objects.filter(user__username="lan").count() >= 2


def test_accentless_query_offers_did_you_mean(live_server, browser, portal_data):
    page = browser.new_page()
    page.goto(f"{live_server.url}/search/?q=nghi+phep&mode=keyword")
    page.wait_for_selector(".suggestion a")
    assert "nghỉ phép" in page.locator(".suggestion a").inner_text()
    titles = page.locator("article.result h3").all_inner_texts()
    assert any("Chính sách nghỉ phép năm" in t for t in titles)  # found without diacritics
    assert not any("Báo cáo" in t for t in titles)  # anonymous: the report is internal
    page.goto(f"{live_server.url}/search/?q=VPN")
    assert "Hướng dẫn VPN" in page.locator("article.result h3").first.inner_text()


def _login(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_ask_in_the_panel_see_the_answer_stream_and_open_a_citation(live_server, browser, portal_data, settings):
    from answers.models import AnswerLog
    from tests.answer_helpers import AnswerChatStub, streams, use_endpoint, user_message

    def reply(body):
        # cite the leave policy's "Số ngày nghỉ" passage, by the number the prompt gave it
        number = next(line.split('"')[1] for line in user_message(body).splitlines()
                      if line.startswith("<source") and "Số ngày nghỉ" in line)
        return streams("Nhân viên chính thức ", "được nghỉ phép năm ", "12 ngày có hưởng lương ", f"[{number}].",
                       gap=0.5)(body)

    leave = portal_data[0]
    with AnswerChatStub(reply) as stub:
        use_endpoint(settings, stub.url, timeout=15)
        page = browser.new_page(locale="vi-VN")
        _login(page, live_server, "lan")
        page.goto(f"{live_server.url}/search/")
        assert page.locator("#answer-panel h2").inner_text() == "Hỏi đáp"
        page.fill("#answer-form input[name=question]", "Nhân viên được nghỉ phép năm bao nhiêu ngày?")
        page.click("#answer-form button[type=submit]")
        # streamed: the first words are on the page while the model is still writing
        page.wait_for_selector(".answer-streaming .answer-text:has-text('Nhân viên chính thức')", timeout=20000)
        assert page.locator("#answer a.citation").count() == 0
        page.wait_for_selector("#answer a.citation", timeout=20000)  # the final answer, with its sources
        assert len(stub.requests) == 1 and stub.requests[0]["body"]["stream"] is True
    text = page.locator("#answer .answer-text").inner_text()
    assert "Nhân viên chính thức được nghỉ phép năm 12 ngày có hưởng lương [1]." in text
    assert "Chính sách nghỉ phép năm" in page.locator("#answer a.citation").first.inner_text()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no page load
    log = AnswerLog.objects.get(user__username="lan")
    assert (log.kind, log.via) == ("generated", "portal")

    page.click("#answer .vote-helpful")  # the vote, through htmx, in place
    page.wait_for_selector("#answer .voted")
    page.click("#answer a.citation")
    page.wait_for_url(f"**/documents/{leave.pk}/#chunk-*")
    ordinal = leave.chunks.get(pk=log.citations[0]["chunk_id"]).ordinal
    assert page.url.endswith(f"#chunk-{ordinal}")
    assert "Số ngày nghỉ" in page.locator(f"#chunk-{ordinal}").inner_text()  # the cited passage is on the page
    log.refresh_from_db()
    assert log.helpful is True and [o["number"] for o in log.opened] == [1]


def test_document_page_shows_the_content_when_processing_ends(live_server, browser, transactional_db):
    owner = f.user("ana", departments=["HR"])
    doc = f.document(2, status="pending", owner=owner,
                     text="# Quy định làm việc từ xa\n\n## Phạm vi\n\nÁp dụng cho toàn công ty từ năm 2031.\n")
    page = browser.new_page(locale="vi-VN")
    _login(page, live_server, "ana")
    page.goto(f"{live_server.url}/documents/{doc.pk}/")
    assert page.locator("#doc-content .chunk").count() == 0
    assert "Đang chờ xử lý" in page.locator("#doc-status").inner_text()  # the step, translated
    process_document(doc.pk)  # what the worker does meanwhile
    page.wait_for_selector("#doc-content .chunk", timeout=20000)  # no reload
    assert "Áp dụng cho toàn công ty" in page.locator("#doc-content").inner_text()
    assert "Sẵn sàng" in page.locator("#doc-status").inner_text()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_api_docs_load_nothing_from_other_hosts(live_server, browser, transactional_db):
    """Every request the browser makes for the Swagger UI and Redoc pages goes
    to the portal (an offline network breaks anything else)."""
    page = browser.new_page()
    foreign = []

    def route(request_route):
        if urlsplit(request_route.request.url).hostname in ("localhost", "127.0.0.1"):
            request_route.continue_()
        else:
            foreign.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("h1:has-text('Document knowledge portal API')", timeout=30000)
    page.wait_for_selector("li[data-item-id]", timeout=30000)  # the operations, from the schema
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30000)
    page.wait_for_timeout(500)
    assert foreign == []
