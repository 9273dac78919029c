"""The "Hỏi đáp" panel (issue 13, point 1): the answer streamed from a chat
endpoint that streams (a stub on loopback), within the whole-call deadline;
every failure — before the first token or after some — ends in the extracted
answer with a notice; the page without JavaScript; bad input."""
import json
import time

import pytest
from django.test import Client
from django.utils import translation

from answers.models import AnswerLog
from answers.services.answering import Final, Token, answer_question, stream_answer
from tests import factories as f
from tests.answer_helpers import AnswerChatStub, Reply, Streamed, closed_port_url, completion, delta, says, streams, \
    use_endpoint, user_message
from tests.test_answers import QUESTION, corpus, employee  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

TWELVE = "Nhân viên chính thức được nghỉ phép năm 12 ngày làm việc mỗi năm."


def leave_source(body) -> str:
    """The number the prompt gives the leave policy's "Nghỉ phép năm" passage."""
    return next(line.split('"')[1] for line in user_message(body).splitlines()
                if line.startswith("<source") and "Nghỉ phép năm" in line)


def citing_leave(*pieces, gap=0.0):
    """A model streaming `pieces`, "{n}" standing for the leave passage's number."""
    def reply(body):
        n = leave_source(body)
        return streams(*(p.replace("{n}", n) for p in pieces), gap=gap)(body)
    return reply


def events_of(user, question=QUESTION, **kw):
    return list(stream_answer(user, question, **kw))


def tokens(events) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def final(events):
    assert isinstance(events[-1], Final) and sum(isinstance(e, Final) for e in events) == 1
    return events[-1].answer


# --- the service ------------------------------------------------------------------

def test_the_answer_streams_in_pieces_with_its_final_citation_numbers(corpus, employee, settings):
    # the model cites the leave passage (whatever its number) and a number that is no source,
    # with a reference split across two pieces
    with AnswerChatStub(citing_leave("Nhân viên ", "được nghỉ 12 ngày ", "mỗi năm [", "{n}]", "[42].")) as stub:
        use_endpoint(settings, stub.url)
        events = events_of(employee, via="portal")
    assert stub.requests[0]["body"]["stream"] is True
    assert [e.text for e in events if isinstance(e, Token)][:2] == ["Nhân viên ", "được nghỉ 12 ngày "]
    answer = final(events)
    assert answer.kind == "generated" and answer.text == "Nhân viên được nghỉ 12 ngày mỗi năm [1]."
    assert tokens(events) == answer.text  # what was streamed is what stays, renumbered as it went
    assert answer.citations[0].document == corpus["leave"]
    assert AnswerLog.objects.get(pk=answer.answer_id).via == "portal"


def test_the_streamed_answer_is_logged_like_the_whole_one(corpus, employee, settings):
    def row(answer_id):
        values = AnswerLog.objects.filter(pk=answer_id).values().get()
        return {k: v for k, v in values.items() if k not in ("id", "created_at", "latency_ms")}

    with AnswerChatStub(lambda body: Reply(200, completion(f"Được nghỉ 12 ngày [{leave_source(body)}]."))) as stub:
        use_endpoint(settings, stub.url)
        whole = answer_question(employee, QUESTION, via="portal")
    with AnswerChatStub(citing_leave("Được nghỉ ", "12 ngày [{n}].")) as stub:
        use_endpoint(settings, stub.url)
        streamed = final(events_of(employee, via="portal"))
    assert row(streamed.answer_id) == row(whole.answer_id)
    assert row(whole.answer_id)["citations"] and row(whole.answer_id)["kind"] == "generated"


def test_a_trickling_model_is_cut_off_at_the_deadline_and_the_extract_replaces_its_text(
        corpus, employee, settings):
    pieces = [f"mẩu {i} " for i in range(40)]
    with AnswerChatStub(streams(*pieces, gap=0.1)) as stub:
        use_endpoint(settings, stub.url, timeout=1.0)
        started = time.monotonic()
        events = events_of(employee)
        took = time.monotonic() - started
    assert tokens(events).startswith("mẩu 0 mẩu 1")  # some of it was shown…
    answer = final(events)  # …then the deadline: the extracted answer, with why
    assert (answer.kind, answer.notice) == ("extracted", "chat-timeout")
    assert answer.text.startswith(TWELVE) and "mẩu" not in answer.text
    assert took < 1.0 + 3.0, took  # the deadline bounds the whole stream (plus the search)


