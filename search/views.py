"""The portal's search page, result feedback and click tracking."""
from __future__ import annotations

from datetime import date

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from documents.models import Department, DocumentType, Tag
from portal.throttling import rate_limit
from search.models import Feedback, SearchMode
from search.services.filters import SearchFilters
from search.services.retrieval import SearchUnavailable, search
from search.services.search_log import FeedbackRefused, log_search, record_feedback

SESSION_SEARCHES = "search_ids"


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def filters_from(params) -> SearchFilters:
    return SearchFilters(
        document_types=[t for t in params.getlist("type") if t in DocumentType.values],
        departments=params.getlist("dept"), tags=params.getlist("tag"), languages=params.getlist("lang"),
        date_from=_date(params.get("from")), date_to=_date(params.get("to")))


def _remember(request, search_id: int) -> None:
    """Anonymous visitors may vote on their own searches only: keep their ids in the session."""
    ids = request.session.get(SESSION_SEARCHES, [])[-49:]
    request.session[SESSION_SEARCHES] = ids + [search_id]


@rate_limit("search_page")
def search_page(request):
    query = (request.GET.get("q") or "").strip()
    mode = request.GET.get("mode") or SearchMode.HYBRID
    if mode not in SearchMode.values:
        mode = SearchMode.HYBRID
    filters = filters_from(request.GET)
    context = {"query": query, "mode": mode, "modes": SearchMode.choices, "filters": filters,
               "document_types": DocumentType.choices, "departments": Department.objects.all(),
               "tags": Tag.objects.all(), "result": None, "error": None,
               "languages": [("vi", "Tiếng Việt"), ("en", "English"), ("mixed", "Việt–Anh")]}
    if query:
        if not request.session.session_key:
            request.session.save()
        try:
            page = int(request.GET.get("page") or 1)
        except ValueError:
            page = 1
        try:
            result = search(request.user, query, mode, filters, page=page,
                            session_key=request.session.session_key)
        except SearchUnavailable as exc:
            context["error"] = str(exc)
        else:
            log = log_search(result, request.user, filters, via="portal")
            _remember(request, log.pk)
            params = request.GET.copy()
            params.pop("page", None)
            context.update(result=result, search_id=log.pk, base_query=params.urlencode(),
                           suggestion_url=("?" + urlencode({"q": result.suggestion, "mode": mode}))
                           if result.suggestion else None)
    template = "search/_results.html" if request.htmx and query else "search/search.html"
    return render(request, template, context)


@require_POST
def feedback(request):
    try:
        search_id = int(request.POST["search_id"])
        document_id = int(request.POST["document_id"])
        kind = request.POST["kind"]
    except (KeyError, ValueError):
        return HttpResponse("Bad request", status=400)
    if kind not in (Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL):
        return HttpResponse("Bad request", status=400)
    try:
        record_feedback(request.user, search_id, document_id, kind, request.session.get(SESSION_SEARCHES, []))
    except FeedbackRefused:
        raise Http404
    return render(request, "search/_vote.html", {"search_id": search_id, "document_id": document_id,
                                                 "voted": kind})


def open_result(request, search_id: int, document_id: int):
    """Log the click, then go to the document (the page itself checks access)."""
    try:
        fb = record_feedback(request.user, search_id, document_id, Feedback.Kind.CLICK,
                             request.session.get(SESSION_SEARCHES, []))
        anchor = f"#chunk-{fb.chunk.ordinal}" if fb.chunk else ""
    except FeedbackRefused:
        anchor = ""
    return redirect(reverse("document-detail", args=[document_id]) + anchor)
