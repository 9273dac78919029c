"""Ingestion → search: when a document's chunks are committed, index its
keywords at once (cheap, and keyword search must not wait behind slow
embedding work in the queue) and queue its embedding in every space being
served (the active one, and a candidate being built or tested: dual-write
during a migration)."""
import logging

from django.conf import settings
from django.dispatch import receiver

from documents.signals import document_chunked

log = logging.getLogger(__name__)


@receiver(document_chunked)
def index_and_embed(sender, document_id, **kwargs):
    from portal.tasking import send
    from search.services import keyword_index
    from search.services.spaces import serving_spaces
    from search.services.vector_recovery import queue_embedding
    from search.tasks import index_keywords_task

    try:
        keyword_index.index_document(document_id)
    except Exception:  # never lose the hand-off: the task retries it on its own
        log.exception("keyword indexing of document %s failed here; queued instead", document_id)
        send(index_keywords_task, document_id)
    # A broker that is away here loses nothing: the embedding recovery sweep finds the
    # document's missing vectors (search.services.vector_recovery).
    for space_id in serving_spaces().values_list("pk", flat=True):
        queue_embedding(document_id, space_id)
    if settings.KEYWORD_ENGINE == "tantivy":  # findable at once, not at the next periodic run
        from search.tasks import sync_keyword_index_task

        send(sync_keyword_index_task)
