"""`POST /api/v1/answer`: a question answered from the documents the client may
read. Authentication, permissions and language as the search API (anonymous
clients get answers from public documents only); its own rate, since an answer
may call the chat model."""
from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from answers.models import AnswerKind
from answers.services import feedback
from answers.services.answering import answer_question
from portal.throttling import SharedScopedThrottle
from search.services.modes import SearchUnavailable
from search.services.results import MAX_QUERY_CHARS, clean_query


class AnswerRequestSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=MAX_QUERY_CHARS, error_messages={
        "blank": _("Ask a question: the question is empty."),
        "required": _("Ask a question: the question is empty."),
        "max_length": _("A question has at most {max_length} characters."),
    })

    def validate_question(self, value: str) -> str:
        if not clean_query(value):  # only control or invisible characters
            raise serializers.ValidationError(_("Ask a question: the question is empty."))
        return value


class CitedDocumentSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    code = serializers.CharField()
    title = serializers.CharField()


class CitedChunkSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    ordinal = serializers.IntegerField()
    heading_path = serializers.ListField(child=serializers.CharField())


class CitationSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="[n] in the answer's text")
    document = CitedDocumentSerializer()
    chunk = CitedChunkSerializer()
    score = serializers.FloatField(help_text="the search's score for the chunk")
    url = serializers.SerializerMethodField(help_text="the chunk in its document's page")

    def get_url(self, citation) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(citation.url) if request else citation.url


class AnswerResponseSerializer(serializers.Serializer):
    answer_id = serializers.IntegerField()
    question = serializers.CharField()
    kind = serializers.ChoiceField(AnswerKind.values, help_text="generated, extracted or not_found")
    kind_label = serializers.CharField()
    text = serializers.CharField(help_text="plain text; [n] refers to citation n")
    notice = serializers.CharField(help_text="'' unless the chat model was asked and failed: chat-unreachable, "
                                             "chat-timeout, chat-rate-limited, chat-bad-answer")
    notice_text = serializers.CharField()
    citations = CitationSerializer(many=True)
    space = serializers.SerializerMethodField()
    latency_ms = serializers.SerializerMethodField()

    def get_space(self, answer) -> str | None:
        return answer.space.name if answer.space else None

    def get_latency_ms(self, answer) -> float:
        return round(answer.latency_ms, 2)


class AnswerView(APIView):
    throttle_classes = [SharedScopedThrottle]
    throttle_scope = "answer"

    @extend_schema(request=AnswerRequestSerializer, responses={200: AnswerResponseSerializer})
    def post(self, request):
        form = AnswerRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            answer = answer_question(request.user, form.validated_data["question"], via="api")
        except SearchUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(AnswerResponseSerializer(answer, context={"request": request}).data)


class VoteRequestSerializer(serializers.Serializer):
    helpful = serializers.BooleanField(help_text="true: the answer helped; false: it did not")


class VoteResponseSerializer(serializers.Serializer):
    answer_id = serializers.IntegerField(source="pk")
    helpful = serializers.BooleanField()


class AnswerVoteView(APIView):
    """The asker's vote on their own answer (a new vote replaces the old one).
    Another client's answer, an unknown one, and any answer for an anonymous
    client (which has no answers of its own to vote on) are a 404."""

    @extend_schema(request=VoteRequestSerializer, responses={200: VoteResponseSerializer})
    def post(self, request, answer_id: int):
        form = VoteRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            log = feedback.vote(request.user, answer_id, form.validated_data["helpful"])
        except feedback.AnswerFeedbackRefused:
            raise NotFound() from None
        return Response(VoteResponseSerializer(log).data)
