"""The keyword index's change log and its readers' places in it (issue 12).

PostgreSQL is the source of truth; a tantivy index is a copy kept on a
machine's disk. Every change that affects what the copy holds for a document
(its chunks written or deleted, the document deleted, its access key or facets
changed) appends a `KeywordChange` row IN THE SAME TRANSACTION, written by the
triggers of migration search/0015 — so ORM saves, queryset.update(), m2m
changes, admin actions and raw SQL are all covered. Each copy of the index
keeps its own place (`KeywordIndexCopy`): the writer of that copy applies the
log after it and moves on (search.services.keyword_engine.writer).

Order: rows are read in (xid, id) order and only once every transaction with
a smaller xid has ended (xid < the oldest running transaction), so a change
committed late under an older transaction id is never skipped.
"""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class KeywordChange(models.Model):
    id = models.BigAutoField(primary_key=True)
    xid = models.BigIntegerField(_("transaction"), editable=False)  # default: pg_current_xact_id() (0015)
    document_id = models.BigIntegerField(_("document"))  # no foreign key: a deleted document is a change
    reason = models.CharField(_("reason"), max_length=16)
    created_at = models.DateTimeField(_("recorded"), editable=False)  # default: now() (0015)

    class Meta:
        indexes = [models.Index(fields=["xid", "id"], name="search_kwchange_order")]
        verbose_name = _("keyword index change")
        verbose_name_plural = _("keyword index changes")


class KeywordIndexCopy(models.Model):
    """One copy of the tantivy index (one machine's, one analyzer version):
    how far it has applied the change log. The copy itself keeps the same
    place in a file beside its segments (authoritative for it); this row is
    for the status report, the admin and pruning the log."""

    copy_id = models.CharField(_("copy"), max_length=100, unique=True)
    host = models.CharField(_("machine"), max_length=200)
    analyzer = models.CharField(_("analyzer version"), max_length=32)
    path = models.CharField(_("folder"), max_length=500)
    cursor_xid = models.BigIntegerField(default=0)
    cursor_id = models.BigIntegerField(default=0)
    chunks = models.PositiveBigIntegerField(_("chunks"), default=0)
    built_at = models.DateTimeField(_("built"), null=True, blank=True)
    applied_at = models.DateTimeField(_("last applied"), null=True, blank=True)

    class Meta:
        ordering = ["host", "copy_id"]
        verbose_name = _("keyword index copy")
        verbose_name_plural = _("keyword index copies")

    def __str__(self) -> str:
        return f"{self.host} ({self.copy_id})"
