"""Search and feedback API. Results come from `run_search()`, which filters by the
one access function inside its SQL."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from documents.models import Document, DocumentType
from portal.throttling import SharedScopedThrottle
from search.models import Feedback, SearchMode
from search.services.filters import SearchFilters
from search.services.modes import NOTICES, SearchUnavailable
from search.services.results import run_search
from search.services.search_log import FeedbackRefused, record_feedback


class FiltersSerializer(serializers.Serializer):
    document_types = serializers.ListField(child=serializers.ChoiceField(DocumentType.values), required=False,
                                           default=list)
    departments = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    languages = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    date_from = serializers.DateField(required=False, allow_null=True, default=None)
    date_to = serializers.DateField(required=False, allow_null=True, default=None)


class SearchRequestSerializer(serializers.Serializer):
    query = serializers.CharField(max_length=500)
    mode = serializers.ChoiceField(SearchMode.values, default=SearchMode.HYBRID)
    filters = FiltersSerializer(required=False)
    k = serializers.IntegerField(min_value=1, max_value=500, default=100)
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=50, default=10)


class ChunkOutSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    ordinal = serializers.IntegerField()
    heading_path = serializers.ListField(child=serializers.CharField())
    text = serializers.CharField()


class DocumentOutSerializer(serializers.ModelSerializer):
    departments = serializers.SlugRelatedField(many=True, read_only=True, slug_field="code")
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")

    class Meta:
        model = Document
        fields = ["id", "code", "title", "document_type", "access_level", "language", "effective_date",
                  "departments", "tags"]


class HitSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    score = serializers.FloatField()
    snippet = serializers.CharField(help_text="HTML: matched terms wrapped in <mark>")
    document = DocumentOutSerializer()
    chunk = ChunkOutSerializer()
    more_chunks = ChunkOutSerializer(many=True)


class SearchResponseSerializer(serializers.Serializer):
    search_id = serializers.IntegerField()
    query = serializers.CharField()
    mode = serializers.CharField()
    space = serializers.SerializerMethodField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    total_documents = serializers.IntegerField(help_text="0: nothing relevant was found")
    suggestion = serializers.CharField(allow_null=True)
    notice = serializers.CharField(help_text="'' when the mode ran as asked; else why not (no-space, no-reranker)")
    notice_text = serializers.SerializerMethodField()
    facets = serializers.DictField()
    latency_ms = serializers.SerializerMethodField()
    results = HitSerializer(many=True, source="hits")

    def get_space(self, result) -> str | None:
        return result.space.name if result.space else None

    def get_notice_text(self, result) -> str:
        return str(NOTICES.get(result.notice, ""))

    def get_latency_ms(self, result) -> float:
        return round(result.latency_ms, 2)


class SearchView(APIView):
    throttle_classes = [SharedScopedThrottle]
    throttle_scope = "search"

    @extend_schema(request=SearchRequestSerializer, responses={200: SearchResponseSerializer})
    def post(self, request):
        form = SearchRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        filters = SearchFilters(**data.get("filters", {}))
        try:
            result = run_search(request.user, data["query"], data["mode"], filters, k=data["k"], page=data["page"],
                                page_size=data["page_size"], via="api")
        except SearchUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(SearchResponseSerializer(result).data)


class FeedbackRequestSerializer(serializers.Serializer):
    search_id = serializers.IntegerField()
    document_id = serializers.IntegerField()
    kind = serializers.ChoiceField(Feedback.Kind.values)


class FeedbackView(APIView):
    @extend_schema(request=FeedbackRequestSerializer,
                   responses={201: inline_serializer("FeedbackStored", {"id": serializers.IntegerField()})})
    def post(self, request):
        form = FeedbackRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            feedback = record_feedback(request.user, data["search_id"], data["document_id"], data["kind"])
        except FeedbackRefused:
            raise NotFound() from None
        return Response({"id": feedback.pk}, status=status.HTTP_201_CREATED)
