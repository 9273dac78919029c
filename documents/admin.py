from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from guardian.admin import GroupManage, GuardedModelAdmin

from documents.models import AccessLevel, Chunk, Department, Document, DocumentStatus, Tag, TitleSource
from documents.selectors import visible_documents
from documents.services.inspection import megabytes, supported_list
from documents.services.intake import (
    UploadMetadata,
    code_scope,
    find_by_code,
    refusal_of,
    register_upload,
    request_reprocessing,
    sha256_of,
)


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "document_count")
    search_fields = ("code", "name")

    def get_queryset(self, request):
        # Counts only the documents this admin user may see (a staff user must not
        # learn how many confidential documents a department holds).
        visible = visible_documents(request.user).values("pk")
        return super().get_queryset(request).annotate(
            document_total=Count("documents", filter=Q(documents__in=visible), distinct=True))

    @admin.display(description=_("documents"), ordering="document_total")
    def document_count(self, obj):
        return obj.document_total


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "parent")
    list_filter = ("parent",)
    search_fields = ("slug", "name")
    autocomplete_fields = ("parent",)


class DocumentAddForm(forms.ModelForm):
    upload = forms.FileField(label=_("File"))

    class Meta:
        model = Document
        fields = ["upload", "code", "title", "document_type", "access_level", "departments", "tags",
                  "language", "version", "effective_date"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].required = False
        self.fields["title"].required = False
        self.fields["upload"].help_text = _("Supported: %(supported)s, up to %(limit)s.") % {
            "supported": supported_list(), "limit": megabytes(settings.UPLOAD_MAX_BYTES)}

    user = None  # the admin user, set by DocumentAdmin.get_form

    def clean_upload(self):
        upload = self.cleaned_data["upload"]
        refusal = refusal_of(upload)
        if refusal:
            raise ValidationError(refusal)
        existing = Document.objects.filter(checksum=sha256_of(upload)).first()
        if existing is not None:
            if not visible_documents(self.user).filter(pk=existing.pk).exists():
                # Same answer as the portal: the uploader holds these bytes, but learns nothing else.
                raise ValidationError(_("An identical file is already in the portal; you do not have access "
                                        "to it. Ask its owner or an administrator."))
            url = reverse("admin:documents_document_change", args=[existing.pk])
            raise ValidationError(format_html(_('Already have it: this exact file is <a href="{}">{}</a>.'),
                                              url, existing.code))
        return upload

    def clean_code(self):
        # Codes are unique among the documents this user may see (intake.code_scope);
        # one held by a document the user cannot see is free for them.
        code = self.cleaned_data.get("code") or ""
        if code and find_by_code(code, self.user) is not None:
            raise ValidationError(_("A document with code %(code)s already exists.") % {"code": code})
        return code


class DocumentChangeForm(forms.ModelForm):
    user = None  # the admin user, set by DocumentAdmin.get_form

    def clean_code(self):
        code = self.cleaned_data.get("code") or ""
        same = code_scope(self.user).filter(code=code).exclude(pk=self.instance.pk)
        if "code" in self.changed_data and same.exists():
            raise ValidationError(_("A document with code %(code)s already exists.") % {"code": code})
        return code


class ChunkInline(admin.TabularInline):
    model = Chunk
    fields = ("ordinal", "heading_path", "token_count", "keywords", "text")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


