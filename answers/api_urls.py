from django.urls import path
from drf_spectacular.utils import extend_schema

from answers.api import AnswerView


@extend_schema(exclude=True)
class _AnswerWithSlash(AnswerView):
    """`/answer/` answers like `/answer` (a POST cannot follow a redirect) but is
    left out of the schema: one documented path per endpoint."""


urlpatterns = [
    path("answer", AnswerView.as_view(), name="api-answer"),
    path("answer/", _AnswerWithSlash.as_view()),
]
