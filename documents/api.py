"""REST API for documents. Every queryset starts from `visible_documents`: a
document the client may not see answers exactly like one that does not exist
(404), for every method."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from documents.models import AccessLevel, Chunk, Document, DocumentLanguage, DocumentStatus, DocumentType
from documents.selectors import can_manage, can_view, visible_documents
from documents.services.intake import (
    UploadMetadata,
    find_by_code,
    refusal_of,
    register_upload,
    request_reprocessing,
)


class ChunkSerializer(serializers.ModelSerializer):
    class Meta:
        model = Chunk
        fields = ["id", "ordinal", "text", "token_count", "heading_path", "char_start", "char_end", "keywords"]


class DocumentSerializer(serializers.ModelSerializer):
    departments = serializers.SlugRelatedField(many=True, read_only=True, slug_field="code")
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")
    owner = serializers.SlugRelatedField(read_only=True, slug_field="username")
    chunk_count = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    # Codes are for programs, labels for people: each choice comes with its label
    # in the request's language (Accept-Language), and the processing step with
    # its stable key (`step`) beside the translated `status_message`.
    document_type_label = serializers.CharField(source="get_document_type_display", read_only=True)
    access_level_label = serializers.CharField(source="get_access_level_display", read_only=True)
    language_label = serializers.CharField(source="get_language_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    step = serializers.CharField(source="status_message", read_only=True,
                                 help_text="The current processing step as a stable key (English), e.g. "
                                           "'Extracting text'; empty before the first step.")
    status_message = serializers.CharField(source="status_message_display", read_only=True,
                                           help_text="The current processing step in the request's language.")

    class Meta:
        model = Document
        fields = ["id", "code", "title", "title_source", "document_type", "document_type_label", "access_level",
                  "access_level_label", "departments", "tags", "language", "language_label",
                  "version", "effective_date", "status", "status_label", "progress", "step", "status_message", "error",
                  "original_filename", "file_size", "checksum", "owner", "chunk_count", "download_url",
                  "created_at", "updated_at", "processed_at"]

    def get_chunk_count(self, obj) -> int:
        # annotated by the viewset's queryset (one query for a whole page); counted otherwise
        return obj.chunk_total if hasattr(obj, "chunk_total") else obj.chunks.count()

    def get_download_url(self, obj) -> str:
        request = self.context.get("request")
        url = f"/api/v1/documents/{obj.pk}/download/"
        return request.build_absolute_uri(url) if request else url


class DocumentDetailSerializer(DocumentSerializer):
    chunks = ChunkSerializer(many=True, read_only=True)

    class Meta(DocumentSerializer.Meta):
        fields = DocumentSerializer.Meta.fields + ["chunks"]


class ListField(serializers.ListField):
    """Accepts a JSON list, repeated form fields, or one comma-separated string."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [item.strip() for item in data.split(",") if item.strip()]
        elif isinstance(data, list) and len(data) == 1 and isinstance(data[0], str) and "," in data[0]:
            data = [item.strip() for item in data[0].split(",") if item.strip()]
        return super().to_internal_value(data)


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    code = serializers.CharField(required=False, allow_blank=True, max_length=64)
    title = serializers.CharField(required=False, allow_blank=True, max_length=300)
    document_type = serializers.ChoiceField(choices=DocumentType.choices, default=DocumentType.POLICY)
    access_level = serializers.ChoiceField(choices=AccessLevel.choices, default=AccessLevel.INTERNAL)
    departments = ListField(child=serializers.CharField(), required=False, default=list)
    tags = ListField(child=serializers.CharField(), required=False, default=list)
    language = serializers.ChoiceField(
        choices=DocumentLanguage.choices, default=DocumentLanguage.VIETNAMESE,
        error_messages={"invalid_choice": gettext_lazy('"{input}" is not a language of the portal; use vi, en or mixed.')})
    version = serializers.CharField(required=False, default="1.0", max_length=32)
    effective_date = serializers.DateField(required=False, allow_null=True, default=None)
    replace = serializers.BooleanField(required=False, default=False,
                                       help_text=gettext_lazy("Store a new version of the document with this code."))

    def validate_file(self, upload):
        refusal = refusal_of(upload)
        if refusal:
            raise serializers.ValidationError(refusal)
        return upload


class CanUpload(permissions.BasePermission):
    message = gettext_lazy("Uploading needs an account with the 'add document' permission.")

    def has_permission(self, request, view):
        if view.action not in ("create", "upsert"):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.has_perm("documents.add_document"))


