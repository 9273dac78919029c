"""Who may see which training datasets, and which of their pairs.

A dataset holds the text of every chunk its builder could see, so it is shown
to its builder and to superusers only (staff with the model permissions for the
API and admin; docs/decisions.md). Pairs taken from a portal document (doc key
`doc:<id>`) are shown only while the viewer may see that document, through the
one access function: a builder who has since lost access to a document no
longer sees its text here either.
"""
from __future__ import annotations

from django.db.models import CharField, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat

from documents.selectors import visible_documents
from finetune.models import TrainingDataset, TrainingPair


def _staff(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def datasets_for(user) -> QuerySet:
    if not _staff(user):
        return TrainingDataset.objects.none()
    if user.is_superuser:
        return TrainingDataset.objects.all()
    return TrainingDataset.objects.filter(created_by=user)


def visible_pairs(user, pairs: QuerySet | None = None) -> QuerySet:
    """`pairs` (default: every pair) of the datasets `user` may see, less pairs of
    portal documents `user` may not see."""
    pairs = TrainingPair.objects.all() if pairs is None else pairs
    pairs = pairs.filter(dataset__in=datasets_for(user))
    if getattr(user, "is_superuser", False):
        return pairs
    keys = visible_documents(user).annotate(key=Concat(Value("doc:"), Cast("pk", CharField()))).values("key")
    return pairs.filter(~Q(doc_key__startswith="doc:") | Q(doc_key__in=keys))