STREAM_FAILURES = {
    # name: (reply, expected notice, tokens shown before the failure)
    "rate-limited": (Reply(429, {"error": "slow down"}), "chat-rate-limited", False),
    "server-error": (Streamed(["x"], status=503), "chat-unreachable", False),
    "garbage-first": (Streamed([b"data: <html>gateway</html>\n\n"]), "chat-bad-answer", False),
    "only-done": (Streamed([]), "chat-bad-answer", False),
    "cut-off": (Streamed(["Nhân viên được ", "nghỉ"], done=False), "chat-bad-answer", True),
    "garbage-midway": (Streamed(["Nhân viên được ", b"data: {\"choices\": 7}\n\n"]), "chat-bad-answer", True),
    "error-midway": (Streamed(["Nhân viên được ", b'data: {"error": {"message": "overloaded"}}\n\n']),
                     "chat-bad-answer", True),
}


@pytest.mark.parametrize("name", sorted(STREAM_FAILURES) + ["unreachable"])
def test_every_failure_ends_in_the_extracted_answer_with_a_notice(corpus, employee, settings, name):
    reply, notice, shown = STREAM_FAILURES.get(name, (None, "chat-unreachable", False))
    with AnswerChatStub(lambda body: reply) as stub:
        use_endpoint(settings, closed_port_url() if reply is None else stub.url, timeout=2.0)
        events = events_of(employee, via="portal")
    assert bool(tokens(events)) == shown, tokens(events)
    answer = final(events)
    assert (answer.kind, answer.notice) == ("extracted", notice)
    assert answer.text.startswith(TWELVE) and answer.citations
    assert AnswerLog.objects.get(pk=answer.answer_id).notice == notice


def test_a_model_saying_not_found_in_pieces_shows_no_marker(corpus, employee, settings):
    with AnswerChatStub(streams("NOT", "_FO", "UND")) as stub, translation.override("vi"):
        use_endpoint(settings, stub.url)
        events = events_of(employee)
    assert tokens(events) == ""
    answer = final(events)
    assert answer.kind == "not_found" and answer.text == "Không tìm thấy thông tin trong tài liệu bạn được phép xem."


def test_a_server_that_ignores_stream_answers_whole(corpus, employee, settings):
    with AnswerChatStub(lambda body: Reply(200, completion(f"Nghỉ 12 ngày [{leave_source(body)}]."))) as stub:
        use_endpoint(settings, stub.url)
        events = events_of(employee)
    assert final(events).kind == "generated" and tokens(events) == "Nghỉ 12 ngày [1]."


def test_offline_the_extracted_answer_is_one_event(corpus, employee):
    events = events_of(employee)
    assert len(events) == 1 and final(events).kind == "extracted" and final(events).text.startswith(TWELVE)


# --- the panel ----------------------------------------------------------------------

def signed_in(user, **headers) -> Client:
    client = Client(**headers)
    client.force_login(user)
    return client


def sse(response) -> list[tuple[str, dict]]:
    assert response["Content-Type"].startswith("text/event-stream")
    out = []
    for block in b"".join(response.streaming_content).decode().split("\n\n"):
        if block.strip():
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def ask_streamed(client, question=QUESTION):
    return client.post("/answers/", {"question": question}, HTTP_ACCEPT="text/event-stream")


