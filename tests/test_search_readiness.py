"""The search app's live fragments: a document's vector progress (moved out of
documents, issue 9 item 18) and the "search is still being prepared" banner
(item 23). Both count only what the visitor may see."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from documents.models import Chunk, Document, DocumentStatus
from search.models import ChunkEmbedding, EmbeddingSpace, SpaceStatus
from search.services.readiness import readiness
from tests import factories as f


@pytest.fixture
def space():
    return EmbeddingSpace.objects.create(name="ready-test", model_path="/nowhere", dimension=3, max_seq_length=8,
                                         status=SpaceStatus.ACTIVE)


def _chunks(doc, n):
    return [Chunk.objects.create(document=doc, ordinal=i, text=f"đoạn {i}", token_count=2, char_start=0,
                                 char_end=5) for i in range(n)]


def _vectors(space, chunks):
    for c in chunks:
        ChunkEmbedding.objects.create(space=space, chunk=c, document_id=c.document_id, embedding=[0.1, 0.2, 0.3])


def _processed(doc, ago: timedelta):
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.READY, processed_at=timezone.now() - ago)


def test_document_page_loads_the_vector_fragment_from_search(db, space):
    doc = f.document(0)
    _processed(doc, timedelta(minutes=1))
    chunks = _chunks(doc, 3)
    _vectors(space, chunks[:1])
    page = Client().get(f"/documents/{doc.pk}/").content.decode()
    assert f'hx-get="/search/documents/{doc.pk}/vectors/"' in page
    fragment = Client().get(f"/search/documents/{doc.pk}/vectors/").content.decode()
    assert "1/3" in fragment and "every 2s" in fragment  # still arriving: keeps polling

    _vectors(space, chunks[1:])
    done = Client().get(f"/search/documents/{doc.pk}/vectors/").content.decode()
    assert "1/3" not in done and "3/3" not in done and "hx-get" not in done  # complete: shows and polls nothing


def test_vector_fragment_stops_polling_for_old_documents(db, space):
    doc = f.document(0)
    _processed(doc, timedelta(hours=2))
    _vectors(space, _chunks(doc, 2)[:1])
    fragment = Client().get(f"/search/documents/{doc.pk}/vectors/").content.decode()
    assert "1/2" in fragment and "hx-get" not in fragment


def test_processing_document_status_fragment_polls_itself_only(db, space):
    doc = f.document(0, status=DocumentStatus.PROCESSING)
    fragment = Client().get(f"/documents/{doc.pk}/status/").content.decode()
    assert f'hx-get="/documents/{doc.pk}/status/?since=processing"' in fragment and "/vectors/" not in fragment


def test_vector_fragment_of_a_hidden_document_is_404(db, space):
    hidden = f.document(3)
    _processed(hidden, timedelta(minutes=1))
    _vectors(space, _chunks(hidden, 2)[:1])
    assert Client().get(f"/search/documents/{hidden.pk}/vectors/").status_code == 404
    assert Client().get("/search/documents/999999/vectors/").status_code == 404


def test_banner_counts_processing_and_vectorless_documents_the_visitor_may_see(db, space):
    public_pending = f.document(0, status=DocumentStatus.PENDING)
    f.document(0, status=DocumentStatus.PROCESSING)
    f.document(3, status=DocumentStatus.PENDING)  # hidden from anonymous visitors
    waiting = f.document(0)
    _processed(waiting, timedelta(minutes=2))
    _vectors(space, _chunks(waiting, 3)[:2])
    hidden_waiting = f.document(3)
    _processed(hidden_waiting, timedelta(minutes=2))
    _chunks(hidden_waiting, 2)
    old = f.document(0)
    _processed(old, timedelta(hours=3))
    _chunks(old, 2)  # vectors never came: left to the recovery sweep, not announced
    complete = f.document(0)
    _processed(complete, timedelta(minutes=2))
    _vectors(space, _chunks(complete, 2))

    from django.contrib.auth.models import AnonymousUser

    state = readiness(AnonymousUser(), space)
    assert (state.processing, state.awaiting_vectors) == (2, 1)
    admin = f.user("boss", is_superuser=True)
    assert (readiness(admin, space).processing, readiness(admin, space).awaiting_vectors) == (3, 2)

    html = Client().get("/search/readiness/").content.decode()
    assert "Đang xử lý 2 tài liệu" in html and "Đang tạo vector cho 1 tài liệu" in html
    assert 'hx-trigger="every 5s"' in html

    Document.objects.filter(pk=public_pending.pk).update(status=DocumentStatus.FAILED)
    assert readiness(AnonymousUser(), space).processing == 1


def test_banner_disappears_when_search_is_ready(db, space):
    doc = f.document(0)
    _processed(doc, timedelta(minutes=1))
    _vectors(space, _chunks(doc, 2))
    html = Client().get("/search/readiness/").content.decode()
    assert "Đang" not in html and "hx-get" not in html


@pytest.mark.parametrize("page", ["/", "/search/"])
def test_home_and_search_pages_load_the_banner(db, page):
    assert 'hx-get="/search/readiness/"' in Client().get(page).content.decode()
