"""REST API for fine-tuning jobs (staff with the fine-tuning job permissions): /api/v1/finetune/jobs/ — create,
list, detail (progress, loss curve, metrics), cancel, register."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from finetune.admin.jobs import without_examples
from finetune.api.permissions import JobPermission
from finetune.models import FineTuneJob, Loss, TrainingDataset
from finetune.services import jobs
from search.evaluation.models import EvaluationSet
from search.models import EmbeddingSpace


class FineTuneJobSerializer(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    step = serializers.CharField(source="status_message", read_only=True,
                                 help_text="The current step as a stable key (English), e.g. 'Training'.")
    status_message = serializers.CharField(source="status_message_display", read_only=True,
                                           help_text="The current step in the request's language.")
    base_space = serializers.SlugRelatedField(slug_field="name", read_only=True)
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    guard_sets = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    registered_space = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = FineTuneJob
        fields = ["id", "name", "status", "status_label", "step", "status_message", "error", "cancel_requested",
                  "base_space", "base_model_path", "dataset", "guard_sets", *jobs.OPTIONS, "progress", "device",
                  "attempts", "package_dir", "registered_space", "created_by", "created_at", "started_at",
                  "heartbeat_at", "finished_at"]
        read_only_fields = fields


class FineTuneJobDetailSerializer(FineTuneJobSerializer):
    validation = serializers.SerializerMethodField()

    class Meta(FineTuneJobSerializer.Meta):
        fields = FineTuneJobSerializer.Meta.fields + ["loss_curve", "eval_curve", "validation", "metrics", "history"]
        read_only_fields = fields

    def get_validation(self, obj) -> dict:
        return without_examples(obj.validation, self.context["request"].user)


class FineTuneJobCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    base_space = serializers.SlugRelatedField(slug_field="name", queryset=EmbeddingSpace.objects.all(),
                                              required=False, allow_null=True)
    base_model_path = serializers.CharField(max_length=500, required=False, allow_blank=True)
    dataset = serializers.SlugRelatedField(slug_field="name", queryset=TrainingDataset.objects.all())
    guard_sets = serializers.SlugRelatedField(slug_field="name", queryset=EvaluationSet.objects.all(), many=True,
                                              required=False)
    loss = serializers.ChoiceField(choices=Loss.choices, required=False)
    matryoshka_dims = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    epochs = serializers.FloatField(required=False)
    batch_size = serializers.IntegerField(required=False)
    mini_batch_size = serializers.IntegerField(required=False)
    learning_rate = serializers.FloatField(required=False)
    warmup_ratio = serializers.FloatField(required=False)
    max_length = serializers.IntegerField(required=False)
    seed = serializers.IntegerField(required=False, min_value=0)
    freeze_embeddings = serializers.BooleanField(required=False)
    frozen_layers = serializers.IntegerField(required=False, min_value=0)
    tuned_share = serializers.FloatField(required=False)
    group_by_length = serializers.BooleanField(required=False)
    bf16 = serializers.BooleanField(required=False)
    lora = serializers.BooleanField(required=False)
    lora_rank = serializers.IntegerField(required=False)
    early_stopping_patience = serializers.IntegerField(required=False)
    eval_every_steps = serializers.IntegerField(required=False)
    mine_negatives = serializers.BooleanField(required=False)
    negative_margin = serializers.FloatField(required=False)

    def create(self, data):
        options = {k: data[k] for k in jobs.OPTIONS if k in data}
        try:
            return jobs.create_job(name=data["name"], dataset=data["dataset"], base_space=data.get("base_space"),
                                   base_model_path=data.get("base_model_path") or "",
                                   guard_sets=data.get("guard_sets") or [],
                                   created_by=self.context["request"].user, **options)
        except jobs.JobError as exc:
            raise serializers.ValidationError({exc.field or "non_field_errors": [str(exc)]}) from None


class RegisterSerializer(serializers.Serializer):
    space_name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    force = serializers.BooleanField(required=False, default=False, help_text=(
        "Register even when the fine-tuned model is worse than its base beyond the margin."))
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class FineTuneJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                         viewsets.GenericViewSet):
    permission_classes = [JobPermission]
    queryset = FineTuneJob.objects.select_related("base_space", "dataset", "registered_space", "created_by") \
        .prefetch_related("guard_sets")

    def get_serializer_class(self):
        if self.action == "create":
            return FineTuneJobCreateSerializer
        return FineTuneJobDetailSerializer if self.action in ("retrieve", "cancel") else FineTuneJobSerializer

    @extend_schema(responses={201: FineTuneJobDetailSerializer})
    def create(self, request, *args, **kwargs):
        serializer = FineTuneJobCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        job = serializer.save()
        return Response(FineTuneJobDetailSerializer(job, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: FineTuneJobDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        try:
            jobs.request_cancel(job, by=request.user)
        except jobs.JobError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        job.refresh_from_db()
        return Response(FineTuneJobDetailSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(request=RegisterSerializer, responses={201: inline_serializer(
        "RegisteredSpace", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                            "status": serializers.CharField(), "model_path": serializers.CharField()})})
    @action(detail=True, methods=["post"])
    def register(self, request, pk=None):
        job = self.get_object()
        body = RegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            data = body.validated_data
            space = jobs.register_package(job, space_name=data.get("space_name") or None, force=data["force"],
                                          reason=data["reason"], by=request.user)
        except jobs.JobError as exc:
            return Response({exc.field: [str(exc)]} if exc.field else {"detail": str(exc)},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response({"id": space.pk, "name": space.name, "status": space.status, "model_path": space.model_path},
                        status=status.HTTP_201_CREATED)
