from django.urls import path
from drf_spectacular.utils import extend_schema

from answers.api import AnswerView, AnswerVoteView


@extend_schema(exclude=True)
class _AnswerWithSlash(AnswerView):
    """`/answer/` answers like `/answer` (a POST cannot follow a redirect) but is
    left out of the schema: one documented path per endpoint."""


@extend_schema(exclude=True)
class _VoteWithSlash(AnswerVoteView):
    """`/answer/<id>/vote/`, as above."""


urlpatterns = [
    path("answer", AnswerView.as_view(), name="api-answer"),
    path("answer/", _AnswerWithSlash.as_view()),
    path("answer/<int:answer_id>/vote", AnswerVoteView.as_view(), name="api-answer-vote"),
    path("answer/<int:answer_id>/vote/", _VoteWithSlash.as_view()),
]
