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

Then, for answers only, the space's answer floor (answers.services.support):
sources that passed the search's floors but do not support an answer (a near
miss on the question's subject) are held back, and the answer is "not found".
`ranked` stays what the search ranked.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.urls import reverse

from documents.models import Chunk, Document
from search.models import EmbeddingSpace, SearchMode
from answers.services.support import Support, measure
from search.services.filters import allowed_documents
from search.services.results import run_search

Ranked = list[tuple[int, float]]
SPACE = "space"  # gather_evidence(answer_floor=SPACE): the space's own answer floor
_floor_override: ContextVar = ContextVar("answer_floor_override", default=SPACE)


@contextmanager
def answer_floor_override(value: float | None | str):
    """Answers inside use this answer floor instead of the space's (None: the
    relevance floors alone; SPACE: the space's): evaluation compares them."""
    token = _floor_override.set(value)
    try:
        yield
    finally:
        _floor_override.reset(token)


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
    support: Support | None = None  # measured when an answer floor applies (or when asked: measure_support=True)
    held_back: list[Source] = field(default_factory=list)  # sources the answer floor did not let through


def gather_evidence(user, question: str, *, client_id: str | None = None, limit: int | None = None,
                    answer_floor: float | None | str = SPACE, measure_support: bool = False) -> Evidence:
    """The sources for an answer. `answer_floor`: SPACE (the space's own), None
    (the relevance floors alone: the behaviour without an answer floor) or a
    value (calibration and evaluation try others); `measure_support` measures
    the sources' support even when no answer floor applies."""
    limit = limit or settings.ANSWER_SOURCES
    result = run_search(user, question, SearchMode.HYBRID, client_id=client_id, materialise=False)
    head = [chunk_id for chunk_id, _ in result.ranked[:limit]]
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=head, document__in=allowed_documents(user))
              .select_related("document")}
    sources: list[Source] = []
    for chunk_id, score in result.ranked[:limit]:
        if chunk_id in chunks:
            sources.append(Source(number=len(sources) + 1, chunk=chunks[chunk_id], score=round(float(score), 6)))
    evidence = Evidence(question=result.query, space=result.space, search_notice=result.notice,
                        ranked=result.ranked, sources=sources)
    space = result.space
    if answer_floor == SPACE:
        answer_floor = _floor_override.get()
    floor = (space.answer_floor if space is not None else None) if answer_floor == SPACE else answer_floor
    if sources and (floor is not None or measure_support):
        evidence.support = measure(space, evidence.question, [s.chunk.pk for s in sources])
        bar = space.semantic_only_floor if space is not None else None
        if not evidence.support.answers(floor, bar):
            evidence.held_back, evidence.sources = sources, []
    return evidence