class DocumentListFilters(serializers.Serializer):
    """The list's query parameters: anything else (a NUL byte, `access_level=abc`)
    is a 400 naming the parameter, never a 500. Empty values mean "no filter"."""

    document_type = serializers.ChoiceField(choices=DocumentType.choices, required=False, allow_blank=True)
    department = serializers.CharField(required=False, allow_blank=True, max_length=32,
                                       help_text="department code")
    tag = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="tag slug")
    status = serializers.ChoiceField(choices=DocumentStatus.choices, required=False, allow_blank=True)
    access_level = serializers.ChoiceField(choices=AccessLevel.choices, required=False, allow_blank=True)
    q = serializers.CharField(required=False, allow_blank=True, max_length=200,
                              help_text="code or title contains")

    LOOKUPS = {"document_type": "document_type", "department": "departments__code", "tag": "tags__slug",
               "status": "status", "access_level": "access_level"}

    def apply(self, qs):
        for param, value in self.validated_data.items():
            if value in ("", None):
                continue
            if param == "q":
                qs = qs.filter(Q(code__icontains=value) | Q(title__icontains=value))
            else:
                qs = qs.filter(**{self.LOOKUPS[param]: value})
        return qs


@extend_schema_view(list=extend_schema(parameters=[DocumentListFilters]))
class DocumentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                      viewsets.GenericViewSet):
    permission_classes = [CanUpload]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        qs = (visible_documents(self.request.user).defer("content").prefetch_related("departments", "tags")
              .annotate(chunk_total=Count("chunks", distinct=True)))
        if self.action == "list":
            filters = DocumentListFilters(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            qs = filters.apply(qs)
        return qs.select_related("owner").distinct().order_by("code")

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            # DRF would answer Django's untranslated "No Document matches the given query."
            raise NotFound() from None

    def get_serializer_class(self):
        if self.action == "retrieve":
            return DocumentDetailSerializer
        if self.action == "create":
            return UploadSerializer
        return DocumentSerializer

    @extend_schema(request={"multipart/form-data": UploadSerializer},
                   responses={201: DocumentSerializer, 200: inline_serializer("DuplicateUpload", {
                       "duplicate": serializers.BooleanField(), "detail": serializers.CharField(),
                       "document": DocumentSerializer(allow_null=True)})})
    def create(self, request, *args, **kwargs):
        form = UploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._store(request, form.validated_data)

    @extend_schema(request={"multipart/form-data": UploadSerializer},
                   responses={201: DocumentSerializer, 200: DocumentSerializer})
    @action(detail=False, methods=["put"], url_path=r"by-code/(?P<code>[A-Za-z0-9_.-]{1,64})",
            parser_classes=[MultiPartParser, FormParser])
    def upsert(self, request, code=None):
        """Create or replace the document with this code (for other systems that own their codes)."""
        form = UploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data, code=code, replace=True)
        return self._store(request, data)

    def _store(self, request, data):
        data = dict(data)
        upload = data.pop("file")
        replace = data.pop("replace")
        meta = UploadMetadata(**data)
        if replace and meta.code:
            # Only documents the client may see hold a code for it (intake.code_scope): a code
            # held by a document it cannot see is free for it, exactly like an unused one.
            existing = find_by_code(meta.code, request.user)
            if existing is not None and not can_manage(request.user, existing):
                raise PermissionDenied(_("You may not replace this document."))
        try:
            result = register_upload(upload, upload.name, meta, owner=request.user, replace=replace)
        except DjangoValidationError as exc:
            raise ApiValidationError(exc.message_dict if hasattr(exc, "message_dict") else exc.messages)
        ctx = self.get_serializer_context()
        if result.duplicate:
            visible = can_view(request.user, result.document)
            return Response({
                "duplicate": True,
                "detail": _("Already have it: an identical file is in the portal.") if visible else
                          _("An identical file is already in the portal; you do not have access to it."),
                "document": DocumentSerializer(result.document, context=ctx).data if visible else None,
            }, status=status.HTTP_200_OK)
        return Response(DocumentSerializer(result.document, context=ctx).data,
                        status=status.HTTP_200_OK if result.replaced else status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        document = self.get_object()  # 404 when not visible
        if not can_manage(request.user, document):
            raise PermissionDenied(_("You may not delete this document."))
        document.source_file.delete(save=False)
        document.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        document = self.get_object()
        return FileResponse(document.source_file.open("rb"), as_attachment=True,
                            filename=document.original_filename)

    @extend_schema(request=None, responses={202: DocumentSerializer})
    @action(detail=True, methods=["post"])
    def reingest(self, request, pk=None):
        document = self.get_object()
        if not can_manage(request.user, document):
            raise PermissionDenied(_("You may not re-ingest this document."))
        request_reprocessing(Document.objects.filter(pk=document.pk))
        document.refresh_from_db()
        return Response(DocumentSerializer(document, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)