def test_the_panel_streams_tokens_then_the_answer_with_citation_links(corpus, employee, settings):
    with AnswerChatStub(citing_leave("Nhân viên được ", "nghỉ 12 ngày [{n}].")) as stub:
        use_endpoint(settings, stub.url)
        response = ask_streamed(signed_in(employee))
        assert response.status_code == 200
        events = sse(response)  # the stream is read as it is consumed: with the model still there
    assert [name for name, _ in events] == ["token", "token", "final"]
    assert "".join(d["text"] for n, d in events if n == "token") == "Nhân viên được nghỉ 12 ngày [1]."
    final_event = events[-1][1]
    log = AnswerLog.objects.get(pk=final_event["answer_id"])
    assert (log.user, log.via, log.kind) == (employee, "portal", "generated")
    html = final_event["html"]
    assert f'href="/answers/{log.pk}/cite/1/"' in html and corpus["leave"].title in html
    assert f'/answers/{log.pk}/vote/' in html and "Nhân viên được nghỉ 12 ngày" in html


@pytest.mark.django_db(transaction=True)  # closing the response closes the database connection, as a server's would
def test_a_browser_that_goes_away_stops_the_answer(corpus, employee, settings):
    """Closing the response mid-stream (the server does when the browser is gone)
    stops reading the model at once; the answer, never shown whole, is not logged."""
    with AnswerChatStub(streams(*[f"mẩu {i} " for i in range(50)], gap=0.1)) as stub:
        use_endpoint(settings, stub.url, timeout=10)
        response = ask_streamed(signed_in(employee))
        first = next(iter(response.streaming_content))
        started = time.monotonic()
        response.close()  # what the server does when the browser is gone (it also ends the request's connection)
        took = time.monotonic() - started
    assert first.startswith(b"event: token") and took < 1.0, took
    assert not AnswerLog.objects.exists()


def test_the_panel_without_javascript_renders_the_whole_answer(corpus, employee):
    client = signed_in(employee)
    page = client.get("/search/", {"q": "nghỉ phép"}).content.decode()
    assert 'id="answer-form"' in page and 'action="/answers/"' in page and "Hỏi đáp" in page
    assert 'src="/static/portal/answers.js"' in page
    response = client.post("/answers/", {"question": QUESTION})
    assert response.status_code == 200
    html = response.content.decode()
    log = AnswerLog.objects.get(user=employee)
    assert TWELVE in html and f'href="/answers/{log.pk}/cite/1/"' in html
    assert "Trích" in html  # labelled as extracted
    assert client.get("/answers/", {"q": QUESTION}).status_code == 200


@pytest.mark.parametrize("question, message", [
    ("", "Ask a question: the question is empty."),
    ("\u200b\x01", "Ask a question: the question is empty."),
    ("x" * 501, "A question has at most 500 characters."),
])
def test_bad_questions_are_a_400_with_the_message_in_place(question, message):
    english = Client(HTTP_ACCEPT_LANGUAGE="en")
    for headers in ({}, {"HTTP_ACCEPT": "text/event-stream"}):
        response = english.post("/answers/", {"question": question}, **headers)
        assert response.status_code == 400 and message in response.content.decode(), headers
    assert Client().put("/answers/").status_code == 405
    assert not AnswerLog.objects.exists()


def test_the_panel_is_rate_limited(corpus, settings, monkeypatch):
    from rest_framework.settings import api_settings

    monkeypatch.setitem(api_settings.DEFAULT_THROTTLE_RATES, "answer_page", "2/min")
    client = Client()
    assert [ask_streamed(client, "VPN").status_code for _ in range(3)] == [200, 200, 429]


# --- citations opened and votes ---------------------------------------------------------

def asked(client, question=QUESTION) -> AnswerLog:
    response = ask_streamed(client, question)
    return AnswerLog.objects.get(pk=sse(response)[-1][1]["answer_id"])


def test_opening_a_citation_is_recorded_once_and_lands_on_the_passage(corpus, employee):
    client = signed_in(employee)
    log = asked(client)
    cited = log.citations[0]
    chunk = corpus["leave"].chunks.get(pk=cited["chunk_id"])
    for _ in range(2):
        response = client.get(f"/answers/{log.pk}/cite/1/")
        assert response.status_code == 302
        assert response["Location"] == f"/documents/{corpus['leave'].pk}/#chunk-{chunk.ordinal}"
    log.refresh_from_db()
    assert [(o["number"], o["chunk_id"]) for o in log.opened] == [(1, chunk.pk)]
    assert client.get(response["Location"]).status_code == 200


