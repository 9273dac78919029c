from django.urls import path

from search import views

urlpatterns = [
    path("search/", views.search_page, name="search"),
    path("search/feedback/", views.feedback, name="search-feedback"),
    path("search/open/<int:search_id>/<int:document_id>/", views.open_result, name="search-open"),
]
