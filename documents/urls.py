from django.urls import path

from documents import views

urlpatterns = [
    path("documents/", views.document_list, name="document-list"),
    path("documents/upload/", views.upload, name="document-upload"),
    path("documents/<int:pk>/", views.document_detail, name="document-detail"),
    path("documents/<int:pk>/status/", views.document_status, name="document-status"),
    path("documents/<int:pk>/download/", views.download, name="document-download"),
]
