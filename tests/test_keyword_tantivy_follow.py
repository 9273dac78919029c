"""The tantivy index kept current without anyone calling sync by hand: the sync
task queued when a document's chunks commit (a real Celery worker, no beat: a
document is findable by keyword within a few seconds of becoming ready), and
`manage.py keyword_index follow` on a machine without a worker (bounded here
by --seconds)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from documents.models import Chunk, Document
from documents.services.intake import UploadMetadata, register_upload
from search.services.filters import search_scope
from search.services.keyword_engine import searching, store, writer
from tests.conftest import ROOT, wait_until

FINDABLE_WITHIN_S = 8  # "a few seconds", with slack for a loaded 2-core machine
TEXT = "# Quy trình cấp đồng phục\n\nNhân viên kho nhận đồng phục bảo hộ mỗi quý tại phòng hành chính.\n"


@pytest.fixture
def tantivy_env(settings, tmp_path):
    settings.KEYWORD_ENGINE = "tantivy"
    settings.KEYWORD_INDEX_DIR = tmp_path / "keyword-index"
    return {"PORTAL_KEYWORD_ENGINE": "tantivy", "PORTAL_KEYWORD_INDEX_DIR": str(settings.KEYWORD_INDEX_DIR)}


def indexed_documents(query: str) -> set[int]:
    index = store.reader()
    if index is None:
        return set()
    ranked = searching.ranked_in_index(index, query, search_scope(AnonymousUser()).key_filter, 100)
    return set(Chunk.objects.filter(pk__in=[c for c, _ in ranked]).values_list("document_id", flat=True))


@pytest.mark.worker
def test_a_document_is_findable_within_seconds_of_becoming_ready(start_worker, tantivy_env):
    writer.rebuild()  # this machine's copy exists; from here on only the queued sync feeds it (no beat)
    worker = start_worker(**tantivy_env, PORTAL_KEYWORD_SYNC_SECONDS="3600")
    doc = register_upload(io.BytesIO(TEXT.encode()), "dongphuc.md",
                          UploadMetadata(code="HC_DP_2026_001", access_level=0)).document
    wait_until(lambda: Document.objects.get(pk=doc.pk).status == "ready", 120, 0.1, message="the document ready")
    ready_at = time.monotonic()
    try:
        wait_until(lambda: doc.pk in indexed_documents("đồng phục bảo hộ"), FINDABLE_WITHIN_S, 0.1,
                   message="the document in the tantivy index")
    except AssertionError:
        raise AssertionError(worker.log())
    print(f"findable {time.monotonic() - ready_at:.2f}s after ready")
    assert "sync_keyword_index_task" in worker.log()


@pytest.mark.django_db(transaction=True)
def test_follow_applies_the_log_until_its_time_is_up(tantivy_env, tmp_path):
    from tests.test_keyword_tantivy_writer import make_doc

    before = make_doc("bảng chấm công tháng")
    writer.rebuild()
    env = {**os.environ, **tantivy_env, "PORTAL_DATABASE_NAME": connection.settings_dict["NAME"],
           "PORTAL_KEYWORD_SYNC_SECONDS": "0.2"}
    log = tmp_path / "follow.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "keyword_index", "follow", "--seconds", "15"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "applying the change log" in log.read_text(), 60, 0.1, message="follow started")
        doc = make_doc("lịch trực kho cuối tuần")
        wait_until(lambda: doc.pk in indexed_documents("trực kho"), 10, 0.1, message="the new document indexed")
        Document.objects.filter(pk=before.pk).update(access_level=3)  # an access change follows too
        wait_until(lambda: before.pk not in indexed_documents("chấm công"), 10, 0.1, message="the access change")
        assert proc.wait(timeout=30) == 0  # it stops by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "for 15s" in text and "entries" in text, text
