"""Portal pages for documents. Every lookup goes through `visible_documents`;
a document the visitor may not see is a 404, the same as one that does not exist."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from documents.models import AccessLevel, Department, DocumentLanguage, DocumentType, Tag
from documents.selectors import visible_documents
from documents.services.inspection import SUPPORTED_TYPES, megabytes, supported_list
from documents.services.intake import UploadMetadata, refusal_of, register_upload, waits_for_queue


def _visible_or_404(request, pk):
    return get_object_or_404(visible_documents(request.user).select_related("owner"), pk=pk)


def document_list(request):
    qs = visible_documents(request.user).defer("content").prefetch_related("departments").order_by("code")
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return render(request, "documents/list.html", {"page": page})


def document_detail(request, pk):
    document = _visible_or_404(request, pk)
    chunks = document.chunks.all()
    return render(request, "documents/detail.html", {"document": document, "chunks": chunks})


def document_status(request, pk):
    """The live status fragment (polled by htmx while the document is processed;
    once it is ready, the search app's fragment follows its vectors)."""
    document = _visible_or_404(request, pk)
    return render(request, "documents/_status.html", {"document": document})


def download(request, pk):
    document = _visible_or_404(request, pk)
    return FileResponse(document.source_file.open("rb"), as_attachment=True, filename=document.original_filename)


class UploadForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("File"), widget=forms.ClearableFileInput(
        attrs={"accept": ",".join(sorted(SUPPORTED_TYPES))}))
    title = forms.CharField(label=gettext_lazy("Title"), required=False, max_length=300)
    code = forms.CharField(label=gettext_lazy("Code"), required=False, max_length=64,
                           help_text=gettext_lazy("e.g. HR_POLICY_2024_001; left empty, it is made from the file name."))
    document_type = forms.ChoiceField(label=gettext_lazy("Type"), choices=DocumentType.choices)
    access_level = forms.TypedChoiceField(label=gettext_lazy("Access level"), choices=AccessLevel.choices, coerce=int,
                                          initial=AccessLevel.INTERNAL)
    departments = forms.ModelMultipleChoiceField(label=gettext_lazy("Departments"), queryset=Department.objects.all(),
                                                 required=False)
    tags = forms.ModelMultipleChoiceField(label=gettext_lazy("Tags"), queryset=Tag.objects.all(), required=False)
    language = forms.ChoiceField(label=gettext_lazy("Language"), choices=DocumentLanguage.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = _("Supported: %(supported)s, up to %(limit)s.") % {
            "supported": supported_list(), "limit": megabytes(settings.UPLOAD_MAX_BYTES)}

    def clean_file(self):
        upload = self.cleaned_data["file"]
        refusal = refusal_of(upload)
        if refusal:
            raise ValidationError(refusal)
        return upload


@login_required
def upload(request):
    if not request.user.has_perm("documents.add_document"):
        raise PermissionDenied(_("Your account may not upload documents."))
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        meta = UploadMetadata(
            code=data["code"], title=data["title"], document_type=data["document_type"],
            access_level=data["access_level"], departments=[d.code for d in data["departments"]],
            tags=[t.slug for t in data["tags"]], language=data["language"])
        try:
            result = register_upload(data["file"], data["file"].name, meta, owner=request.user)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            if result.duplicate:
                if visible_documents(request.user).filter(pk=result.document.pk).exists():
                    messages.info(request, _("Already have it: this exact file is %(code)s.")
                                  % {"code": result.document.code})
                    return redirect("document-detail", pk=result.document.pk)
                messages.warning(request, _("An identical file is already in the portal; you do not have "
                                            "access to it. Ask its owner or an administrator."))
                return redirect("document-upload")
            if waits_for_queue(result.document):
                messages.warning(request, _("Uploaded and stored. The processing queue cannot be reached right "
                                            "now; processing starts automatically when it is back."))
            else:
                messages.success(request, _("Uploaded. Processing has started."))
            return redirect("document-detail", pk=result.document.pk)
    return render(request, "documents/upload.html", {"form": form})
