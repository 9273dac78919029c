"""REST API for migrations between embedding spaces (staff with the migration permissions; issue 11):
/api/v1/migrations/ — start, list, detail (state, progress, history), cancel,
advance (A/B test, promote; gated by the comparison unless forced with a reason), roll back,
compare the two spaces and retire the old one (both queued: 202), and the A/B test's report
(…/ab/). A refused move answers 409 with the reason; bad input 400."""
from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api_permissions import StaffModelPermission
from search.migration_models import MigrationState, SpaceMigration
from search.models import EmbeddingSpace
from search.services import ab_stats, migration_gate, migration_retire, space_migration as sm

BAD_INPUT_FIELDS = ("reason", "share", "to", "evaluation_set")


def _without_token(value: dict) -> dict:
    return {k: v for k, v in (value or {}).items() if k != "token"}


class MigrationPermission(StaffModelPermission):
    """Staff with the space-migration model permission the action needs (as in the admin)."""
    app_label, model = "search", "spacemigration"
    message = _("Migrations between embedding spaces are for staff with the migration permissions.")


class SpaceMigrationSerializer(serializers.ModelSerializer):
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    step = serializers.CharField(source="status_message", read_only=True,
                                 help_text="The current step as a stable key (English).")
    status_message = serializers.CharField(source="status_message_display", read_only=True,
                                           help_text="The current step in the request's language.")
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    target = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    comparison = serializers.SerializerMethodField(
        help_text="Both spaces scored on an evaluation set (hybrid), the target's calibrated settings, the gate.")
    retirement = serializers.SerializerMethodField(
        help_text="The old space's retirement: status, vector storage before and after, what was freed.")

    class Meta:
        model = SpaceMigration
        fields = ["id", "source", "target", "state", "state_label", "step", "status_message", "error",
                  "cancel_requested", "done_chunks", "total_chunks", "embedded_chunks", "chunks_per_second",
                  "eta_seconds", "cursor", "index_progress", "heartbeat_at", "created_by", "created_at",
                  "started_at", "backfilled_at", "indexed_at", "ab_started_at", "ab_ended_at", "promoted_at", "finished_at",
                  "comparison",
                  "retirement", "history"]
        read_only_fields = fields


    def get_comparison(self, obj) -> dict:
        out = _without_token(obj.comparison)
        if obj.comparison:
            out["gate"] = migration_gate.verdict(obj)
        return out

    def get_retirement(self, obj) -> dict:
        out = _without_token(obj.retirement)
        ends = migration_retire.soak_ends_at(obj)
        if ends is not None:
            out["soak_ends_at"] = ends.isoformat(timespec="seconds")
        return out


class ArmSerializer(serializers.Serializer):
    arm = serializers.CharField(help_text="source or target")
    searches = serializers.IntegerField()
    users = serializers.IntegerField(help_text="Distinct signed-in users and anonymous visitors.")
    clicked = serializers.IntegerField(help_text="Searches with at least one result opened.")
    click_through = serializers.FloatField(allow_null=True, help_text="clicked / searches")
    helpful = serializers.IntegerField()
    votes = serializers.IntegerField(help_text="Helpful and not-helpful votes.")
    helpful_share = serializers.FloatField(allow_null=True, help_text="helpful / votes")
    zero_results = serializers.IntegerField()
    zero_result_rate = serializers.FloatField(allow_null=True)
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="click_through or zero_result_rate")
    source = serializers.FloatField(allow_null=True)
    target = serializers.FloatField(allow_null=True)
    z = serializers.FloatField(help_text="Two-proportion z (positive: the target's share is higher).")
    p_value = serializers.FloatField(help_text="Two-sided.")
    significant = serializers.BooleanField(help_text=f"p < {ab_stats.ALPHA}")
    target_better = serializers.BooleanField(allow_null=True)


class ABReportSerializer(serializers.Serializer):
    migration_id = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True, help_text="Null while the A/B test runs.")
    min_searches = serializers.IntegerField(help_text="Searches per arm before a verdict is drawn "
                                                      "(PORTAL_MIGRATION_AB_MIN_SEARCHES).")
    enough = serializers.BooleanField()
    arms = ArmSerializer(many=True)
    comparisons = ComparisonSerializer(many=True)
    verdict = serializers.CharField(help_text="In plain words, in the request's language.")


