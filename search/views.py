"""The portal's search page, result feedback and click tracking."""
from __future__ import annotations

import re
import secrets
from datetime import date

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from documents.models import Department, DocumentLanguage, DocumentType
from portal.throttling import rate_limit
from search.models import Feedback, SearchMode
from search.services.filters import SearchFilters, facet_tags
from search.services.modes import NOTICES, SearchUnavailable
from search.services.results import clean_query, run_search
from search.services.search_log import FeedbackRefused, record_feedback

CLIENT_COOKIE = "portal_client"
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_FILTER_VALUE = re.compile(r"[\w.-]{1,64}")


def known_client_id(request) -> str | None:
    """The anonymous visitor's cookie id when they have one (see `client_id`)."""
    if request.user.is_authenticated:
        return None
    known = request.COOKIES.get(CLIENT_COOKIE, "")
    return known if _CLIENT_ID.fullmatch(known) else None


def client_id(request) -> str | None:
    """An anonymous visitor's random id, kept in a cookie (never a session row):
    it keeps the visitor in one A/B bucket and lets them vote on their own
    searches; a new one is set with the response. None for signed-in users,
    who are known by their account."""
    if request.user.is_authenticated:
        return None
    known = known_client_id(request)
    if known:
        return known
    if not hasattr(request, "_new_client_id"):
        request._new_client_id = secrets.token_urlsafe(18)
    return request._new_client_id


def keep_client_id(request, response):
    if getattr(request, "_new_client_id", None):
        response.set_cookie(CLIENT_COOKIE, request._new_client_id, max_age=365 * 24 * 3600, httponly=True,
                            samesite="Lax", secure=request.is_secure())
    return response


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _values(params, name: str) -> list[str]:
    """A filter's values as typed in the URL; anything that cannot be a code,
    slug or language (a NUL byte, markup, a novel) is ignored."""
    return [v for v in params.getlist(name) if _FILTER_VALUE.fullmatch(v)]


def filters_from(params) -> SearchFilters:
    return SearchFilters(
        document_types=[t for t in params.getlist("type") if t in DocumentType.values],
        departments=_values(params, "dept"), tags=_values(params, "tag"), languages=_values(params, "lang"),
        date_from=_date(params.get("from")), date_to=_date(params.get("to")))


@rate_limit("search_page")
def search_page(request):
    query = clean_query(request.GET.get("q") or "")
    mode = request.GET.get("mode") or SearchMode.HYBRID
    if mode not in SearchMode.values:
        mode = SearchMode.HYBRID
    filters = filters_from(request.GET)
    context = {"query": query, "mode": mode, "modes": SearchMode.choices, "filters": filters,
               "document_types": DocumentType.choices, "departments": Department.objects.all(),
               "tags": facet_tags(request.user), "languages": DocumentLanguage.choices, "result": None,
               "error": None}
    if query:
        try:
            page = int(request.GET.get("page") or 1)
        except ValueError:
            page = 1
        try:
            result = run_search(request.user, query, mode, filters, page=page, client_id=client_id(request),
                                via="portal")
        except SearchUnavailable as exc:
            context["error"] = str(exc)
        else:
            params = request.GET.copy()
            params.pop("page", None)
            context.update(result=result, search_id=result.search_id, base_query=params.urlencode(),
                           notice=NOTICES.get(result.notice, ""),
                           suggestion_url=("?" + urlencode({"q": result.suggestion, "mode": mode}))
                           if result.suggestion else None)
    template = "search/_results.html" if request.htmx and query else "search/search.html"
    return keep_client_id(request, render(request, template, context))


@require_POST
def feedback(request):
    try:
        search_id = int(request.POST["search_id"])
        document_id = int(request.POST["document_id"])
        kind = request.POST["kind"]
    except (KeyError, ValueError):
        return HttpResponse(_("Bad request"), status=400)
    if kind not in (Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL):
        return HttpResponse(_("Bad request"), status=400)
    try:
        record_feedback(request.user, search_id, document_id, kind, client_id=client_id(request))
    except FeedbackRefused:
        raise Http404
    return render(request, "search/_vote.html", {"search_id": search_id, "document_id": document_id,
                                                 "voted": kind})


def open_result(request, search_id: int, document_id: int):
    """Log the click, then go to the document (the page itself checks access)."""
    try:
        fb = record_feedback(request.user, search_id, document_id, Feedback.Kind.CLICK,
                             client_id=client_id(request))
        anchor = f"#chunk-{fb.chunk.ordinal}" if fb.chunk else ""
    except FeedbackRefused:
        anchor = ""
    return redirect(reverse("document-detail", args=[document_id]) + anchor)
