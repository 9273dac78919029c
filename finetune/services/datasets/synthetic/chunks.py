"""The chunks synthetic queries are written for: the portal's own (only those of
ready documents the building user may see, through the one access function) or
those of an imported document_metadata.json."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from documents.models import Chunk, Document, DocumentStatus
from documents.selectors import visible_documents
from documents.services.chunking import embedding_text
from finetune.services.texts import clean


@dataclass
class SourceChunk:
    text: str  # the chunk's own text
    passage: str  # what the model reads for it (heading line + text): the positive
    title: str
    doc_key: str
    access_level: int | None
    document_type: str = ""
    heading_path: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    ordinal: int = 0
    first_of_section: bool = True
    chunk_id: int | None = None


def visible_chunks(user, codes: list[str] | None = None):
    documents = visible_documents(user, Document.objects.filter(status=DocumentStatus.READY))
    if codes is not None:
        documents = documents.filter(code__in=codes)
    return Chunk.objects.filter(document__in=documents).select_related("document").order_by("document_id", "ordinal")


def portal_chunks(user, codes: list[str] | None = None) -> Iterator[SourceChunk]:
    previous: tuple[int, list[str]] | None = None
    for chunk in visible_chunks(user, codes).iterator(chunk_size=500):
        doc = chunk.document
        section = (doc.pk, list(chunk.heading_path))
        yield SourceChunk(
            text=chunk.text, passage=clean(embedding_text(chunk.text, chunk.heading_path)), title=doc.title,
            doc_key=f"doc:{doc.pk}", access_level=doc.access_level, document_type=doc.document_type,
            heading_path=list(chunk.heading_path), keywords=list(chunk.keywords), ordinal=chunk.ordinal,
            first_of_section=section != previous, chunk_id=chunk.pk)
        previous = section


def metadata_chunks(documents) -> Iterator[SourceChunk]:
    for doc in documents:
        for chunk in doc.chunks:
            yield SourceChunk(text=chunk.text, passage=chunk.text, title=doc.title, doc_key=doc.doc_key,
                              access_level=doc.access_level, document_type=doc.document_type,
                              keywords=chunk.keywords, ordinal=chunk.ordinal, first_of_section=chunk.ordinal == 0)
