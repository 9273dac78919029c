"""Which documents a search may return: the user's visible documents (the one
access function), ready, narrowed by the facets the user chose."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import QuerySet

from documents.models import DocumentStatus, Tag
from documents.selectors import visible_documents


@dataclass
class SearchFilters:
    document_types: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)  # codes
    tags: list[str] = field(default_factory=list)  # slugs; a tag includes its descendants
    languages: list[str] = field(default_factory=list)
    date_from: date | None = None  # effective date
    date_to: date | None = None

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items() if v}


def allowed_documents(user, filters: SearchFilters | None = None) -> QuerySet:
    qs = visible_documents(user).filter(status=DocumentStatus.READY)
    f = filters or SearchFilters()
    if f.document_types:
        qs = qs.filter(document_type__in=f.document_types)
    if f.departments:
        qs = qs.filter(departments__code__in=f.departments)
    if f.tags:
        tag_ids: set[int] = set()
        for tag in Tag.objects.filter(slug__in=f.tags):
            tag_ids |= tag.descendant_ids()
        qs = qs.filter(tags__in=tag_ids or [-1])
    if f.languages:
        qs = qs.filter(language__in=f.languages)
    if f.date_from:
        qs = qs.filter(effective_date__gte=f.date_from)
    if f.date_to:
        qs = qs.filter(effective_date__lte=f.date_to)
    return qs


def allowed_documents_sql(user, filters: SearchFilters | None = None) -> tuple[str, list]:
    """`SELECT id FROM documents_document WHERE …` for filtering inside raw SQL."""
    # No DISTINCT: it is an IN (…) list, and DISTINCT made the planner aggregate every document first.
    sql, params = allowed_documents(user, filters).order_by().values("id").query.sql_with_params()
    return sql, list(params)
