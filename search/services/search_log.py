"""The search log and result feedback (helpful / not helpful / click)."""
from __future__ import annotations

from documents.selectors import visible_documents
from search.models import Feedback, SearchLog
from search.services.filters import SearchFilters
from search.services.retrieval import SearchResult


def log_search(result: SearchResult, user, filters: SearchFilters | None, via: str) -> SearchLog:
    return SearchLog.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None, query=result.query, mode=result.mode,
        space=result.space, filters=(filters or SearchFilters()).as_dict(), page=result.page,
        result_count=result.total_documents, latency_ms=round(result.latency_ms, 2), via=via,
        results=[{"rank": h.rank, "chunk_id": h.chunk.pk, "document_id": h.document.pk, "score": h.score}
                 for h in result.hits])


class FeedbackRefused(Exception):
    """Unknown search, someone else's search, or a result that was not shown."""


def record_feedback(user, search_id: int, document_id: int, kind: str, session_searches=()) -> Feedback:
    """Store a vote or click on a result that this user was actually shown."""
    log = SearchLog.objects.filter(pk=search_id).first()
    if log is None:
        raise FeedbackRefused("unknown search")
    signed_in = getattr(user, "is_authenticated", False)
    if (log.user_id and (not signed_in or log.user_id != user.pk)) or (not log.user_id and search_id not in session_searches):
        raise FeedbackRefused("not your search")
    shown = next((r for r in log.results if r["document_id"] == document_id), None)
    if shown is None or not visible_documents(user).filter(pk=document_id).exists():
        raise FeedbackRefused("that result was not shown")
    if kind in (Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL):
        # one vote per result and search: a new vote replaces the old one
        Feedback.objects.filter(search=log, document_id=document_id,
                                kind__in=[Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL]).delete()
    return Feedback.objects.create(search=log, user=user if signed_in else None, document_id=document_id,
                                   chunk_id=shown["chunk_id"], rank=shown["rank"], kind=kind)
