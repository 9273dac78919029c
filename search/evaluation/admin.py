"""Admin: evaluation sets (validate, evaluate in the background, export) and the
history of evaluation runs per space, with progress and a link to the report."""
from __future__ import annotations

import json
from pathlib import Path

from django.contrib import admin, messages
from django.http import FileResponse, Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from search.evaluation import sets
from search.evaluation.models import EvaluationItem, EvaluationRun, EvaluationSet, RunStatus


class SuperuserOnly:
    """Reports and sets quote chunk text of every access level: superusers only."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    has_change_permission = has_add_permission = has_view_permission

    def has_delete_permission(self, request, obj=None):
        return self.has_module_permission(request)


def _queue(run: EvaluationRun) -> None:
    from search.evaluation.tasks import evaluation_run_task

    run.name = run.name or f"run-{run.pk}"
    run.status, run.progress, run.status_message = RunStatus.QUEUED, 0, "queued"
    run.save(update_fields=["name", "status", "progress", "status_message"])
    evaluation_run_task.delay(run.pk)


class EvaluationItemInline(admin.TabularInline):
    model = EvaluationItem
    extra = 0
    fields = ("query", "relevant_chunks", "relevant_documents", "grades", "positive")
    show_change_link = True


@admin.register(EvaluationSet)
class EvaluationSetAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = ("name", "source", "item_count", "created_at")
    list_filter = ("source",)
    search_fields = ("name", "description")
    readonly_fields = ("import_report_pretty", "created_by", "created_at")
    exclude = ("import_report",)
    inlines = [EvaluationItemInline]
    actions = ["validate_sets", "evaluate_active_space", "export_jsonl"]

    @admin.display(description=_("items"))
    def item_count(self, obj):
        return obj.items.count()

    @admin.display(description=_("import report"))
    def import_report_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.import_report, ensure_ascii=False, indent=1)[:20000])

    @admin.action(description=_("Validate (as me)"))
    def validate_sets(self, request, queryset):
        for s in queryset:
            report = sets.validate(s, request.user)
            level = messages.SUCCESS if report["ok"] else messages.WARNING
            summary = ", ".join(f"{k}: {len(v)}" for k, v in report.items() if isinstance(v, list) and v) or "no problems"
            self.message_user(request, f"{s.name}: {report['items']} items; {summary}", level)

    @admin.action(description=_("Evaluate on the active space: vector, keyword, hybrid (background)"))
    def evaluate_active_space(self, request, queryset):
        from search.evaluation.runner import create_run
        from search.services.spaces import active_space

        space = active_space()
        queued = 0
        for s in queryset:
            for mode in (("vector", "keyword", "hybrid") if space else ("keyword",)):
                _queue(create_run(s, space, mode, created_by=request.user))
                queued += 1
        self.message_user(request, _("%(n)d evaluation runs queued.") % {"n": queued})

    @admin.action(description=_("Export as eval_pairs.jsonl"))
    def export_jsonl(self, request, queryset):
        lines = [json.dumps({"set": s.name, **r}, ensure_ascii=False) if queryset.count() > 1
                 else json.dumps(r, ensure_ascii=False) for s in queryset for r in sets.export_records(s)]
        response = HttpResponse("\n".join(lines) + "\n", content_type="application/x-ndjson; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="eval_pairs.jsonl"'
        return response


@admin.register(EvaluationRun)
class EvaluationRunAdmin(SuperuserOnly, admin.ModelAdmin):
    """The history: which space, set and mode scored what, and when."""

    list_display = ("created_at", "space_name", "set_name", "mode", "mrr", "hit1", "status", "progress_bar",
                    "query_count", "report_link")
    list_filter = ("space", "mode", "status", "evaluation_set")
    search_fields = ("space_name", "set_name", "name")
    date_hierarchy = "created_at"
    fields = ("evaluation_set", "space", "mode", "as_user", "depth", "name")
    actions = ["run_again"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("evaluation_set", "space", "mode", "as_user", "depth", "name", "status", "progress_bar",
                "status_message", "error", "metrics_pretty", "performance_pretty", "report_link", "created_at",
                "started_at", "finished_at")

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else self.get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            obj.set_name = obj.evaluation_set.name if obj.evaluation_set else ""
            obj.space_name = obj.space.name if obj.space else ""
            obj.model_path = obj.space.model_path if obj.space else ""
        super().save_model(request, obj, form, change)
        if not change:
            _queue(obj)
            self.message_user(request, _("Evaluation queued; this page shows its progress."))

    @admin.display(description="MRR@10", ordering="mrr_at_10")
    def mrr(self, obj):
        return "—" if obj.mrr_at_10 is None else f"{obj.mrr_at_10:.4f}"

    @admin.display(description="Hit@1", ordering="hit_at_1")
    def hit1(self, obj):
        return "—" if obj.hit_at_1 is None else f"{obj.hit_at_1:.4f}"

    @admin.display(description=_("progress"))
    def progress_bar(self, obj):
        return format_html('<progress value="{}" max="100" title="{}%"></progress> {}%', obj.progress,
                           obj.progress, obj.progress)

    @admin.display(description=_("metrics"))
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=1))

    @admin.display(description=_("performance"))
    def performance_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.performance, indent=1))

    @admin.display(description=_("report"))
    def report_link(self, obj):
        if not obj.report_dir or not (Path(obj.report_dir) / "report.html").exists():
            return "—"
        return format_html('<a href="{}" target="_blank">{}</a>',
                           reverse("admin:evaluation_evaluationrun_report", args=[obj.pk]), _("open"))

    @admin.action(description=_("Run again (background)"))
    def run_again(self, request, queryset):
        from search.evaluation.runner import create_run

        for old in queryset:
            if old.evaluation_set is None:
                continue
            _queue(create_run(old.evaluation_set, old.space, old.mode, as_user=old.as_user, depth=old.depth,
                              created_by=request.user))
        self.message_user(request, _("Queued."))

    def get_urls(self):
        return [path("<int:pk>/report/", self.admin_site.admin_view(self.report_view),
                     name="evaluation_evaluationrun_report")] + super().get_urls()

    def report_view(self, request, pk: int):
        run = EvaluationRun.objects.filter(pk=pk).first()
        if run is None or not self.has_view_permission(request, run) or not run.report_dir:
            raise Http404
        page = Path(run.report_dir) / "report.html"
        if not page.exists():
            raise Http404
        return FileResponse(page.open("rb"), content_type="text/html; charset=utf-8")
