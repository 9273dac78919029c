from django.urls import path

from search.api import FeedbackView, SearchView

urlpatterns = [
    path("search", SearchView.as_view(), name="api-search"),
    path("search/", SearchView.as_view()),
    path("feedback", FeedbackView.as_view(), name="api-feedback"),
    path("feedback/", FeedbackView.as_view()),
]
