"""Celery tasks for search: thin wrappers over search.services."""
from celery import shared_task

from search.models import EmbeddingSpace
from search.services import embedding, keyword_index


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(ConnectionError,), retry_backoff=True)
def embed_document_task(document_id: int, space_id: int) -> int:
    space = EmbeddingSpace.objects.filter(pk=space_id).first()
    if space is None or space.status == "retired":
        return 0
    return embedding.embed_document(space, document_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def backfill_space_task(space_id: int) -> int:
    return embedding.backfill(EmbeddingSpace.objects.get(pk=space_id))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def index_keywords_task(document_id: int) -> int:
    return keyword_index.index_document(document_id)
from search.evaluation.tasks import evaluation_run_task  # noqa: E402,F401  (Celery autodiscovery)
