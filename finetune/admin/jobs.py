"""Admin for fine-tuning jobs: a create form (base space or folder, dataset,
hyper-parameters, guard sets), the list and the job page with live status
(an htmx fragment polled while the job runs, as documents do) and the loss
curve, and the cancel and register actions."""
from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import Http404
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy as _

from finetune.models import DatasetStatus, FineTuneJob, JobStatus
from finetune.services import jobs
from finetune.services.curves import loss_curve_svg

CREATE_FIELDS = ("name", "base_space", "base_model_path", "dataset", "guard_sets", "loss", "matryoshka_dims",
                 "epochs", "batch_size", "mini_batch_size", "learning_rate", "warmup_ratio", "max_length", "seed",
                 "freeze_embeddings", "frozen_layers", "tuned_share", "group_by_length", "bf16", "lora", "lora_rank", "early_stopping_patience",
                 "eval_every_steps", "mine_negatives", "negative_margin")


class FineTuneJobCreateForm(forms.ModelForm):
    """Creating the job is the form's last step (after every other check passed): one
    active job per base is a database constraint, and its refusal must show on the form,
    not as an error page."""

    class Meta:
        model = FineTuneJob
        fields = CREATE_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model_path"].required = False
        self.fields["dataset"].queryset = self.fields["dataset"].queryset.filter(status=DatasetStatus.READY)
        self.created: FineTuneJob | None = None

    def validate_unique(self):
        """create_job checks the name and, through the database, one active job per base."""

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        data = self.cleaned_data
        options = {k: data[k] for k in jobs.OPTIONS if k in data}
        try:
            self.created = jobs.create_job(
                name=data["name"], dataset=data["dataset"], base_space=data.get("base_space"),
                base_model_path=data.get("base_model_path") or "", guard_sets=list(data.get("guard_sets") or []),
                created_by=self.user, queue=False, **options)
        except jobs.JobError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))


