"""The retrieval modes, in one registry: what each needs and how it ranks.

Every caller (the portal page, the API, evaluation, calibration, benchmarks)
asks `ranked_chunks` for a mode by name; nobody else keeps a list of "modes
that need a space". A mode that needs an embedding space and finds none falls
back to the mode it names (with a notice the page shows), or, naming none,
cannot answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from search.models import EmbeddingSpace, SearchMode
from search.services import retrieval
from search.services.filters import SearchScope
from search.services.retrieval import Ranked


class SearchUnavailable(Exception):
    """The mode needs an embedding space and none is active yet."""


@dataclass(frozen=True)
class Retrieval:
    query: str
    scope: SearchScope
    space: EmbeddingSpace | None
    depth: int


@dataclass(frozen=True)
class RetrievalMode:
    name: str
    needs_space: bool
    rank: Callable[[Retrieval], tuple[Ranked, str]]  # (ranking, notice)
    without_space: str | None = None  # the mode that answers when no space is active


def _vector(r: Retrieval) -> tuple[Ranked, str]:
    return retrieval.vector_ranking(r.space, r.query, r.scope, r.depth), ""


def _keyword(r: Retrieval) -> tuple[Ranked, str]:
    return retrieval.keyword_ranking(r.query, r.scope, r.depth, r.space), ""


def _hybrid(r: Retrieval) -> tuple[Ranked, str]:
    return retrieval.hybrid_ranking(r.space, r.query, r.scope, r.depth), ""


def _rerank(r: Retrieval) -> tuple[Ranked, str]:
    fused = retrieval.hybrid_ranking(r.space, r.query, r.scope, r.depth)
    if not settings.RERANK_MODEL:
        return fused, "no-reranker"
    return retrieval.reranked(r.query, fused, settings.RERANK_DEPTH), ""


MODES: dict[str, RetrievalMode] = {m.name: m for m in (
    RetrievalMode(SearchMode.HYBRID, needs_space=True, rank=_hybrid, without_space=SearchMode.KEYWORD),
    RetrievalMode(SearchMode.VECTOR, needs_space=True, rank=_vector),
    RetrievalMode(SearchMode.KEYWORD, needs_space=False, rank=_keyword),
    RetrievalMode(SearchMode.RERANK, needs_space=True, rank=_rerank, without_space=SearchMode.KEYWORD),
)}

# Shown to people when a mode could not run as asked.
NOTICES = {
    "no-space": _("No semantic model is active yet: results come from keyword search only."),
    "no-reranker": _("No re-ranking model is configured: results come from hybrid search."),
}


def get_mode(name: str) -> RetrievalMode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown search mode {name!r}; one of {', '.join(MODES)}") from None


def needs_space(name: str) -> bool:
    return get_mode(name).needs_space


def ranked_chunks(query: str, mode: str, scope: SearchScope, space: EmbeddingSpace | None,
                  depth: int) -> tuple[Ranked, str]:
    """(chunk_id, score) best first within `scope`, and a notice ("" when the
    mode ran as asked)."""
    chosen, notice = get_mode(mode), ""
    if chosen.needs_space and space is None:
        if chosen.without_space is None:
            raise SearchUnavailable(_("No embedding space is active yet."))
        chosen, notice = get_mode(chosen.without_space), "no-space"
    ranked, mode_notice = chosen.rank(Retrieval(query, scope, space, depth))
    return ranked, notice or mode_notice