class StartSerializer(serializers.Serializer):
    target = serializers.SlugRelatedField(slug_field="name", queryset=EmbeddingSpace.objects.all())
    source = serializers.SlugRelatedField(slug_field="name", queryset=EmbeddingSpace.objects.all(), required=False,
                                          allow_null=True, help_text="The active space (the default).")
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ForceSerializer(ReasonSerializer):
    force = serializers.BooleanField(required=False, default=False,
                                     help_text="Go on although the check refuses (needs a reason; recorded).")


class CompareSerializer(serializers.Serializer):
    evaluation_set = serializers.CharField(max_length=100, help_text="Name of the evaluation set to score both "
                                                                    "spaces on (e.g. samples).")


class AdvanceSerializer(ForceSerializer):
    to = serializers.ChoiceField(choices=[MigrationState.AB_TESTING, MigrationState.PROMOTED], required=False,
                                 help_text="Default: the next step (evaluating → ab_testing → promoted).")
    share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                   help_text="Share of users in the A/B test (default PORTAL_MIGRATION_AB_SHARE).")


class SpaceMigrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [MigrationPermission]
    serializer_class = SpaceMigrationSerializer
    queryset = SpaceMigration.objects.select_related("source", "target", "created_by")

    def _answer(self, migration, code=status.HTTP_200_OK):
        migration.refresh_from_db()
        return Response(SpaceMigrationSerializer(migration, context=self.get_serializer_context()).data,
                        status=code)

    def _refused(self, exc: sm.MigrationError):
        return Response({"detail": str(exc), "field": exc.field}, status=status.HTTP_400_BAD_REQUEST
                        if exc.field in BAD_INPUT_FIELDS else status.HTTP_409_CONFLICT)

    @extend_schema(request=StartSerializer, responses={201: SpaceMigrationSerializer})
    def create(self, request, *args, **kwargs):
        body = StartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            migration = sm.start(data["target"], source=data.get("source"), by=request.user, reason=data["reason"])
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration, status.HTTP_201_CREATED)

    @extend_schema(request=ReasonSerializer, responses={200: SpaceMigrationSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        migration = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sm.request_cancel(migration, by=request.user, reason=body.validated_data["reason"])
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration)

    @extend_schema(request=AdvanceSerializer, responses={200: SpaceMigrationSerializer})
    @action(detail=True, methods=["post"])
    def advance(self, request, pk=None):
        migration = self.get_object()
        body = AdvanceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            sm.advance(migration, to=data.get("to"), share=data.get("share"), by=request.user, reason=data["reason"],
                       force=data["force"])
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration)

    @extend_schema(request=ReasonSerializer, responses={200: SpaceMigrationSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        migration = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sm.rollback(migration, by=request.user, reason=body.validated_data["reason"])
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration)

    @extend_schema(responses={200: ABReportSerializer})
    @action(detail=True, methods=["get"])
    def ab(self, request, pk=None):
        """The A/B test's report: per arm searches, users, click-through, helpful votes,
        zero-result rate and latency p50/p95, the significance tests and the verdict."""
        return Response(ABReportSerializer(ab_stats.report(self.get_object())).data)

    @extend_schema(request=CompareSerializer, responses={202: SpaceMigrationSerializer})
    @action(detail=True, methods=["post"])
    def compare(self, request, pk=None):
        """Queue a comparison of the two spaces (the target is calibrated first)."""
        migration = self.get_object()
        body = CompareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            migration_gate.request_compare(migration, body.validated_data["evaluation_set"], by=request.user)
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration, status.HTTP_202_ACCEPTED)

    @extend_schema(request=ForceSerializer, responses={202: SpaceMigrationSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """Queue the retirement of the old space (after the soak period, or forced with a reason)."""
        migration = self.get_object()
        body = ForceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            migration_retire.request_retire(migration, by=request.user, force=data["force"], reason=data["reason"])
        except sm.MigrationError as exc:
            return self._refused(exc)
        return self._answer(migration, status.HTTP_202_ACCEPTED)
