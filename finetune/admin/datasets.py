"""Admin: training datasets (status, counts, access levels, the validation
report; validate again) and their pairs, read-only. Datasets are built through
the API or `manage.py finetune_dataset build`; what a staff member sees is
decided by finetune.selectors (their own datasets; superusers every one)."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from finetune.models import TrainingDataset, TrainingPair
from finetune.selectors import datasets_for, visible_pairs
from finetune.services.validation import record_validation, translated


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _pretty(value) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>",
                       json.dumps(value, ensure_ascii=False, indent=1)[:50000])


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("name", "status", "train_pairs", "eval_pairs", "document_count", "access_levels_shown",
                    "validation_shown", "created_by", "built_at")
    list_filter = ("status",)
    search_fields = ("name", "description")
    fields = ("name", "description", "status", "status_message", "error", "pairs_link", "eval_share", "seed",
              "content_hash", "access_levels_shown", "counts_pretty", "sources_pretty", "validation_pretty",
              "created_by", "created_at", "built_at")
    readonly_fields = fields
    actions = ["validate_datasets", "validate_with_active_space"]

    def get_queryset(self, request):
        return datasets_for(request.user).select_related("created_by")

    @admin.display(description=_("train pairs"))
    def train_pairs(self, obj):
        return (obj.counts or {}).get("train", {}).get("pairs", 0)

    @admin.display(description=_("eval pairs"))
    def eval_pairs(self, obj):
        return (obj.counts or {}).get("eval", {}).get("pairs", 0)

    @admin.display(description=_("documents"))
    def document_count(self, obj):
        return (obj.counts or {}).get("documents", 0)

    @admin.display(description=_("access levels"))
    def access_levels_shown(self, obj):
        return ", ".join(map(str, obj.access_levels or [])) or "—"

    @admin.display(description=_("validation"))
    def validation_shown(self, obj):
        report = obj.validation or {}
        if not report:
            return "—"
        errors, warnings = report.get("errors", []), report.get("warnings", [])
        return _("errors: %(e)d, warnings: %(w)d") % {"e": len(errors), "w": len(warnings)}

    @admin.display(description=_("pairs"))
    def pairs_link(self, obj):
        url = reverse("admin:finetune_trainingpair_changelist") + f"?dataset__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Show the pairs"))

    @admin.display(description=_("counts"))
    def counts_pretty(self, obj):
        return _pretty(obj.counts)

    @admin.display(description=_("sources"))
    def sources_pretty(self, obj):
        return _pretty(obj.sources)

    @admin.display(description=_("validation report"))
    def validation_pretty(self, obj):
        return _pretty(translated(obj.validation or {}))

    def _validate(self, request, queryset, model_path):
        for dataset in queryset:
            report = record_validation(dataset, model_path)
            codes = ", ".join(f["code"] for f in report["errors"] + report["warnings"]) or _("no findings")
            level = messages.ERROR if report["errors"] else messages.WARNING if report["warnings"] else messages.SUCCESS
            self.message_user(request, _("%(name)s: errors: %(e)d, warnings: %(w)d (%(codes)s)") % {
                "name": dataset.name, "e": len(report["errors"]), "w": len(report["warnings"]), "codes": codes}, level)

    def has_validate_permission(self, request):
        return request.user.has_perm("finetune.change_trainingdataset")

    @admin.action(description=_("Validate"), permissions=["validate"])
    def validate_datasets(self, request, queryset):
        self._validate(request, queryset, None)

    @admin.action(description=_("Validate with the active space's model (token lengths)"), permissions=["validate"])
    def validate_with_active_space(self, request, queryset):
        from search.services.spaces import active_space

        space = active_space()
        if space is None:
            self.message_user(request, _("No space is active."), messages.ERROR)
            return
        self._validate(request, queryset, space.model_path)


class DatasetFilter(admin.SimpleListFilter):
    """Only the datasets the viewer may see (a plain related filter would list every name)."""

    title = _("training dataset")
    parameter_name = "dataset__id__exact"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in datasets_for(request.user).values_list("pk", "name")]

    def queryset(self, request, queryset):
        return queryset.filter(dataset_id=self.value()) if self.value() and self.value().isdigit() else queryset


@admin.register(TrainingPair)
class TrainingPairAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("id", "dataset", "split", "source", "query_short", "positive_short", "negative_short",
                    "access_level", "doc_key")
    list_filter = ("split", "source", DatasetFilter)
    search_fields = ("query",)
    list_select_related = ("dataset",)
    fields = ("dataset", "split", "source", "query", "positive", "negative", "negative_score", "doc_key", "chunk",
              "access_level", "query_type", "domain", "line")
    readonly_fields = fields

    def get_queryset(self, request):
        return visible_pairs(request.user, super().get_queryset(request))

    # pairs are part of their dataset: the dataset's view permission shows them
    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.has_perm("finetune.view_trainingdataset")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    @admin.display(description=_("query"))
    def query_short(self, obj):
        return obj.query[:80]

    @admin.display(description=_("positive"))
    def positive_short(self, obj):
        return obj.positive[:120]

    @admin.display(description=_("hard negative"))
    def negative_short(self, obj):
        return obj.negative[:80]
