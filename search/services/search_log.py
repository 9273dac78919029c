"""The search log and result feedback (helpful / not helpful / click)."""
from __future__ import annotations

import hashlib

from documents.models import Chunk
from documents.selectors import visible_documents
from search.models import Feedback, SearchArm, SearchLog
from search.services.filters import SearchFilters


def client_key(client_id: str | None) -> str:
    """What the log keeps of an anonymous visitor's cookie id: a hash, so the
    log cannot be used to impersonate them."""
    return hashlib.sha256(client_id.encode()).hexdigest() if client_id else ""


def ab_arm(space, user, client_id: str | None) -> str:
    """The arm of a migration's A/B test this search ran in ("" when none runs). Callers the
    sticky bucket cannot place (anonymous without a cookie id) always get the active space:
    they are left out, or they would skew the source arm."""
    from search.migration_models import MigrationState, SpaceMigration

    if space is None or not (getattr(user, "is_authenticated", False) or client_id):
        return ""
    test = SpaceMigration.objects.filter(state=MigrationState.AB_TESTING).values_list("source_id", "target_id").first()
    if test is None:
        return ""
    return {test[0]: SearchArm.SOURCE, test[1]: SearchArm.TARGET}.get(space.pk, "")


def log_search(result, user, filters: SearchFilters | None, via: str, client_id: str | None = None) -> SearchLog:
    signed_in = getattr(user, "is_authenticated", False)
    return SearchLog.objects.create(arm=ab_arm(result.space, user, client_id),
        user=user if signed_in else None, client_key="" if signed_in else client_key(client_id),
        query=result.query, mode=result.mode, space=result.space, filters=(filters or SearchFilters()).as_dict(),
        page=result.page, result_count=result.total_documents, latency_ms=round(result.latency_ms, 2), via=via,
        results=[{"rank": h.rank, "chunk_id": h.chunk.pk, "document_id": h.document.pk, "score": h.score}
                 for h in result.hits])


class FeedbackRefused(Exception):
    """Unknown search, someone else's search, or a result that was not shown."""


def _searched_by(log: SearchLog, user, client_id: str | None) -> bool:
    if log.user_id:
        return bool(getattr(user, "is_authenticated", False) and log.user_id == user.pk)
    return bool(client_id and log.client_key and log.client_key == client_key(client_id))


def record_feedback(user, search_id: int, document_id: int, kind: str, *, client_id: str | None = None) -> Feedback:
    """Store a vote or click on a result that this user (or, anonymous, this
    visitor's cookie id) was actually shown."""
    log = SearchLog.objects.filter(pk=search_id).first()
    if log is None:
        raise FeedbackRefused("unknown search")
    if not _searched_by(log, user, client_id):
        raise FeedbackRefused("not your search")
    shown = next((r for r in log.results if r["document_id"] == document_id), None)
    if shown is None or not visible_documents(user).filter(pk=document_id).exists():
        raise FeedbackRefused("that result was not shown")
    signed_in = getattr(user, "is_authenticated", False)
    if kind in (Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL):
        # one vote per result and search: a new vote replaces the old one
        Feedback.objects.filter(search=log, document_id=document_id,
                                kind__in=[Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL]).delete()
    # the document may have been re-ingested since the search: its old chunks are gone
    chunk_id = shown["chunk_id"] if Chunk.objects.filter(pk=shown["chunk_id"]).exists() else None
    return Feedback.objects.create(search=log, user=user if signed_in else None, document_id=document_id,
                                   chunk_id=chunk_id, rank=shown["rank"], kind=kind)
