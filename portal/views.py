from django.shortcuts import render

from documents.models import DocumentStatus
from documents.selectors import visible_documents


def home(request):
    """Start page: the newest documents this visitor may see (search arrives with the search app)."""
    recent = (visible_documents(request.user).filter(status=DocumentStatus.READY).defer("content")
              .order_by("-processed_at")[:10])
    return render(request, "portal/home.html", {"recent": recent})


# --- errors -----------------------------------------------------------------

# Seconds a client is asked to wait while the database is unreachable.
OUTAGE_RETRY_AFTER = 30


def server_error(request, *args, **kwargs):
    """handler500. Django calls it for an exception raised anywhere in the request —
    views, DRF, and middleware (a session or user lookup that needs the database)
    included — while the exception is being handled, so it can tell an outage from a
    bug: a database that cannot be reached answers 503 with Retry-After (JSON under
    /api/, a small page elsewhere), anything else the usual 500. It never touches the
    database itself."""
    import sys

    from django.db import InterfaceError, OperationalError
    from django.http import HttpResponse, JsonResponse
    from django.template.loader import render_to_string
    from django.utils.translation import gettext as _
    from django.views.defaults import server_error as default_server_error

    exc = sys.exc_info()[1]
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return default_server_error(request, *args, **kwargs)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": _("The service is temporarily unavailable (database unreachable). "
                                             "Try again in %(seconds)d seconds.") % {"seconds": OUTAGE_RETRY_AFTER}},
                                status=503)
    else:
        response = HttpResponse(render_to_string("503.html", {"retry_after": OUTAGE_RETRY_AFTER}), status=503)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    return response
