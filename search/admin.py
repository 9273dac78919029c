from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from search.models import EmbeddingSpace, Feedback, SearchLog
from search.services import spaces


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "dimension", "max_seq_length", "traffic_share", "vectors", "status_message",
                    "calibrated", "source", "encoder", "warning")
    list_filter = ("status",)
    readonly_fields = ("dimension", "embedded_chunks", "status_message", "created_at", "activated_at", "retired_at",
                       "model_card", "calibration")
    actions = ["activate", "backfill"]

    @admin.display(description=_("source"))
    def source(self, obj):
        card = obj.model_card or {}
        parts = [card.get("source") or card.get("source_package"), card.get("package_version"), card.get("licence")]
        return " · ".join(str(p) for p in parts if p)

    @admin.display(description=_("calibration"))
    def calibrated(self, obj):
        """Where the fusion weights and floors come from: this portal's own
        evaluation set, or defaults measured on a public benchmark."""
        record = obj.calibration or {}
        if record.get("source") == "this portal":
            return _("calibrated on %(set)s") % {"set": record.get("set", "?")}
        if record.get("source"):
            return format_html('<span style="color:#b54708">{}</span>', _(
                "defaults from a public benchmark (%(benchmark)s), not calibrated on this portal")
                % {"benchmark": record.get("benchmark", "?")})
        return _("not calibrated")

    @admin.display(description=_("encoder"))
    def encoder(self, obj):
        """ONNX Runtime or PyTorch, as this process's settings and the export on disk decide."""
        from search.services.onnx_spaces import encoder_status

        backend, reason, cosine = encoder_status(obj)
        if backend != "torch":
            return _("ONNX Runtime %(variant)s (cosine to PyTorch ≥ %(cosine).4f)") % {
                "variant": backend.removeprefix("onnx-"), "cosine": cosine}
        why = {"setting": _("chosen by PORTAL_ENCODER_BACKEND"), "missing": _("no ONNX export"),
               "failed": _("the ONNX export failed its fidelity check"),
               "stale": _("the ONNX export was made from other weights"),
               "corrupt": _("the ONNX export is unreadable")}.get(reason, "")
        text = _("PyTorch (%(reason)s)") % {"reason": why}
        if reason in {"failed", "stale", "corrupt"}:
            return format_html('<span style="color:#b54708">{}</span>', text)
        return text

    @admin.display(description=_("warning"))
    def warning(self, obj):
        text = (obj.model_card or {}).get("warning")
        return format_html('<strong style="color:#b42318">{}</strong>', text) if text else ""

    @admin.display(description=_("embedded chunks"))
    def vectors(self, obj):
        # chunks, not vector rows: a chunk longer than the model reads has several windows
        return obj.embeddings.filter(window=0).count()

    @admin.action(description=_("Activate (promote atomically)"))
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Choose exactly one space."), messages.ERROR)
            return
        spaces.activate(queryset.get())

    @admin.action(description=_("Embed missing chunks (background)"))
    def backfill(self, request, queryset):
        from search.tasks import backfill_space_task

        for space in queryset:
            backfill_space_task.delay(space.pk)
        self.message_user(request, _("Queued."))


class FeedbackInline(admin.TabularInline):
    model = Feedback
    extra = 0
    can_delete = False
    readonly_fields = ("user", "document", "chunk", "rank", "kind", "created_at")


@admin.register(SearchLog)
class SearchLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "query", "mode", "space", "user", "result_count", "latency_ms", "via")
    list_filter = ("mode", "space", "via")
    search_fields = ("query",)
    readonly_fields = [f.name for f in SearchLog._meta.fields]
    inlines = [FeedbackInline]

    def has_add_permission(self, request):
        return False

    def has_module_permission(self, request):
        # queries and result lists name documents of every level: superusers only
        return request.user.is_superuser

    has_view_permission = lambda self, request, obj=None: request.user.is_superuser  # noqa: E731


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "rank", "document", "query")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Feedback._meta.fields]

    @admin.display(description=_("query"))
    def query(self, obj):
        return format_html("<code>{}</code>", obj.search.query)

    def has_add_permission(self, request):
        return False

    def has_module_permission(self, request):
        return request.user.is_superuser

    has_view_permission = lambda self, request, obj=None: request.user.is_superuser  # noqa: E731

# The migration between spaces has an admin module of its own (issue 11).
from search import migration_admin  # noqa: E402,F401
# The tantivy keyword index's copies and their lag (issue 12).
from search import keyword_admin  # noqa: E402,F401
