from django.shortcuts import render

from documents.models import DocumentStatus
from documents.selectors import visible_documents


def home(request):
    """Start page: the newest documents this visitor may see (search arrives with the search app)."""
    recent = (visible_documents(request.user).filter(status=DocumentStatus.READY).defer("content")
              .order_by("-processed_at")[:10])
    return render(request, "portal/home.html", {"recent": recent})
