from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.routers import SimpleRouter

from search.api import FeedbackView, SearchView
from search.migration_api import SpaceMigrationViewSet


@extend_schema(exclude=True)
class _SearchWithSlash(SearchView):
    """`/search/` answers like `/search` (a POST cannot follow a redirect) but is
    left out of the schema: one documented path per endpoint."""


@extend_schema(exclude=True)
class _FeedbackWithSlash(FeedbackView):
    """`/feedback/`, as above."""


urlpatterns = [
    path("search", SearchView.as_view(), name="api-search"),
    path("search/", _SearchWithSlash.as_view()),
    path("feedback", FeedbackView.as_view(), name="api-feedback"),
    path("feedback/", _FeedbackWithSlash.as_view()),
]

# Migrations between embedding spaces (staff only; issue 11)
router = SimpleRouter()
router.register("migrations", SpaceMigrationViewSet, basename="space-migration")
urlpatterns += router.urls
