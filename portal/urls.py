from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from portal.api_docs import RedocView, SwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include("documents.api_urls")),
    path("api/v1/", include("search.api_urls")),
    path("api/v1/", include("finetune.api_urls")),
    path("api/v1/", include("answers.api_urls")),
    path("", include("portal.portal_urls")),
    path("", include("documents.urls")),
    path("", include("search.urls")),
    path("", include("answers.urls")),
]

handler500 = "portal.views.server_error"  # 503 + Retry-After while the database is unreachable
