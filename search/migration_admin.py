"""Admin for migrations between embedding spaces (issue 11): an add form that
starts one (from the active space to the chosen target), the list and the
migration's page with live progress (an htmx fragment polled while a worker has
work: done / total, chunks/s, ETA, the index build's phase), the comparison of the two
spaces side by side (with a chart), the A/B test's report (per-arm table, verdict, a
plot), the old space's retirement, the history, and the actions: cancel, compare, A/B
test, promote (both gated by the comparison unless forced with a reason), roll back and
retire the old space (each asks for the reason)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import Http404
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, gettext_lazy as _

from search.migration_models import WORKER_STATES, SpaceMigration, state_label
from search.models import EmbeddingSpace, SearchArm, SpaceStatus
from search.services import ab_stats, migration_gate, migration_retire, space_migration as sm
from search.services.charts import grouped_bars_svg


class StartMigrationForm(forms.ModelForm):
    """Starting is the form's last check (one open migration is a database constraint:
    its refusal shows on the form, not as an error page)."""

    reason = forms.CharField(label=_("reason"), required=False, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = SpaceMigration
        fields = ("target",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].queryset = EmbeddingSpace.objects.filter(
            status__in=[SpaceStatus.BUILDING, SpaceStatus.READY])
        self.fields["target"].help_text = _("The space to migrate to, from the active space.")
        self.started: SpaceMigration | None = None

    def _post_clean(self):
        # Not the model's own validation: the instance is made by sm.start, whose checks
        # and the database's constraint decide (their refusal becomes a form error).
        if self.errors:
            return
        try:
            self.started = sm.start(self.cleaned_data["target"], by=self.user, reason=self.cleaned_data["reason"],
                                    queue=False)
        except sm.MigrationError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))


def _live_url(obj: SpaceMigration) -> str:
    return reverse("admin:search_spacemigration_live", args=[obj.pk])


def _working(obj: SpaceMigration) -> bool:
    return obj.state in WORKER_STATES or (obj.cancel_requested and obj.is_open)


class SpaceMigrationAdmin(admin.ModelAdmin):
    list_display = ("id", "__str__", "state_column", "progress", "created_by", "created_at")
    list_filter = ("state",)
    date_hierarchy = "created_at"
    actions = ["cancel_migrations", "compare_spaces", "start_ab_tests", "promote_migrations", "roll_back_migrations",
               "retire_old_spaces"]

    class Media:
        js = ("django_htmx/htmx-2.min.js",)
        css = {"all": ("portal/portal.css",)}

    def has_change_permission(self, request, obj=None):
        # A migration moves only through its actions (its page is read-only).
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # An open migration is cancelled, not deleted (its worker would go on writing).
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_open)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = StartMigrationForm
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("target", "reason")
        ab = ("ab_report",) if obj.ab_started_at else ()
        return ("live_status", "source", "target", "error", "comparison_view", *ab, "retirement_view",
                "history_list", "cursor", "embedded_chunks",
                "created_by", "created_at", "started_at", "backfilled_at", "indexed_at", "ab_started_at",
                "ab_ended_at", "promoted_at", "finished_at", "heartbeat_at", "holder")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        started = form.started  # made by the form's clean (see StartMigrationForm)
        obj.pk = started.pk
        obj.__dict__.update({k: v for k, v in started.__dict__.items() if not k.startswith("_")})
        sm.queue_step(started)
        self.message_user(request, gettext("Migration started; its page shows the progress."))

    # --- columns and fields --------------------------------------------------------

    @admin.display(description=_("state"), ordering="state")
    def state_column(self, obj):
        if _working(obj):
            return format_html('<span hx-get="{}?compact=1" hx-trigger="load" hx-swap="outerHTML">{}</span>',
                               _live_url(obj), obj.get_state_display())
        return format_html('<span class="badge status-{}" title="{}">{}</span>', obj.state, obj.error,
                           obj.get_state_display())

    @admin.display(description=_("progress"))
    def progress(self, obj):
        return f"{obj.done_chunks}/{obj.total_chunks}"

    @admin.display(description=_("live status"))
    def live_status(self, obj):
        return format_html('<div hx-get="{}" hx-trigger="load" hx-swap="outerHTML">{}</div>', _live_url(obj),
                           obj.get_state_display())

    @admin.display(description=_("A/B test"))
    def ab_report(self, obj):
        rep = ab_stats.report(obj)
        head = (_("arm"), _("searches"), _("users"), _("click-through"), _("helpful votes"), _("zero-result rate"),
                _("latency p50 (ms)"), _("latency p95 (ms)"))
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{} ({}/{})</td><td>{}</td>"
                                    "<td>{}</td><td>{}</td></tr>", (
            (str(SearchArm(a.arm).label), a.searches, a.users, ab_stats.percent(a.click_through),
             ab_stats.percent(a.helpful_share), a.helpful, a.votes, ab_stats.percent(a.zero_result_rate),
             ab_stats.milliseconds(a.latency_p50_ms), ab_stats.milliseconds(a.latency_p95_ms)) for a in rep.arms))
        tests = format_html_join(" · ", "{}: z={}, p{}", ((c.label, f"{c.z:.2f}", ab_stats.p_text(c.p_value))
                                                         for c in rep.comparisons))
        return format_html(
            '<div class="ab-report"><table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
            '<p class="ab-verdict"><strong>{}</strong></p><p class="muted">{}</p>{}</div>',
            format_html_join("", "<th>{}</th>", ((h,) for h in head)), rows, rep.verdict, tests,
            # drawn by ab_stats from numbers only, every label escaped there
            mark_safe(ab_stats.comparison_svg(rep)))  # noqa: S308

    @admin.display(description=_("history"))
    def history_list(self, obj):
        rows = format_html_join("", "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>", (
            (_local_time(e.get("at")), state_label(e.get("from")), state_label(e.get("to")), e.get("by", ""),
             (gettext(e["step"]) if e.get("step") else "") + (f" — {e['reason']}" if e.get("reason") else ""))
            for e in obj.history or []))
        return format_html("<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
                           "<tbody>{}</tbody></table>", gettext("When"), gettext("State"), gettext("Who"),
                           gettext("Step and reason"), rows)

    @admin.display(description=_("comparison"))
    def comparison_view(self, obj):
        c = obj.comparison or {}
        if not c:
            return gettext("Not compared yet: use the action “Compare the two spaces”.")
        head = format_html("<p>{}</p>", gettext("On %(set)s (hybrid): %(status)s, requested by %(by)s at %(at)s.")
                           % {"set": c.get("set"), "status": migration_gate.label(c.get("status")),
                              "by": c.get("requested_by"),
                              "at": c.get("requested_at")})
        if c.get("status") != migration_gate.DONE:
            extra = c.get("error") or " ".join(
                x for x in (migration_gate.label(c.get("phase")), c.get("progress")) if x)
            return format_html("{}<p>{}</p>", head, extra)
        spaces = c["spaces"]
        names = [k for k in migration_gate.SHOWN_METRICS if k in spaces["source"]["metrics"]]
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (k, f"{spaces['source']['metrics'][k]:.4f}", f"{spaces['target']['metrics'].get(k, 0):.4f}",
             f"{spaces['target']['metrics'].get(k, 0) - spaces['source']['metrics'][k]:+.4f}") for k in names))
        latency = format_html("<tr><th>{}</th><td>{}</td><td>{}</td><td></td></tr>", gettext("latency p50 / p95 (ms)"),
                              f"{spaces['source'].get('latency_p50_ms')} / {spaces['source'].get('latency_p95_ms')}",
                              f"{spaces['target'].get('latency_p50_ms')} / {spaces['target'].get('latency_p95_ms')}")
        table = format_html('<table class="comparison"><thead><tr><th></th><th>{} ({} d)</th><th>{} ({} d)</th>'
                            '<th>{}</th></tr></thead><tbody>{}{}</tbody></table>',
                            spaces["source"]["name"], spaces["source"]["dimension"], spaces["target"]["name"],
                            spaces["target"]["dimension"], gettext("difference"), rows, latency)
        chart = mark_safe(grouped_bars_svg(  # noqa: S308 - built from numbers and escaped names
            names, [(spaces["source"]["name"], [spaces["source"]["metrics"][k] for k in names]),
                    (spaces["target"]["name"], [spaces["target"]["metrics"].get(k) for k in names])],
            title=gettext("Both spaces on %(set)s") % {"set": c.get("set")}))
        cal = c.get("calibration") or {}
        after = cal.get("after") or {}
        calibrated = gettext(
            "Target calibrated on %(set)s%(in_sample)s: similarity floor %(sim)s, keyword floor %(kw)s, "
            "semantic-only floor %(so)s; fusion %(fusion)s, vector weight %(vw)s, keyword weight %(kww)s.") % {
            "set": cal.get("set"), "in_sample": gettext(" (the evaluated set itself)") if cal.get("in_sample") else "",
            "sim": after.get("similarity_floor"), "kw": after.get("keyword_floor"),
            "so": after.get("semantic_only_floor"), "fusion": after.get("fusion"), "vw": after.get("vector_weight"),
            "kww": after.get("keyword_weight")}
        outcome = migration_gate.verdict(obj)
        return format_html('{}{}<div class="chart">{}</div><p>{}</p><p class="{}"><strong>{}</strong></p>', head,
                           table, chart, calibrated, "success" if outcome["ok"] else "error", outcome["message"])

    @admin.display(description=_("retirement of the old space"))
    def retirement_view(self, obj):
        r = obj.retirement or {}
        ends = migration_retire.soak_ends_at(obj)
        if not r:
            if ends is None:
                return "—"
            return gettext("Not retired. The soak period ends at %(at)s.") % {"at": ends.strftime("%Y-%m-%d %H:%M")}
        lines = [gettext("%(status)s — requested by %(by)s at %(at)s; %(rows)s vector rows deleted.")
                 % {"status": migration_gate.label(r.get("status")), "by": r.get("requested_by"),
                    "at": r.get("requested_at"),
                    "rows": r.get("deleted_rows", 0)}]
        if r.get("forced"):
            lines.append(gettext("Forced before the soak period ended: %(reason)s") % {"reason": r.get("reason")})
        if r.get("freed"):
            freed, before, after = r["freed"], r["before"], r["after"]
            lines.append(gettext("Storage freed: vector storage %(before)s → %(after)s (%(percent)s%% freed).")
                         % {"before": filesizeformat(before["vector_storage_bytes"]),
                            "after": filesizeformat(after["vector_storage_bytes"]),
                            "percent": freed["vector_storage_percent"]})
            lines.append(gettext("Embedding table on disk (with its indexes): %(before)s → %(after)s; %(reusable)s "
                                 "more is free inside the table for new rows (VACUUM).")
                         % {"before": filesizeformat(before["table_total_bytes"]),
                            "after": filesizeformat(after["table_total_bytes"]),
                            "reusable": filesizeformat(freed["reusable_in_table_bytes"])})
        if r.get("error"):
            lines.append(r["error"])
        return format_html_join("", "<p>{}</p>", ((line,) for line in lines))

    # --- live fragment -------------------------------------------------------------

    def get_urls(self):
        return [path("<int:pk>/live/", self.admin_site.admin_view(self.live_view),
                     name="search_spacemigration_live")] + super().get_urls()

    def live_view(self, request, pk: int):
        migration = SpaceMigration.objects.select_related("source", "target").filter(pk=pk).first()
        if migration is None or not self.has_view_permission(request, migration):
            raise Http404
        return render(request, "admin/search/_migration_live.html", {
            "m": migration, "working": _working(migration), "compact": request.GET.get("compact") == "1",
            "index": migration.index_progress or {}, "live_url": _live_url(migration)})

    # --- actions (each asks for the reason first) -------------------------------------

    def _with_reason(self, request, queryset, title, run, *, reason_required=True, share=False, force=False,
                     evaluation_sets=None):
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/search/spacemigration_action.html", {
                **self.admin_site.each_context(request), "title": title, "migrations": queryset,
                "action": request.POST.get("action"), "opts": self.model._meta, "share": share,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME, "reason_required": reason_required,
                "force": force, "evaluation_sets": evaluation_sets})
        reason = request.POST.get("reason", "").strip()
        for migration in queryset:
            try:
                run(migration, reason)
                migration.refresh_from_db()
                self.message_user(request, gettext("%(migration)s: %(state)s.")
                                  % {"migration": migration, "state": migration.get_state_display()})
            except sm.MigrationError as exc:
                self.message_user(request, f"{migration}: {exc}", messages.WARNING)
        return None

    @admin.action(description=_("Cancel the selected migrations"), permissions=["change"])
    def cancel_migrations(self, request, queryset):
        return self._with_reason(request, queryset, _("Cancel migrations"),
                                 lambda m, reason: sm.request_cancel(m, by=request.user, reason=reason))

    @admin.action(description=_("Start the A/B test"), permissions=["change"])
    def start_ab_tests(self, request, queryset):
        def run(m, reason):
            raw = request.POST.get("share", "").strip().replace(",", ".")
            try:
                value = float(raw) if raw else None
            except ValueError:
                raise sm.MigrationError(gettext("The A/B share must be a number between 0 and 1.")) from None
            sm.start_ab_test(m, share=value, by=request.user, reason=reason, force=_forced(request))
        return self._with_reason(request, queryset, _("Start the A/B test"), run, reason_required=False, share=True,
                                 force=True)

    @admin.action(description=_("Promote the target space"), permissions=["change"])
    def promote_migrations(self, request, queryset):
        return self._with_reason(request, queryset, _("Promote the target space"),
                                 lambda m, reason: sm.promote(m, by=request.user, reason=reason,
                                                              force=_forced(request)),
                                 reason_required=False, force=True)

    @admin.action(description=_("Roll back to the source space"), permissions=["change"])
    def roll_back_migrations(self, request, queryset):
        return self._with_reason(request, queryset, _("Roll back to the source space"),
                                 lambda m, reason: sm.rollback(m, by=request.user, reason=reason))

    @admin.action(description=_("Compare the two spaces"), permissions=["change"])
    def compare_spaces(self, request, queryset):
        from search.evaluation.models import EvaluationSet

        def run(m, reason):
            migration_gate.request_compare(m, request.POST.get("evaluation_set", ""), by=request.user)
        return self._with_reason(request, queryset, _("Compare the two spaces"), run, reason_required=False,
                                 evaluation_sets=list(EvaluationSet.objects.order_by("name")
                                                      .values_list("name", flat=True)))

    @admin.action(description=_("Retire the old space"), permissions=["change"])
    def retire_old_spaces(self, request, queryset):
        return self._with_reason(request, queryset, _("Retire the old space"),
                                 lambda m, reason: migration_retire.request_retire(
                                     m, by=request.user, reason=reason, force=_forced(request)),
                                 reason_required=False, force=True)


def _forced(request) -> bool:
    return request.POST.get("force") in ("on", "1", "true", "yes")


admin.site.register(SpaceMigration, SpaceMigrationAdmin)


def _local_time(at: str | None) -> str:
    """A history time (ISO, UTC) in the portal's time zone and format."""
    from datetime import datetime

    from django.utils import timezone
    from django.utils.formats import date_format

    try:
        return date_format(timezone.localtime(datetime.fromisoformat(at)), "DATETIME_FORMAT")
    except (TypeError, ValueError):
        return at or ""

