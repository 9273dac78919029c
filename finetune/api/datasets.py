"""REST API for training datasets (/api/v1/finetune/datasets/): list, detail,
pairs, build from uploaded files and other sources, validate.

Staff only, by Django model permission: view_trainingdataset to read,
add_trainingdataset to build, change_trainingdataset to validate; a dataset is
visible to its builder and to superusers, and its pairs of portal documents
only while the viewer may see them (finetune.selectors). Anonymous clients get
401, signed-in users without the permission 403, a dataset they may not see 404.
"""
from __future__ import annotations

from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from documents.api import ListField
from finetune.api.permissions import DatasetPermission
from finetune.models import PairSource, Split, TrainingDataset
from finetune.selectors import datasets_for, visible_pairs
from finetune.services.datasets import DatasetRefused, DatasetSpec, SourceFile, build_dataset
from finetune.services.datasets.benchmark import default_train_path, default_val_path
from finetune.services.validation import record_validation, translated

def _summary(report: dict) -> dict:
    return {"errors": len(report.get("errors", [])), "warnings": len(report.get("warnings", [])),
            "codes": [f["code"] for f in report.get("errors", []) + report.get("warnings", [])]}


class DatasetSerializer(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    created_by = serializers.SlugRelatedField(read_only=True, slug_field="username")
    validation_summary = serializers.SerializerMethodField()

    class Meta:
        model = TrainingDataset
        fields = ["id", "name", "description", "status", "status_label", "status_message", "error", "eval_share",
                  "seed", "content_hash", "counts", "access_levels", "sources", "validation_summary", "created_by",
                  "created_at", "built_at"]

    def get_validation_summary(self, obj) -> dict:
        return _summary(obj.validation or {})


class DatasetDetailSerializer(DatasetSerializer):
    validation = serializers.SerializerMethodField(help_text=(
        '{"errors": [...], "warnings": [...], "stats": {...}}; each finding {"code", "message", "count", '
        '"examples"}, the message in the request\'s language.'))

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["validation"]

    def get_validation(self, obj) -> dict:
        return translated(obj.validation or {})


class PairSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    query = serializers.CharField()
    positive = serializers.CharField()
    negative = serializers.CharField()
    negative_score = serializers.FloatField(allow_null=True)
    split = serializers.CharField()
    source = serializers.CharField()
    doc_key = serializers.CharField()
    access_level = serializers.IntegerField(allow_null=True)
    query_type = serializers.CharField()
    domain = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)


class BuildSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    pairs = serializers.FileField(required=False, help_text="positive_pairs.jsonl")
    negatives = serializers.FileField(required=False, help_text="hard_negatives.jsonl")
    metadata = serializers.FileField(required=False, help_text="document_metadata.json")
    benchmark = serializers.ChoiceField(choices=["", "vicov19qa"], required=False, default="",
                                        help_text="vicov19qa: its train split, read from the server's copy.")
    benchmark_val = serializers.BooleanField(required=False, default=False,
                                             help_text="Also the benchmark's val split, as the eval side.")
    feedback = serializers.BooleanField(required=False, default=False, help_text=(
        "Pairs from search feedback (helpful or opened results) and answer feedback (opened or helpful "
        "citations; an unhelpful answer's citations as negatives), read with the building user's access."))
    synthetic = serializers.ChoiceField(choices=["", "offline"], required=False, default="", help_text=(
        "offline: queries from headings, titles, keywords and first sentences. The chat-endpoint generator "
        "runs from `manage.py finetune_dataset build --synthetic http` (it can take longer than a request)."))
    synthetic_from = ListField(child=serializers.ChoiceField(choices=["portal", "metadata"]), required=False,
                               default=["portal"])
    per_chunk = serializers.IntegerField(required=False, default=3, min_value=1, max_value=20)
    exclude_eval_sets = ListField(child=serializers.CharField(), required=False, default=list)
    eval_share = serializers.FloatField(required=False, default=0.1, min_value=0, max_value=0.5)
    seed = serializers.IntegerField(required=False, default=42, min_value=0)

    def validate(self, data):
        for key in ("pairs", "negatives", "metadata"):
            upload = data.get(key)
            if upload is not None and upload.size > settings.UPLOAD_MAX_BYTES:
                raise serializers.ValidationError({key: _("The file is larger than %(limit)d bytes.")
                                                   % {"limit": settings.UPLOAD_MAX_BYTES}})
        return data

    def spec(self) -> DatasetSpec:
        data = self.validated_data
        files = {key: SourceFile.from_upload(data[key]) for key in ("pairs", "negatives", "metadata") if data.get(key)}
        vicov = data["benchmark"] == "vicov19qa"
        return DatasetSpec(**files, vicov_train=default_train_path() if vicov else None,
                           vicov_val=default_val_path() if vicov and data["benchmark_val"] else None,
                           feedback=data["feedback"], synthetic=data["synthetic"],
                           synthetic_from=tuple(data["synthetic_from"]), per_chunk=data["per_chunk"],
                           exclude_eval_sets=data["exclude_eval_sets"], eval_share=data["eval_share"],
                           seed=data["seed"], description=data["description"])


