"""Migrations on real Celery workers (issue 11 item 2). The worker is held at a
known point of the backfill by a row lock on one document (its batch waits to
share-lock that document), so "during the backfill" is certain, not a race:
documents added, re-ingested and deleted meanwhile end up right in both spaces;
a worker killed there is replaced and the migration resumes from its cursor
without duplicates or gaps; a cancel sent meanwhile stops it and removes what it
built."""
from __future__ import annotations

import json
import threading

import pytest
from django.db import connections

from documents.models import Document
from documents.services.processing import process_document
from search.migration_models import MigrationState as S, MigrationStep
from search.models import ChunkEmbedding, SpaceStatus
from search.services import space_index, space_migration as sm
from tests import factories as f
from tests.conftest import wait_until
from tests.migration_helpers import (ENV, chunk_ids, document_locked, english, every_chunk_in,  # noqa: F401
                                     held_before, ready_document, row, text_for, tiny_pair, vector_chunk_ids,
                                     world)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_documents_changed_during_the_backfill_end_up_in_both_spaces(start_worker, world):
    source, target, docs = world
    worker = start_worker(**ENV)
    with document_locked(docs[3]):
        migration = sm.start(target, by="tester")
        held_before(docs[3], migration)
        assert row(migration).state == S.BACKFILLING
        gone = set(docs[0].chunks.values_list("pk", flat=True))
        Document.objects.get(pk=docs[0].pk).delete()
        Document.objects.filter(pk=docs[1].pk).update(status="pending")
        assert process_document(docs[1].pk) == "ready"  # re-ingested: its chunks are new
        added = ready_document(50)
    wait_until(lambda: row(migration).state == S.EVALUATING, 120, 0.2, message="the index to be built")
    wait_until(lambda: every_chunk_in(target) and every_chunk_in(source), 60, 0.2,
               message=f"every chunk in both spaces\n{worker.log()}")
    assert not gone & set(vector_chunk_ids(target))
    assert set(added.chunks.values_list("pk", flat=True)) <= set(vector_chunk_ids(target))
    assert space_index.index_state(target) == space_index.VALID
    # After the walk only the dual-write can bring a new document (processed here or by
    # the worker, whichever takes it first).
    late = f.document(1, text=text_for(60), status="pending", code="MIG60")
    process_document(late.pk)
    wait_until(lambda: Document.objects.get(pk=late.pk).status == "ready", 60, 0.2, message="the late document")
    wait_until(lambda: every_chunk_in(target), 60, 0.2, message="the late document in the target")
    assert set(late.chunks.values_list("pk", flat=True)) <= set(vector_chunk_ids(target))


def test_a_killed_worker_s_backfill_resumes_from_its_cursor_on_another_worker(start_worker, world):
    source, target, docs = world
    first = start_worker(**ENV)
    with document_locked(docs[3]):
        migration = sm.start(target, by="tester")
        cursor = held_before(docs[3], migration)
        first.kill()
    done_before = set(vector_chunk_ids(target))
    assert done_before and max(done_before) == cursor
    second = start_worker(**ENV)  # its start-up sweep finds the migration (lock gone, heartbeat stale)
    wait_until(lambda: row(migration).state == S.EVALUATING, 120, 0.2,
               message=f"the migration to go on\n{second.log()}")
    final = row(migration)
    assert every_chunk_in(target)
    assert final.embedded_chunks == len(chunk_ids()), "a chunk encoded twice, or one skipped"
    assert MigrationStep.STALLED in [e["step"] for e in final.history]
    assert space_index.index_state(target) == space_index.VALID


def test_a_cancel_during_the_backfill_stops_it_and_removes_what_it_built(start_worker, world):
    source, target, docs = world
    start_worker(**ENV)
    from django.contrib.auth.models import Permission

    staff = f.user("ops", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_spacemigration"))
    from django.test import Client

    client = Client()
    client.force_login(staff)
    answers = []
    with document_locked(docs[3]):
        migration = sm.start(target, by="tester")
        held_before(docs[3], migration)
        # The worker's batch holds the migration row until the document is free: the
        # cancel waits for it in a thread of its own.
        def ask():
            try:
                answers.append(client.post(f"/api/v1/migrations/{migration.pk}/cancel/",
                                           json.dumps({"reason": "wrong model"}), content_type="application/json"))
            finally:
                connections.close_all()

        asking = threading.Thread(target=ask)
        asking.start()
        asking.join(0.5)
    asking.join(30)
    assert answers and answers[0].status_code == 200, answers[0].content if answers else "no answer"
    wait_until(lambda: row(migration).state == S.CANCELLED, 60, 0.2, message="the cancel to be carried out")
    target.refresh_from_db()
    assert not ChunkEmbedding.objects.filter(space=target).exists()
    assert space_index.index_state(target) == space_index.MISSING
    assert target.status == SpaceStatus.READY
    assert ChunkEmbedding.objects.filter(space=source).count() == len(chunk_ids())
    ended = row(migration)
    assert ended.done_chunks < ended.total_chunks, "it stopped midway"
