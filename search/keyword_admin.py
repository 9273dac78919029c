"""The tantivy keyword index's copies in the admin (issue 12): each machine's
copy with its lag — change-log entries it has not applied and the age of the
oldest — read-only; superusers only. The changelist says which engine answers
keyword search on this machine."""
from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from search.keyword_models import KeywordIndexCopy
from search.services.keyword_engine.maintenance import lag_of

LAG_WARNING_SECONDS = 30  # older than this, the oldest entry not applied is shown in orange


@admin.register(KeywordIndexCopy)
class KeywordIndexCopyAdmin(admin.ModelAdmin):
    list_display = ("copy_id", "host", "analyzer", "chunks", "lag", "applied_at", "built_at")
    readonly_fields = [f.name for f in KeywordIndexCopy._meta.fields]

    @admin.display(description=_("lag"))
    def lag(self, obj):
        lag = lag_of(obj)
        if not lag.entries:
            return _("up to date")
        text = _("%(entries)s changes not applied, the oldest %(seconds)s s old") % {
            "entries": lag.entries, "seconds": int(lag.oldest_seconds or 0)}
        if (lag.oldest_seconds or 0) > LAG_WARNING_SECONDS:
            return format_html('<span style="color:#b54708">{}</span>', text)
        return text

    def changelist_view(self, request, extra_context=None):
        if settings.KEYWORD_ENGINE == "tantivy":
            messages.info(request, _("Keyword search on this machine: tantivy (%(folder)s).")
                          % {"folder": settings.KEYWORD_INDEX_DIR})
        else:
            messages.info(request, _("Keyword search on this machine: the PostgreSQL index "
                                     "(PORTAL_KEYWORD_ENGINE=postgres); these copies are not searched."))
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_module_permission(self, request):
        return request.user.is_superuser

    has_view_permission = lambda self, request, obj=None: request.user.is_superuser  # noqa: E731