class ValidateSerializer(serializers.Serializer):
    space = serializers.CharField(required=False, allow_blank=True, default="", help_text=(
        "An embedding space whose model counts the tokens (over-long texts); empty: no token check."))
    max_length = serializers.IntegerField(required=False, default=512, min_value=8, max_value=8192)


class PairFilters(serializers.Serializer):
    split = serializers.ChoiceField(choices=Split.choices, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=PairSource.choices, required=False, allow_blank=True)


DatasetRefusedResponse = inline_serializer("DatasetRefused", {
    "detail": serializers.CharField(), "problems": serializers.ListField(child=serializers.CharField())})


@extend_schema_view(pairs=extend_schema(parameters=[PairFilters], responses={200: PairSerializer(many=True)}))
class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [DatasetPermission]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        return datasets_for(self.request.user).select_related("created_by").order_by("-created_at")

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            raise NotFound() from None

    def get_serializer_class(self):
        return DatasetSerializer if self.action == "list" else DatasetDetailSerializer

    @extend_schema(request={"multipart/form-data": BuildSerializer}, responses={201: DatasetDetailSerializer, 400: DatasetRefusedResponse})
    def create(self, request, *args, **kwargs):
        """Build a dataset (in the request; the pairs are written in one transaction)."""
        form = BuildSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            dataset = build_dataset(form.validated_data["name"], form.spec(), request.user)
        except DatasetRefused as exc:
            return Response({"detail": _("The dataset cannot be built."), "problems": exc.problems},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(DatasetDetailSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ValidateSerializer, responses={200: DatasetDetailSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request, pk=None):
        """Run the validation report again (with a space's model: token lengths too)."""
        from search.models import EmbeddingSpace

        dataset = self.get_object()
        form = ValidateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        model_path = None
        if form.validated_data["space"]:
            space = EmbeddingSpace.objects.filter(name=form.validated_data["space"]).first()
            if space is None:
                raise serializers.ValidationError({"space": _("No embedding space has this name.")})
            model_path = space.model_path
        record_validation(dataset, model_path, form.validated_data["max_length"])
        dataset.refresh_from_db()
        return Response(DatasetDetailSerializer(dataset).data)

    @action(detail=True, methods=["get"])
    def pairs(self, request, pk=None):
        """The dataset's pairs (those of portal documents only while you may see them)."""
        dataset = self.get_object()
        filters = PairFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        pairs = visible_pairs(request.user, dataset.pairs.all()).order_by("pk")
        for key in ("split", "source"):
            if filters.validated_data.get(key):
                pairs = pairs.filter(**{key: filters.validated_data[key]})
        page = self.paginate_queryset(pairs.values(*PairSerializer().fields.keys()))
        return self.get_paginated_response(PairSerializer(page, many=True).data)
