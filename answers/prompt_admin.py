"""Prompt templates in the admin: every save of an edit is a new version (the
old one is kept and can be activated again), a version that breaks a rule of
answers.services.prompt_templates.validate is refused with what to fix, and
each version has a preview page: a sample question, the passages the search
gives the admin for it (as that admin: the access rule applies), and the exact
messages this version would send — with the model's answer when an endpoint is
configured and the admin asks for it."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy as _

from answers.models import PromptTemplate
from answers.services import prompt_templates
from answers.services.prompt import NOT_FOUND_MARKER

SAMPLE_QUESTIONS = {"vi": "Một năm nhân viên được nghỉ phép bao nhiêu ngày?",
                    "en": "How many days of annual leave do employees get?"}


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ("language", "system_prompt", "user_template", "note", "is_active")
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 18, "cols": 110}),
                   "user_template": forms.Textarea(attrs={"rows": 5, "cols": 110})}
        labels = {"is_active": _("use this version")}
        help_texts = {"is_active": _("Checked: questions in this language are answered with the version this save "
                                     "creates (or with this version, when its texts are unchanged). Unchecked on the "
                                     "version in use: the built-in prompt is used.")}

    def clean(self):
        cleaned = super().clean()
        problems = prompt_templates.validate(cleaned.get("system_prompt") or "", cleaned.get("user_template") or "")
        for field, found in problems.items():
            for problem in found:
                self.add_error(field, problem)
        return cleaned


class PreviewForm(forms.Form):
    question = forms.CharField(label=_("sample question"), max_length=500,
                               widget=forms.TextInput(attrs={"size": 90}))
    ask_model = forms.BooleanField(label=_("also ask the chat model"), required=False)


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    form = PromptTemplateForm
    list_display = ("__str__", "language", "version", "is_active", "note", "created_by", "created_at", "preview_link")
    list_filter = ("language", "is_active")
    readonly_fields = ("version", "created_by", "created_at", "preview_link")
    actions = ["activate_selected"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("language",) if obj else ())

    def has_delete_permission(self, request, obj=None):
        return False  # versions are history: answer log entries name the version they were asked with

    @admin.display(description=_("preview"))
    def preview_link(self, obj):
        if not obj or not obj.pk:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:answers_prompttemplate_preview", args=[obj.pk]),
                           gettext("Preview with a sample question"))

    def save_model(self, request, obj, form, change):
        texts_changed = not change or {"system_prompt", "user_template"} & set(form.changed_data)
        use_it = form.cleaned_data.get("is_active", False)
        if texts_changed:
            new = prompt_templates.save_version(obj.language, obj.system_prompt, obj.user_template,
                                                user=request.user, note=obj.note, activate_it=use_it)
            if change:
                self.message_user(request, gettext("Saved as a new version, %(new)s; %(old)s is kept unchanged.")
                                  % {"new": new, "old": obj})
            obj.pk, obj.version, obj.is_active, obj.created_by, obj.created_at = (
                new.pk, new.version, new.is_active, new.created_by, new.created_at)
            return
        PromptTemplate.objects.filter(pk=obj.pk).update(note=obj.note)
        if use_it and "is_active" in form.changed_data:
            prompt_templates.activate(obj)
        elif not use_it and "is_active" in form.changed_data:
            prompt_templates.deactivate_language(obj.language)

    @admin.action(description=_("Use the selected version (one per language)"))
    def activate_selected(self, request, queryset):
        chosen = list(queryset)
        if len({t.language for t in chosen}) != len(chosen):
            self.message_user(request, gettext("Select at most one version per language."), messages.ERROR)
            return
        for template in chosen:
            try:
                prompt_templates.activate(template)
            except ValidationError as exc:
                self.message_user(request, gettext("%(template)s cannot be used: %(problems)s")
                                  % {"template": template, "problems": " ".join(exc.messages)}, messages.ERROR)
            else:
                self.message_user(request, gettext("%(template)s is now in use.") % {"template": template})

    # --- preview ---------------------------------------------------------------------

    def get_urls(self):
        return [path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view),
                     name="answers_prompttemplate_preview")] + super().get_urls()

    def preview_view(self, request, pk: int):
        from answers.services.preview import preview

        template = PromptTemplate.objects.filter(pk=pk).first()
        if template is None:
            raise Http404
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        form = PreviewForm(request.POST or None, initial={"question": SAMPLE_QUESTIONS[template.language]})
        result = None
        if request.method == "POST" and form.is_valid():
            result = preview(request.user, template, form.cleaned_data["question"],
                             ask_model=form.cleaned_data["ask_model"])
        return TemplateResponse(request, "admin/answers/prompttemplate_preview.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": template,
            "title": gettext("Preview of %(template)s") % {"template": template}, "form": form,
            "result": result, "marker": NOT_FOUND_MARKER})