class GroupManageForm(GroupManage):
    """guardian's group form, whose field label is the bare field name (never translated)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].label = _("Group")


def _set_level_action(level: int):
    def action(modeladmin, request, queryset):
        count = queryset.update(access_level=level)
        modeladmin.message_user(request, _("%(n)d document(s) set to %(level)s.")
                                % {"n": count, "level": AccessLevel(level).label})
    action.__name__ = f"set_access_level_{level}"
    # Lazy: formatting a lazy string at import would fix it in the default language.
    action.short_description = lazy(
        lambda: gettext("Set access level: %(label)s") % {"label": AccessLevel(level).label}, str)()
    action.allowed_permissions = ("change",)
    return action


@admin.register(Document)
class DocumentAdmin(GuardedModelAdmin):
    list_display = ("code", "title", "document_type", "access_level", "status_column", "chunk_count",
                    "updated_at")
    list_filter = ("status", "document_type", "access_level", "departments", "tags", "language")
    search_fields = ("code", "title", "checksum", "original_filename")
    readonly_fields = ("live_status", "checksum", "original_filename", "file_size", "source_file", "owner",
                       "attempts", "error", "created_at", "updated_at", "processed_at", "holder", "heartbeat_at",
                       "queued_at", "title_source")
    filter_horizontal = ("departments", "tags")
    actions = ["reingest"] + [_set_level_action(level) for level in AccessLevel.values]
    inlines = [ChunkInline]
    fieldsets = (
        (None, {"fields": ("code", "title", "title_source", "document_type", "access_level", "departments",
                           "tags", "language", "version", "effective_date")}),
        (_("Processing"), {"fields": ("live_status", "error", "attempts", "processed_at", "holder", "heartbeat_at",
                                      "queued_at")}),
        (_("File"), {"fields": ("source_file", "original_filename", "file_size", "checksum", "owner",
                                "created_at", "updated_at")}),
    )

    class Media:
        js = ("django_htmx/htmx-2.min.js",)
        css = {"all": ("portal/portal.css",)}

    def get_obj_perms_group_select_form(self, request):
        return GroupManageForm

    def get_queryset(self, request):
        # Staff who are not superusers administer only what they may see.
        return (visible_documents(request.user, super().get_queryset(request)).defer("content")
                .annotate(chunk_total=Count("chunks", distinct=True)))

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = DocumentAddForm if obj is None else DocumentChangeForm
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user  # a fresh class per request (modelform_factory)
        return form

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return ((None, {"fields": DocumentAddForm.Meta.fields}),)
        return super().get_fieldsets(request, obj)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            if "title" in form.changed_data:
                obj.title_source = TitleSource.UPLOADER  # typed by a person: processing keeps it
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        meta = UploadMetadata(
            code=data.get("code") or "", title=data.get("title") or "", document_type=data["document_type"],
            access_level=data["access_level"], departments=[d.code for d in data["departments"]],
            tags=[t.slug for t in data["tags"]], language=data.get("language") or "vi",
            version=data.get("version") or "1.0", effective_date=data.get("effective_date"))
        result = register_upload(data["upload"], data["upload"].name, meta, owner=request.user)
        obj.pk = result.document.pk
        obj.__dict__.update({k: v for k, v in result.document.__dict__.items() if not k.startswith("_")})

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)  # on add, register_upload set them

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj):
        if obj.status in (DocumentStatus.PENDING, DocumentStatus.PROCESSING):
            return format_html('<span class="badge status-{}">{} {}%</span> <span class="muted">{}</span>',
                               obj.status, obj.get_status_display(), obj.progress, obj.status_message_display)
        if obj.status == DocumentStatus.FAILED:
            return format_html('<span class="badge status-failed" title="{}">{}</span>', obj.error,
                               obj.get_status_display())
        return format_html('<span class="badge status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description=_("live status"))
    def live_status(self, obj):
        # The same fragment the portal polls; htmx refreshes it while processing.
        return format_html('<span hx-get="{}" hx-trigger="load" hx-swap="outerHTML">{}</span>',
                           reverse("document-status", args=[obj.pk]), obj.get_status_display())

    @admin.display(description=_("chunks"), ordering="chunk_total")
    def chunk_count(self, obj):
        return obj.chunk_total

    @admin.action(description=_("Re-ingest (extract and chunk again)"), permissions=["change"])
    def reingest(self, request, queryset):
        count = request_reprocessing(queryset)
        self.message_user(request, _("%(n)d document(s) queued for re-ingestion.") % {"n": count},
                          messages.SUCCESS)


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("__str__", "token_count", "heading_line", "short_text")
    list_filter = ("document__document_type", "document__access_level")
    search_fields = ("text", "document__code")
    readonly_fields = ("document", "ordinal", "text", "token_count", "heading_path", "char_start", "char_end",
                       "keywords")
    list_select_related = ("document",)

    def get_queryset(self, request):
        visible = visible_documents(request.user).values("pk")
        return super().get_queryset(request).filter(document__in=visible)

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("headings"))
    def heading_line(self, obj):
        return " › ".join(obj.heading_path)

    @admin.display(description=_("text"))
    def short_text(self, obj):
        return obj.text[:120]
