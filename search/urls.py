from django.urls import path

from search import status_views, views

urlpatterns = [
    path("search/", views.search_page, name="search"),
    path("search/feedback/", views.feedback, name="search-feedback"),
    path("search/open/<int:search_id>/<int:document_id>/", views.open_result, name="search-open"),
    path("search/documents/<int:pk>/vectors/", status_views.document_vectors_fragment,
         name="search-document-vectors"),
    path("search/readiness/", status_views.readiness_fragment, name="search-readiness"),
]
