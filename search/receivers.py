"""Ingestion → search: when a document's chunks are committed, index its
keywords at once (cheap, and keyword search must not wait behind slow
embedding work in the queue) and queue its embedding in every space being
served (the active one, and a candidate being built or tested: dual-write
during a migration)."""
import logging

from django.dispatch import receiver

from documents.signals import document_chunked

log = logging.getLogger(__name__)


@receiver(document_chunked)
def index_and_embed(sender, document_id, **kwargs):
    from search.services import keyword_index
    from search.services.spaces import serving_spaces
    from search.tasks import embed_document_task, index_keywords_task

    try:
        keyword_index.index_document(document_id)
    except Exception:  # never lose the hand-off: the task retries it on its own
        log.exception("keyword indexing of document %s failed here; queued instead", document_id)
        index_keywords_task.delay(document_id)
    for space_id in serving_spaces().values_list("pk", flat=True):
        embed_document_task.delay(document_id, space_id)
