"""The API's interactive documentation (Swagger UI, Redoc), served entirely from
the portal: the bundles come from drf-spectacular-sidecar, the Redoc page
template drops Google Fonts (templates/drf_spectacular/redoc.html), and a
Content-Security-Policy keeps the browser from fetching anything from another
host — Redoc's bundle always shows a "Redocly" logo from its CDN, which the
policy blocks (the bundle then hides the image)."""
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

# Inline script and styles: the pages' own settings scripts and the bundles'
# injected styles; blob: for Redoc's search worker; data: for icons in the CSS.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self' 'unsafe-inline'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:", "font-src 'self' data:", "connect-src 'self'", "worker-src 'self' blob:",
    "frame-ancestors 'self'", "base-uri 'self'", "form-action 'self'",
])


class _SameHostOnly:
    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


class SwaggerView(_SameHostOnly, SpectacularSwaggerView):
    pass


class RedocView(_SameHostOnly, SpectacularRedocView):
    pass
