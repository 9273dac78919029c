"""A migration's backfill and index build, run step by step in this process as a
worker would (issue 11 items 2 and 3): every chunk embedded once, resumed after a
kill between batches without duplicates or gaps, documents added and deleted
during the backfill, cancel removing what was built, an invalid index detected
and rebuilt, a failed build leaving nothing half-built, the stall watchdog."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from documents.models import Chunk, Document
from search.migration_models import MigrationState as S, MigrationStep, SpaceMigration
from search.models import ChunkEmbedding, SpaceStatus
from search.services import migration_backfill, migration_watchdog, space_index, space_migration as sm
from search.services.migration_worker import run_step
from tests.migration_helpers import (chunk_ids, drive, english, ready_document, tiny_pair,  # noqa: F401
                                     vector_chunk_ids, world)

pytestmark = pytest.mark.django_db(transaction=True)


def index_def(space) -> str | None:
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [space.index_name])
        row = cur.fetchone()
    return row[0] if row else None


def test_the_backfill_embeds_every_chunk_once_then_builds_the_index(world):
    source, target, _ = world
    migration = sm.start(target, by="tester")
    assert index_def(target) is not None  # registered with its (empty) index
    outcome = run_step(migration.pk, migration.step_token)
    migration.refresh_from_db()
    assert migration.state == S.BACKFILLING and 0 < migration.cursor, (outcome, migration.error)
    assert index_def(target) is None, "rows are loaded before the target's index exists"
    migration = drive(migration)
    assert migration.state == S.EVALUATING, migration.error
    vectors = vector_chunk_ids(target)
    assert sorted(vectors) == sorted(chunk_ids()), "every chunk once, nothing else"
    assert migration.done_chunks == migration.total_chunks == len(vectors) == migration.embedded_chunks
    assert migration.chunks_per_second and migration.eta_seconds == 0
    assert "hnsw" in index_def(target) and "vector(32)" in index_def(target)
    assert space_index.index_state(target) == space_index.VALID
    assert [e["to"] for e in migration.history if e["from"] != e["to"]] == ["planned", "backfilling", "indexing",
                                                                            "evaluating"]
    assert migration.started_at <= migration.backfilled_at <= migration.indexed_at
    assert ChunkEmbedding.objects.filter(space=source).count() == len(vectors), "the source is untouched"


def test_the_backfill_encodes_with_the_configured_threads_and_gives_them_back(world, settings, monkeypatch):
    import torch

    source, target, _ = world
    settings.MIGRATION_ENCODE_THREADS = 1
    before = 2
    torch.set_num_threads(before)
    seen = []
    encode = migration_backfill.encode
    monkeypatch.setattr(migration_backfill, "encode",
                        lambda space, chunks: seen.append(torch.get_num_threads()) or encode(space, chunks))
    migration = drive(sm.start(target, by="tester"))
    assert migration.state == S.EVALUATING, migration.error
    assert seen and set(seen) == {1}, "a core is left to the searches while the backfill encodes"
    assert torch.get_num_threads() == before, "the worker's other work gets its threads back"


class Killed(BaseException):
    """The worker process dies (not an error the step could catch)."""


def test_a_step_killed_between_batches_resumes_from_the_cursor(world, monkeypatch):
    source, target, _ = world
    migration = sm.start(target, by="tester")
    encode, calls = migration_backfill.encode, []

    def dies_on_the_fourth_batch(space, chunks):
        calls.append([c.pk for c in chunks])
        if len(calls) == 4:
            raise Killed()
        return encode(space, chunks)

    monkeypatch.setattr(migration_backfill, "encode", dies_on_the_fourth_batch)
    with pytest.raises(Killed):
        drive(migration)
    migration.refresh_from_db()
    written = sorted(vector_chunk_ids(target))
    assert written == sorted(c for batch in calls[:3] for c in batch), "the three committed batches, no more"
    assert migration.cursor == max(written) and migration.done_chunks == len(written)
    # the message is delivered again (acks_late) with the same token: it goes on from the cursor
    migration = drive(migration)
    assert migration.state == S.EVALUATING
    assert sorted(vector_chunk_ids(target)) == sorted(chunk_ids())
    assert migration.embedded_chunks == len(chunk_ids()), "no chunk encoded and written twice"
    resumed_first = calls[4][0]
    assert resumed_first == calls[3][0], "the lost batch is the first one done again"


def test_documents_added_changed_and_deleted_during_the_backfill_end_up_right(world):
    source, target, docs = world
    migration = sm.start(target, by="tester")
    for _ in range(3):
        run_step(migration.pk, SpaceMigration.objects.get(pk=migration.pk).step_token)
    migration.refresh_from_db()
    behind = [d for d in docs if Chunk.objects.filter(document=d, pk__lte=migration.cursor).exists()]
    assert behind and migration.cursor < max(chunk_ids())
    gone = behind[0]
    gone_chunks = set(gone.chunks.values_list("pk", flat=True))
    Document.objects.get(pk=gone.pk).delete()
    changed = behind[-1]
    Document.objects.filter(pk=changed.pk).update(status="pending")
    from documents.services.processing import process_document

    assert process_document(changed.pk) == "ready"  # re-ingested: new chunks, the old ones go
    added = ready_document(99)
    migration = drive(migration)
    assert migration.state == S.EVALUATING
    vectors = vector_chunk_ids(target)
    assert sorted(vectors) == sorted(chunk_ids())
    assert not gone_chunks & set(vectors)
    assert set(added.chunks.values_list("pk", flat=True)) <= set(vectors)


def test_a_document_added_after_the_walk_is_dual_written_to_the_target(world):
    from search.services import embedding, spaces

    source, target, _ = world
    migration = drive(sm.start(target, by="tester"))
    assert migration.state == S.EVALUATING
    target.refresh_from_db()
    assert target in spaces.serving_spaces(), "the ingestion hand-off queues the target too"
    late = ready_document(77)
    for space in spaces.serving_spaces():  # what the embed worker does with the queued tasks
        embedding.embed_document(space, late.pk)
    assert set(late.chunks.values_list("pk", flat=True)) <= set(vector_chunk_ids(target))


def test_cancel_midway_removes_the_target_s_vectors_and_index(world):
    source, target, _ = world
    migration = drive(sm.start(target, by="tester"))  # indexed, evaluating
    assert index_def(target) and vector_chunk_ids(target)
    sm.request_cancel(migration, by="tester", reason="wrong model")
    migration = drive(migration)
    target.refresh_from_db()
    assert migration.state == S.CANCELLED and migration.finished_at
    assert vector_chunk_ids(target) == [] and index_def(target) is None
    assert target.status == SpaceStatus.READY, "the target goes back to its previous status"
    assert [e["step"] for e in migration.history[-2:]] == [MigrationStep.CANCEL_REQUESTED, MigrationStep.CANCELLED]


def test_cancel_during_the_backfill_stops_between_batches(world):
    source, target, _ = world
    migration = sm.start(target, by="tester")
    for _ in range(2):
        run_step(migration.pk, SpaceMigration.objects.get(pk=migration.pk).step_token)
    assert vector_chunk_ids(target)
    sm.request_cancel(migration, by="tester", reason="stop")
    migration = drive(migration)
    assert migration.state == S.CANCELLED
    assert vector_chunk_ids(target) == [] and index_def(target) is None
    assert ChunkEmbedding.objects.filter(space=source).count() == len(chunk_ids())


def _backfilled(target):
    migration = sm.start(target, by="tester")
    while SpaceMigration.objects.get(pk=migration.pk).state != S.INDEXING:
        run_step(migration.pk, SpaceMigration.objects.get(pk=migration.pk).step_token)
    migration.refresh_from_db()
    return migration


def test_an_invalid_index_left_by_a_failed_build_is_dropped_and_rebuilt(world):
    source, target, _ = world
    migration = _backfilled(target)
    # A concurrent build that fails leaves an INVALID index under the name (here: a
    # unique build over duplicate values, under the target index's name).
    with pytest.raises(Exception):
        with connection.cursor() as cur:
            cur.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {target.index_name} ON search_chunkembedding "
                        f"(space_id) WHERE space_id = {target.pk}")
    assert space_index.index_state(target) == space_index.INVALID
    migration = drive(migration)
    assert migration.state == S.EVALUATING
    assert space_index.index_state(target) == space_index.VALID and "hnsw" in index_def(target)
    assert MigrationStep.INVALID_INDEX_DROPPED in [e["step"] for e in migration.history]


def test_the_index_build_uses_the_configured_parallel_workers_and_then_resets_the_session(world, settings):
    source, target, _ = world
    _backfilled(target)
    with connection.cursor() as cur:
        cur.execute("SHOW max_parallel_maintenance_workers")
        server_default = cur.fetchone()[0]
    settings.MIGRATION_INDEX_WORKERS = 3
    seen = []

    def during_build(pid):
        if pid is not None:
            with connection.cursor() as cur:
                cur.execute("SHOW max_parallel_maintenance_workers")
                seen.append(cur.fetchone()[0])

    space_index.build(target, on_start=during_build)
    assert seen == ["3"]
    assert space_index.index_state(target) == space_index.VALID
    with connection.cursor() as cur:  # the worker's connection serves other tasks afterwards
        cur.execute("SHOW max_parallel_maintenance_workers")
        assert cur.fetchone()[0] == server_default


def test_a_failed_build_fails_the_migration_and_leaves_no_invalid_index(world):
    source, target, _ = world
    migration = _backfilled(target)
    chunk = Chunk.objects.exclude(embeddings__space=target).first() or Chunk.objects.first()
    ChunkEmbedding.objects.filter(space=target, chunk=chunk).delete()
    with connection.cursor() as cur:  # a vector of the wrong dimension: the build cannot cast it
        cur.execute("INSERT INTO search_chunkembedding (space_id, chunk_id, document_id, embedding) "
                    "VALUES (%s, %s, %s, '[1,2,3]')", [target.pk, chunk.pk, chunk.document_id])
    migration = drive(migration)
    target.refresh_from_db()
    assert migration.state == S.FAILED and "dimensions" in migration.error
    assert space_index.index_state(target) == space_index.MISSING
    assert target.status == SpaceStatus.READY and target.traffic_share == 0


def test_the_watchdog_queues_a_stalled_migration_again_with_a_new_token(world, settings):
    source, target, _ = world
    settings.RECOVERY_REQUEUE_SECONDS = 1
    migration = sm.start(target, by="tester")
    run_step(migration.pk, migration.step_token)
    old = SpaceMigration.objects.get(pk=migration.pk)
    assert old.state == S.BACKFILLING
    assert migration_watchdog.recover_migrations() == [], "a fresh heartbeat is not a stall"
    long_ago = timezone.now() - timedelta(minutes=20)
    SpaceMigration.objects.filter(pk=migration.pk).update(heartbeat_at=long_ago, queued_at=long_ago)
    assert migration_watchdog.recover_migrations() == [migration.pk]
    new = SpaceMigration.objects.get(pk=migration.pk)
    assert new.step_token != old.step_token and new.stalls == 1
    assert new.history[-1]["step"] == MigrationStep.STALLED
    assert run_step(migration.pk, old.step_token) == "superseded", "the lost step's message stops"
    drive(new)
    assert SpaceMigration.objects.get(pk=migration.pk).stalls == 0


def test_a_migration_that_keeps_stalling_gives_up(world, settings):
    source, target, _ = world
    migration = sm.start(target, by="tester")
    SpaceMigration.objects.filter(pk=migration.pk).update(stalls=settings.MIGRATION_MAX_STALLS + 1)
    migration = drive(migration)
    assert migration.state == S.FAILED and migration.status_message == MigrationStep.GAVE_UP


def test_the_watchdog_is_scheduled_and_the_steps_go_to_the_embed_queue(settings):
    from search.tasks import recover_stalled_migrations_task, space_migration_step_task

    schedule = settings.CELERY_BEAT_SCHEDULE["recover-stalled-space-migrations"]
    assert schedule["task"] == recover_stalled_migrations_task.name
    assert settings.CELERY_TASK_ROUTES[space_migration_step_task.name]["queue"] == settings.TASK_QUEUES["embed"]
