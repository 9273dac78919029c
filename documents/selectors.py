"""What may a user see? — the ONE place that answers it.

Every path that returns document content (search in every mode, snippets,
suggestions, facet counts, document pages, downloads, the API, the admin list
for non-superusers, exports) filters through `visible_documents(user)` or the
same condition, `access_condition(user)`, used inside a larger query. Raw SQL
embeds the compiled queryset of `visible_documents` (the search app's
`allowed_documents_sql`).

The rules (DESIGN.md "Four-tier access", decisions in docs/decisions.md):

| level | visible to |
|---|---|
| 0 public       | everyone, anonymous included |
| 1 internal     | active authenticated users with clearance ≥ 1 |
| 2 restricted   | members of one of the document's departments with clearance ≥ 2; clearance 3 sees all |
| 3 confidential | only explicit grants |

Plus, at every level: superusers; explicit django-guardian `view_document`
grants to the user or one of the user's groups; the document's owner (the
uploader sees what they uploaded). An inactive user is treated as anonymous.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from documents.models import (
    AccessLevel,
    Document,
    DocumentGroupObjectPermission,
    DocumentUserObjectPermission,
)

VIEW_PERMISSION = "view_document"


def _is_signed_in(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _open_levels(user) -> list[int]:
    """Levels a signed-in user sees whole, by clearance; restricted documents of
    the user's own departments (clearance 2) and grants come on top."""
    levels = [int(AccessLevel.PUBLIC)]
    if user.clearance >= 1:
        levels.append(int(AccessLevel.INTERNAL))
    if user.clearance >= 3:
        levels.append(int(AccessLevel.RESTRICTED))
    return levels


def _sees_own_departments_restricted(user) -> bool:
    return user.clearance == 2


def access_condition(user, prefix: str = "") -> Q:
    """The visibility rule as a Q over Document (or over a model pointing to it
    through `prefix`, e.g. ``"document__"`` for Chunk)."""
    def field(name: str) -> str:
        return f"{prefix}{name}"

    public = Q(**{field("access_level"): AccessLevel.PUBLIC})
    if not _is_signed_in(user):
        return public
    if user.is_superuser:
        return Q()

    doc_ref = OuterRef(field("pk"))
    user_grant = Exists(DocumentUserObjectPermission.objects.filter(
        content_object_id=doc_ref, user_id=user.pk, permission__codename=VIEW_PERMISSION))
    group_grant = Exists(DocumentGroupObjectPermission.objects.filter(
        content_object_id=doc_ref, group__user=user.pk, permission__codename=VIEW_PERMISSION))

    rule = (Q(**{field("access_level") + "__in": _open_levels(user)}) | Q(**{field("owner_id"): user.pk})
            | user_grant | group_grant)
    if _sees_own_departments_restricted(user):
        member_of = Document.departments.through.objects.filter(
            document_id=doc_ref, department__members=user.pk)
        rule |= Q(**{field("access_level"): AccessLevel.RESTRICTED}) & Exists(member_of)
    return rule


def visible_documents(user, base: QuerySet | None = None) -> QuerySet:
    """Documents `user` may see (any status; callers add `status=ready` for search)."""
    qs = Document.objects.all() if base is None else base
    return qs.filter(access_condition(user))


def can_view(user, document: Document) -> bool:
    return visible_documents(user).filter(pk=document.pk).exists()


@dataclass(frozen=True)
class AccessKey:
    """The visibility rule over a document's access key (level, owner, department
    ids, id), for engines that copy the key beside each chunk: a document is
    visible when its level is one of `levels`, or its owner is `owner_id`, or it
    is restricted (level 2) and shares a department with `restricted_departments`,
    or its id is in `granted`."""
    levels: tuple[int, ...]
    owner_id: int | None = None
    restricted_departments: tuple[int, ...] | None = None  # None: not by department
    granted: tuple[int, ...] = ()


def access_key(user) -> AccessKey | None:
    """`access_condition` as an AccessKey; None: no restriction (superuser)."""
    if not _is_signed_in(user):
        return AccessKey(levels=(int(AccessLevel.PUBLIC),))
    if user.is_superuser:
        return None
    departments = (tuple(user.departments.values_list("pk", flat=True))
                   if _sees_own_departments_restricted(user) else None)
    return AccessKey(levels=tuple(_open_levels(user)), owner_id=user.pk, restricted_departments=departments,
                     granted=tuple(granted_document_ids(user)))


def access_key_condition(user, alias: str) -> tuple[str, list] | None:
    """The same rule as `access_condition`, as SQL over the access key copied
    onto each vector row (`doc_access_level`, `doc_owner_id`, `doc_department_ids`
    of search_chunkembedding, kept in sync by the triggers of migration
    search/0004), so an HNSW scan can test it on the row it reads. None: no
    restriction (superuser). tests/test_access_key.py checks that it selects
    exactly the documents `visible_documents` selects, for every principal.
    Callers still filter the rows they return through `visible_documents`
    (search.services.filters.allowed_documents_sql). The keyword engine applies
    the same `access_key` inside its own query (search.services.keyword_engine)."""
    a = alias
    key = access_key(user)
    if key is None:
        return None
    if key.owner_id is None:
        return f"{a}.doc_access_level IN ({', '.join(map(str, key.levels))})", []
    levels = ", ".join(map(str, key.levels))
    parts = [f"{a}.doc_access_level IN ({levels})", f"{a}.doc_owner_id = %s"]
    params: list = [key.owner_id]
    if key.restricted_departments is not None:
        parts.append(f"({a}.doc_access_level = {int(AccessLevel.RESTRICTED)} AND {a}.doc_department_ids && %s::bigint[])")
        params.append(list(key.restricted_departments))
    if key.granted:
        parts.append(f"{a}.document_id = ANY(%s::bigint[])")
        params.append(list(key.granted))
    return "(" + " OR ".join(parts) + ")", params


def granted_document_ids(user) -> list[int]:
    """Documents with an explicit view grant to the user or one of their groups."""
    direct = DocumentUserObjectPermission.objects.filter(
        user_id=user.pk, permission__codename=VIEW_PERMISSION).values_list("content_object_id", flat=True)
    via_group = DocumentGroupObjectPermission.objects.filter(
        group__user=user.pk, permission__codename=VIEW_PERMISSION).values_list("content_object_id", flat=True)
    return sorted(set(direct) | set(via_group))


def can_manage(user, document: Document) -> bool:
    """Change/delete: superusers, users with the global permission who can see
    the document, and the owner."""
    if not _is_signed_in(user):
        return False
    if user.is_superuser:
        return True
    if not can_view(user, document):
        return False
    return document.owner_id == user.pk or user.has_perm("documents.change_document")
