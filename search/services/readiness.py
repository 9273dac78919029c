"""How far search is from complete for one visitor: documents still being
processed, and recently processed documents whose vectors are not yet in the
space this visitor searches. Counts only documents the visitor may see, and
stays cheap on large corpora: the status index for the first count, and for
the second only documents processed within VECTOR_POLL_WINDOW, each checked
with an anti-join on the (space, chunk) unique index."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from documents.models import Chunk, DocumentStatus
from documents.selectors import visible_documents
from search.models import ChunkEmbedding, EmbeddingSpace
from search.services.embedding import document_progress

# Vectors normally follow within minutes of processing. A document processed
# longer ago whose vectors never came (a failed task, no worker) is left to the
# recovery sweep; the portal stops announcing (and polling for) it.
VECTOR_POLL_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class Readiness:
    processing: int  # visible documents pending or processing
    awaiting_vectors: int  # visible, recently processed documents with passages lacking a vector

    @property
    def complete(self) -> bool:
        return not self.processing and not self.awaiting_vectors


def readiness(user, space: EmbeddingSpace | None) -> Readiness:
    visible = visible_documents(user)
    processing = visible.filter(status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING]).count()
    awaiting = 0
    if space is not None:
        recent = visible.filter(status=DocumentStatus.READY,
                                processed_at__gte=timezone.now() - VECTOR_POLL_WINDOW).values("pk")
        has_vector = ChunkEmbedding.objects.filter(space=space, chunk=OuterRef("pk"))
        awaiting = (Chunk.objects.filter(document__in=recent).filter(~Exists(has_vector))
                    .values("document_id").distinct().count())
    return Readiness(processing, awaiting)


def document_vectors(document, space: EmbeddingSpace | None) -> dict | None:
    """Progress of a ready document's vectors in `space`, for the document page;
    None when there is nothing to wait for."""
    if document.status != DocumentStatus.READY:
        return None
    progress = document_progress(space, document.pk)
    if not progress:
        return None
    recent = bool(document.processed_at and timezone.now() - document.processed_at < VECTOR_POLL_WINDOW)
    return {"done": progress[0], "total": progress[1], "poll": recent,
            "percent": round(100 * progress[0] / progress[1])}
