"""Celery tasks for search: thin wrappers over search.services."""
from celery import shared_task
from django.db import OperationalError

from search.models import EmbeddingSpace
from search.services import embedding, keyword_index


# OperationalError: a lost connection, or a deadlock with a concurrent access
# change of the same documents (their vector rows lock the document rows).
@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(ConnectionError, OperationalError),
             retry_backoff=True, max_retries=5)
def embed_document_task(document_id: int, space_id: int) -> int:
    space = EmbeddingSpace.objects.filter(pk=space_id).first()
    if space is None or space.status == "retired":
        return 0
    return embedding.embed_document(space, document_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=5)
def backfill_space_task(space_id: int) -> int:
    return embedding.backfill(EmbeddingSpace.objects.get(pk=space_id))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def index_keywords_task(document_id: int) -> int:
    return keyword_index.index_document(document_id)
