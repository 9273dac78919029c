"""Which documents a search may return: the user's visible documents (the one
access function), ready, narrowed by the facets the user chose."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import QuerySet

from documents.models import Department, Document, DocumentStatus, Tag
from documents.selectors import AccessKey, access_key, access_key_condition, visible_documents


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
    if f.departments:
        qs = qs.filter(departments__code__in=f.departments)
    return _facet_filters(qs, f)


def _facet_filters(qs: QuerySet, f: SearchFilters) -> QuerySet:
    """The facets other than department (those the vector row's key cannot test)."""
    if f.document_types:
        qs = qs.filter(document_type__in=f.document_types)
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


@dataclass(frozen=True)
class KeyFilter:
    """The scope for an engine that keeps the access key and the facets beside
    each chunk (the tantivy keyword index): the access rule (None: everyone's
    documents) and the facets as ids and values. Like the prefilter, it is
    checked again against `allowed_sql`."""
    access: AccessKey | None
    document_types: tuple[str, ...] = ()
    department_ids: tuple[int, ...] | None = None  # None: no department facet
    tag_ids: tuple[int, ...] | None = None  # the chosen tags (the index holds each chunk's tags with ancestors)
    languages: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None


@dataclass(frozen=True)
class SearchScope:
    """What one search may return, in the two forms its SQL needs.

    - `allowed_sql`/`params`: `SELECT id FROM documents_document WHERE <access
      rule> AND ready AND <facets>` — the authority; every mode filters its
      final rows with it.
    - `prefilter_sql`/`prefilter_params`: a condition over a vector row aliased
      `ce` (its access key, the department facet, the other facets as a
      document subquery), cheap to test inside an HNSW scan. For committed
      data it passes what `allowed_sql` passes (the key is kept by triggers),
      plus vectors of documents that are not ready (being re-processed), which
      the final check removes; checked again by `allowed_sql`, it can never
      widen what a user sees."""
    allowed_sql: str
    params: list
    prefilter_sql: str
    prefilter_params: list
    key_filter: KeyFilter | None = None  # None: an engine keeping keys must not answer


def search_scope(user, filters: SearchFilters | None = None) -> SearchScope:
    f = filters or SearchFilters()
    allowed_sql, params = allowed_documents_sql(user, f)
    parts, pre_params = [], []
    access = access_key_condition(user, "ce")
    if access is not None:
        parts.append(access[0])
        pre_params += access[1]
    if f.departments:
        parts.append("ce.doc_department_ids && %s::bigint[]")
        pre_params.append(list(Department.objects.filter(code__in=f.departments).values_list("pk", flat=True)))
    facets = _facet_filters(Document.objects.all(), f)
    if facets.query.where:
        sql, facet_params = facets.order_by().values("id").query.sql_with_params()
        parts.append(f"ce.document_id IN ({sql})")
        pre_params += list(facet_params)
    return SearchScope(allowed_sql, params, " AND ".join(parts) or "TRUE", pre_params, _key_filter(user, f))


def _key_filter(user, f: SearchFilters) -> KeyFilter:
    departments = tags = None
    if f.departments:
        departments = tuple(Department.objects.filter(code__in=f.departments).values_list("pk", flat=True))
    if f.tags:
        tags = tuple(Tag.objects.filter(slug__in=f.tags).values_list("pk", flat=True))
    return KeyFilter(access_key(user), tuple(f.document_types), departments, tags, tuple(f.languages),
                     f.date_from, f.date_to)


def all_documents_scope() -> SearchScope:
    """Every ready document, whoever may see it: evaluation of a whole corpus
    by an administrator's command, never a person's search."""
    sql, params = (Document.objects.filter(status=DocumentStatus.READY).order_by().values("id")
                   .query.sql_with_params())
    return SearchScope(sql, list(params), "TRUE", [], KeyFilter(access=None))


def facet_tags(user) -> list[tuple[Tag, int]]:
    """The tags a search may offer `user`: those of documents the user may see
    (a tag used only by hidden documents is not shown), with their ancestors,
    as a tree — (tag, depth), each parent followed by its children."""
    used = set(Tag.objects.filter(documents__in=allowed_documents(user)).values_list("pk", flat=True))
    tags = {t.pk: t for t in Tag.objects.all()}
    shown = set()
    for pk in used:
        while pk is not None and pk not in shown:
            shown.add(pk)
            pk = tags[pk].parent_id
    children: dict[int | None, list[Tag]] = {}
    for pk in shown:
        children.setdefault(tags[pk].parent_id, []).append(tags[pk])
    out: list[tuple[Tag, int]] = []

    def walk(parent, depth):
        for tag in sorted(children.get(parent, []), key=lambda t: t.name):
            out.append((tag, depth))
            walk(tag.pk, depth + 1)
    walk(None, 0)
    return out
