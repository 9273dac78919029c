"""Live status fragments the portal loads with htmx: a document's vectors in
the space the visitor searches (included from the document page, which belongs
to the documents app and knows nothing of search), and the "search is still
being prepared" banner of the start and search pages."""
from __future__ import annotations

from django.shortcuts import get_object_or_404, render

from documents.selectors import visible_documents
from search.services.readiness import document_vectors, readiness
from search.services.spaces import space_for
from search.views import known_client_id


def document_vectors_fragment(request, pk):
    document = get_object_or_404(visible_documents(request.user), pk=pk)
    space = space_for(request.user, known_client_id(request))
    return render(request, "search/_document_vectors.html",
                  {"document": document, "embedding": document_vectors(document, space)})


def readiness_fragment(request):
    state = readiness(request.user, space_for(request.user, known_client_id(request)))
    return render(request, "search/_readiness.html", {"readiness": state})