def test_only_the_asker_opens_or_votes_and_refusals_look_alike(corpus, employee):
    log = asked(signed_in(employee))
    other = signed_in(f.user("minh", departments=["HR"]))
    assert other.get("/answers/999999/cite/1/").status_code == 404
    for url in (f"/answers/{log.pk}/cite/1/", f"/answers/{log.pk}/cite/99/"):
        response = other.get(url)  # the page of a missing one: nothing about the answer or what it cites
        assert response.status_code == 404 and "Location" not in response
        page = response.content.decode()
        assert corpus["leave"].title not in page and f"/documents/{corpus['leave'].pk}/" not in page
    assert signed_in(employee).get(f"/answers/{log.pk}/cite/99/").status_code == 404  # no such citation
    assert other.post(f"/answers/{log.pk}/vote/", {"helpful": "1"}).status_code == 404
    assert Client().post(f"/answers/{log.pk}/vote/", {"helpful": "1"}).status_code == 404
    log.refresh_from_db()
    assert log.opened == [] and log.helpful is None


def test_an_anonymous_visitor_opens_and_votes_on_their_own_answers_only(corpus):
    visitor = Client()
    log = asked(visitor, "cài đặt VPN client")  # public: the visitor gets a cookie id with the answer
    assert log.user is None and log.client_key and log.citations
    assert visitor.get(f"/answers/{log.pk}/cite/1/").status_code == 302
    assert Client().get(f"/answers/{log.pk}/cite/1/").status_code == 404  # another visitor
    assert visitor.post(f"/answers/{log.pk}/vote/", {"helpful": "0"}, HTTP_HX_REQUEST="true").status_code == 200
    log.refresh_from_db()
    assert log.opened[0]["number"] == 1 and log.helpful is False


def test_the_vote_button_and_its_thanks(corpus, employee):
    client = signed_in(employee)
    log = asked(client)
    assert client.post(f"/answers/{log.pk}/vote/", {"helpful": "maybe"}).status_code == 400
    response = client.post(f"/answers/{log.pk}/vote/", {"helpful": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Đã ghi nhận: câu trả lời hữu ích" in response.content.decode()
    plain = client.post(f"/answers/{log.pk}/vote/", {"helpful": "0"})  # no JavaScript: back to the search
    assert plain.status_code == 302 and plain["Location"].startswith("/search/?q=")
    log.refresh_from_db()
    assert log.helpful is False and log.voted_at is not None


def test_the_vote_api(corpus, employee):
    from rest_framework.authtoken.models import Token as ApiToken

    token = {"HTTP_AUTHORIZATION": f"Token {ApiToken.objects.create(user=employee).key}"}
    answer_id = Client().post("/api/v1/answer", json.dumps({"question": QUESTION}), content_type="application/json",
                              **token).json()["answer_id"]

    def vote(body, **headers):
        return Client().post(f"/api/v1/answer/{answer_id}/vote", json.dumps(body), content_type="application/json",
                             **headers)

    response = vote({"helpful": True}, **token)
    assert (response.status_code, response.json()) == (200, {"answer_id": answer_id, "helpful": True})
    assert vote({"helpful": False}, **token).json()["helpful"] is False  # a new vote replaces the old
    assert AnswerLog.objects.get(pk=answer_id).helpful is False
    assert vote({"helpful": "perhaps"}, **token).status_code == 400
    assert vote({}, **token).status_code == 400
    assert vote({"helpful": True}).status_code == 404  # anonymous: no answers of its own
    other = {"HTTP_AUTHORIZATION": f"Token {ApiToken.objects.create(user=f.user('minh')).key}"}
    assert vote({"helpful": True}, **other).status_code == 404
    assert Client().post("/api/v1/answer/999999/vote", json.dumps({"helpful": True}),
                         content_type="application/json", **token).status_code == 404
    assert AnswerLog.objects.get(pk=answer_id).helpful is False
