"""The passages an answer may use: the portal's own search, run as the asker.

`run_search` (search.services.results) in hybrid mode, for the asker's user and
space (the active one, or the A/B candidate for people in its share), ranks
only chunks of documents the asker may see — the access rule is inside the
ranking SQL — and keeps only chunks that pass the space's relevance floors
(search.services.relevance): what is left is what the search page would show.
The best few become the numbered sources; their text is loaded once more
through the access function (`allowed_documents`: visible_documents + ready),
so a document whose access changed since it was ranked drops out instead of
reaching a prompt.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.urls import reverse

from documents.models import Chunk, Document
from search.models import EmbeddingSpace, SearchMode
from search.services.filters import allowed_documents
from search.services.results import run_search

Ranked = list[tuple[int, float]]


@dataclass
class Source:
    number: int  # as the prompt numbers it; an answer's citations are renumbered from these
    chunk: Chunk
    score: float

    @property
    def document(self) -> Document:
        return self.chunk.document

    @property
    def url(self) -> str:
        """The passage in its document's page (templates/documents/_content.html anchors each chunk)."""
        return reverse("document-detail", args=[self.chunk.document_id]) + f"#chunk-{self.chunk.ordinal}"


@dataclass
class Evidence:
    question: str  # as searched (cleaned: NFC, no control characters, single spaces)
    space: EmbeddingSpace | None
    search_notice: str  # "no-space" when no embedding space is active and keywords alone ranked
    ranked: Ranked = field(default_factory=list)  # every chunk that passed the floors, best first
    sources: list[Source] = field(default_factory=list)


def gather_evidence(user, question: str, *, client_id: str | None = None, limit: int | None = None) -> Evidence:
    limit = limit or settings.ANSWER_SOURCES
    result = run_search(user, question, SearchMode.HYBRID, client_id=client_id, materialise=False)
    head = [chunk_id for chunk_id, _ in result.ranked[:limit]]
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=head, document__in=allowed_documents(user))
              .select_related("document")}
    sources: list[Source] = []
    for chunk_id, score in result.ranked[:limit]:
        if chunk_id in chunks:
            sources.append(Source(number=len(sources) + 1, chunk=chunks[chunk_id], score=round(float(score), 6)))
    return Evidence(question=result.query, space=result.space, search_notice=result.notice,
                    ranked=result.ranked, sources=sources)
