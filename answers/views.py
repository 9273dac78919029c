"""The "Hỏi đáp" (Q&A) panel of the search page, the citation links of its
answers and the asker's vote.

`POST /answers/` answers a question in one of two ways:
- `Accept: text/event-stream` (static/portal/answers.js): server-sent events —
  `token` ({"text"}: more of the chat model's text, to append), then one
  `final` ({"html", "answer_id"}: the answer as it stays on the page, which
  replaces whatever tokens were shown);
- otherwise (no JavaScript): the whole page with the answer.
Bad input is a 400, a search outage a 503, too many questions a 429, all with
a message in place of the answer.
"""
from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from answers.services import feedback
from answers.services.answering import Final, Token, answer_question, stream_answer
from portal.throttling import rate_limit
from search.services.modes import SearchUnavailable
from search.services.results import MAX_QUERY_CHARS, clean_query
from search.views import client_id, keep_client_id, known_client_id

STREAM = "text/event-stream"


def question_error(raw: str) -> str | None:
    """Why `raw` is not a question (the API's messages), or None."""
    if len(raw) > MAX_QUERY_CHARS:
        return _("A question has at most {max_length} characters.").format(max_length=MAX_QUERY_CHARS)
    if not clean_query(raw):
        return _("Ask a question: the question is empty.")
    return None


def _wants_stream(request) -> bool:
    return STREAM in request.headers.get("Accept", "")


@require_http_methods(["GET", "POST"])
@rate_limit("answer_page")
def answer_page(request):
    if request.method == "GET":  # the panel alone (a link, or a reload after asking without JavaScript)
        return render(request, "answers/page.html", {"question": clean_query(request.GET.get("q") or "")})
    raw = request.POST.get("question") or ""
    problem = question_error(raw)
    if problem:
        return _problem(request, raw[:MAX_QUERY_CHARS], problem, 400)
    try:
        if _wants_stream(request):
            events = stream_answer(request.user, raw, client_id=client_id(request), via="portal")
            return keep_client_id(request, _event_stream(request, events))
        answer = answer_question(request.user, raw, client_id=client_id(request), via="portal")
    except SearchUnavailable as exc:
        return _problem(request, raw, str(exc), 503)
    return keep_client_id(request, render(request, "answers/page.html", {"question": answer.question,
                                                                          "answer": answer}))


def _problem(request, question: str, message: str, status: int) -> HttpResponse:
    if _wants_stream(request) or request.htmx:
        return render(request, "answers/_error.html", {"message": message}, status=status)
    return render(request, "answers/page.html", {"question": question, "error": message}, status=status)


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _event_stream(request, events) -> StreamingHttpResponse:
    language = translation.get_language()

    def body():
        # read after the view returned: the language is pinned for the whole stream
        with translation.override(language):
            try:
                for event in events:
                    if isinstance(event, Token):
                        yield _event("token", {"text": event.text})
                    elif isinstance(event, Final):
                        html = render_to_string("answers/_answer.html", {"answer": event.answer}, request=request)
                        yield _event("final", {"html": html, "answer_id": event.answer.answer_id})
            finally:  # the browser went away: stop asking the model now (closes its connection)
                if hasattr(events, "close"):
                    events.close()

    response = StreamingHttpResponse(body(), content_type=f"{STREAM}; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front (nginx) passes each event on at once
    return response


def open_citation(request, answer_id: int, number: int):
    """Record that the asker opened a citation of their answer, then go to the
    cited passage (the document's page checks access again). Anything but the
    asker's own answer and one of its citations is a 404, whoever asks."""
    try:
        opening = feedback.open_citation(request.user, answer_id, number, known_client_id(request))
    except feedback.AnswerFeedbackRefused:
        raise Http404 from None
    return redirect(opening.url)


@require_POST
def vote(request, answer_id: int):
    helpful = {"1": True, "true": True, "0": False, "false": False}.get(request.POST.get("helpful", "").lower())
    if helpful is None:
        return HttpResponse(_("Bad request"), status=400)
    try:
        log = feedback.vote(request.user, answer_id, helpful, known_client_id(request))
    except feedback.AnswerFeedbackRefused:
        raise Http404 from None
    if request.htmx:
        return render(request, "answers/_vote.html", {"answer_id": answer_id, "voted": log.helpful})
    messages.success(request, _("Thank you: your vote on the answer was recorded."))
    return redirect(reverse("search") + "?" + urlencode({"q": log.question}))