def _live_url(job: FineTuneJob) -> str:
    return reverse("admin:finetune_finetunejob_live", args=[job.pk])


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ("name", "base", "dataset", "status_column", "heldout_mrr", "created_at")
    list_filter = ("status", "loss", "lora")
    search_fields = ("name", "base_model_path", "dataset__name")
    date_hierarchy = "created_at"
    actions = ["cancel_jobs", "register_packages"]
    filter_horizontal = ("guard_sets",)

    class Media:
        js = ("django_htmx/htmx-2.min.js",)
        css = {"all": ("portal/portal.css",)}

    def has_change_permission(self, request, obj=None):
        # A job is not edited after it is created (its page is read-only); the actions need the permission.
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # A running job is cancelled, not deleted (its worker would go on writing to nothing).
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_active)

    def delete_queryset(self, request, queryset):
        active = [job.name for job in queryset if job.is_active]
        if active:
            self.message_user(request, gettext("Running jobs are not deleted; cancel them first: %(names)s")
                              % {"names": ", ".join(active)}, messages.WARNING)
        super().delete_queryset(request, queryset.exclude(pk__in=[j.pk for j in queryset if j.is_active]))

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = FineTuneJobCreateForm
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return CREATE_FIELDS
        return ("live_status", "error", "base", "dataset", "guard_set_names", "options", "validation_report",
                "metrics_summary", "history_list", "package_dir", "registered_space", "device", "attempts",
                "holder", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        created = form.created  # made by the form's clean (see FineTuneJobCreateForm)
        obj.pk = created.pk
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if not k.startswith("_")})
        jobs.enqueue(created)
        self.message_user(request, gettext("Fine-tuning job queued; its page shows the progress."))

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)  # on add, create_job set the guard sets

    # --- columns and fields --------------------------------------------------------

    @admin.display(description=_("base"))
    def base(self, obj):
        return obj.base_space.name if obj.base_space_id else obj.base_model_path

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj):
        if obj.is_active:  # the row keeps itself current while the job runs (the fragment polls)
            return format_html('<span hx-get="{}?compact=1" hx-trigger="load" hx-swap="outerHTML">{}</span>',
                               _live_url(obj), obj.get_status_display())
        return format_html('<span class="badge status-{}" title="{}">{}</span>', obj.status, obj.error,
                           obj.get_status_display())

    @admin.display(description=_("MRR@10 on the eval split: base → fine-tuned"))
    def heldout_mrr(self, obj):
        pair = (obj.metrics or {}).get("summary", {}).get("heldout_mrr@10")
        if not pair or None in pair:
            return "—"
        return f"{pair[0]:.4f} → {pair[1]:.4f}"

    @admin.display(description=_("live status"))
    def live_status(self, obj):
        return format_html('<div hx-get="{}" hx-trigger="load" hx-swap="outerHTML">{}</div>', _live_url(obj),
                           obj.get_status_display())

    @admin.display(description=_("guard evaluation sets"))
    def guard_set_names(self, obj):
        return ", ".join(obj.guard_sets.values_list("name", flat=True)) or "—"

    @admin.display(description=_("options"))
    def options(self, obj):
        return format_html("<pre>{}</pre>", json.dumps({k: getattr(obj, k) for k in jobs.OPTIONS}, indent=1))

    @admin.display(description=_("validation report"))
    def validation_report(self, obj):
        # Examples quote pair texts from documents of any access level: counts and messages only here.
        return format_html("<pre>{}</pre>", json.dumps(without_examples(obj.validation), ensure_ascii=False,
                                                       indent=1)[:20000])

    @admin.display(description=_("metrics"))
    def metrics_summary(self, obj):
        shown = {k: v for k, v in (obj.metrics or {}).items() if k in ("summary", "training", "base", "tuned")}
        return format_html("<pre>{}</pre>", json.dumps(shown, ensure_ascii=False, indent=1)[:20000])

    @admin.display(description=_("history"))
    def history_list(self, obj):
        return format_html("<pre>{}</pre>", "\n".join(
            f"{e['at']}  {e['status']}  {gettext(e['reason']) if e.get('reason') else ''}"
            + (f" ({e['detail']})" if e.get("detail") else "") for e in obj.history or []))

    # --- live fragment -------------------------------------------------------------

    def get_urls(self):
        return [path("<int:pk>/live/", self.admin_site.admin_view(self.live_view),
                     name="finetune_finetunejob_live")] + super().get_urls()

    def live_view(self, request, pk: int):
        job = FineTuneJob.objects.filter(pk=pk).first()
        if job is None or not self.has_view_permission(request, job):
            raise Http404
        compact = request.GET.get("compact") == "1"
        return render(request, "finetune/admin/_live.html", {
            "job": job, "compact": compact, "progress": job.progress or {}, "live_url": _live_url(job),
            "curve": "" if compact else loss_curve_svg(job.loss_curve, job.eval_curve,
                                                       total_steps=(job.progress or {}).get("total_steps"))})

    # --- actions -------------------------------------------------------------------

    @admin.action(description=_("Cancel the selected jobs"), permissions=["change"])
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            try:
                jobs.request_cancel(job, by=request.user)
                self.message_user(request, gettext("%(name)s: cancel requested.") % {"name": job.name})
            except jobs.JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)

    @admin.action(description=_("Register the package as a space (ready, not active)"), permissions=["change"])
    def register_packages(self, request, queryset):
        """Packages no worse than their base are registered at once; the others are
        listed on a confirmation page that asks for the reason to register them anyway."""
        forced = request.POST.get("confirm") == "force"
        reason = request.POST.get("reason", "").strip()
        if forced and not reason:
            self.message_user(request, gettext("Registering a model that is worse than its base needs a reason."),
                              messages.ERROR)
            forced = False
        worse = []
        for job in queryset:
            regressed = jobs.regressions(job) if job.status == JobStatus.SUCCEEDED else []
            if regressed and not forced:
                worse.append((job, jobs.describe(regressed)))
                continue
            try:
                space = jobs.register_package(job, force=forced, reason=reason, by=request.user)
                self.message_user(request, gettext("%(name)s: registered as space %(space)s (ready, not active).")
                                  % {"name": job.name, "space": space.name})
            except jobs.JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if worse:
            return TemplateResponse(request, "admin/finetune/register_despite_regression.html", {
                **self.admin_site.each_context(request), "title": _("Register a model worse than its base?"),
                "jobs": worse, "opts": self.model._meta, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "margin": jobs.margin_percent(settings.FINETUNE_REGRESSION_MARGIN)})
        return None


def without_examples(report: dict, user=None) -> dict:
    """The validation report; its examples quote pair texts, which may come from documents of
    any access level: shown to superusers only."""
    if getattr(user, "is_superuser", False) or not report:
        return report or {}
    strip = lambda items: [{k: v for k, v in i.items() if k != "examples"} for i in items or []]  # noqa: E731
    return {**report, "errors": strip(report.get("errors")), "warnings": strip(report.get("warnings"))}
