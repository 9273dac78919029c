"""The asker's feedback on an answer: the citations they opened and their
helpful / not helpful vote, kept on the AnswerLog row (fine-tuning data:
finetune.services.datasets.answer_feedback).

Only the asker may give it, as with votes on a search's results
(search.services.search_log): a signed-in user on their own answers; an
anonymous portal visitor on the answers logged with their cookie id; an
anonymous API client (no cookie id) on none. Anything else — an unknown
answer, someone else's, a citation number the answer does not have, a
document the asker may no longer see — is refused the same way, so a refusal
says nothing about whose answer it is or what it cited.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from answers.models import AnswerLog
from documents.models import Chunk
from documents.selectors import visible_documents
from search.services.search_log import client_key


class AnswerFeedbackRefused(Exception):
    """Unknown answer, someone else's answer, or a citation it does not have."""


def _asked_by(log: AnswerLog, user, client_id: str | None) -> bool:
    if log.user_id:
        return bool(getattr(user, "is_authenticated", False) and log.user_id == user.pk)
    return bool(client_id and log.client_key and log.client_key == client_key(client_id))


def own_answer(user, answer_id: int, client_id: str | None = None, *, for_update: bool = False) -> AnswerLog:
    rows = AnswerLog.objects.select_for_update() if for_update else AnswerLog.objects
    log = rows.filter(pk=answer_id).first()
    if log is None or not _asked_by(log, user, client_id):
        raise AnswerFeedbackRefused("not an answer of this asker")
    return log


@dataclass
class Opening:
    log: AnswerLog
    url: str  # the cited passage in its document's page


def open_citation(user, answer_id: int, number: int, client_id: str | None = None) -> Opening:
    """Record that the asker opened citation `number` of their answer (once per
    citation; the first opening counts) and where it leads: the chunk in its
    document's page, or the document's page when the chunk was replaced since."""
    with transaction.atomic():
        log = own_answer(user, answer_id, client_id, for_update=True)
        cited = next((c for c in log.citations if c.get("number") == number), None)
        if cited is None or not visible_documents(user).filter(pk=cited["document_id"]).exists():
            raise AnswerFeedbackRefused("no such citation")
        if not any(o.get("number") == number for o in log.opened):
            log.opened = [*log.opened, {"number": number, "chunk_id": cited["chunk_id"],
                                        "document_id": cited["document_id"], "at": timezone.now().isoformat()}]
            log.save(update_fields=["opened"])
    ordinal = (Chunk.objects.filter(pk=cited["chunk_id"], document_id=cited["document_id"])
               .values_list("ordinal", flat=True).first())
    url = reverse("document-detail", args=[cited["document_id"]])
    return Opening(log, url + (f"#chunk-{ordinal}" if ordinal is not None else ""))


def vote(user, answer_id: int, helpful: bool, client_id: str | None = None) -> AnswerLog:
    """The asker's vote on their answer; a new vote replaces the old one."""
    with transaction.atomic():
        log = own_answer(user, answer_id, client_id, for_update=True)
        log.helpful = bool(helpful)
        log.voted_at = timezone.now()
        log.save(update_fields=["helpful", "voted_at"])
    return log
