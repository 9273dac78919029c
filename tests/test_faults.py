"""Faults are normal: a database outage, a broker outage, a killed worker and a
second beat, each against the real embedded servers and real worker processes.
Each test asserts what a user would notice: the document ends ready with all its
vectors within a bounded time after recovery, nothing lost, nothing doubled —
and no 500 on the way."""
import io
import os
import re
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Count
from django.urls import reverse

from documents.models import Chunk, Document, DocumentStatus
from documents.services.heartbeat import holder_pid
from documents.services.intake import WAITING_FOR_QUEUE, UploadMetadata, register_upload
from portal.advisory import EMBED_BASE, holder_pids
from search.models import ChunkEmbedding
from search.services import spaces
from tests.conftest import _purge_queue, wait_until
from tests.faults import FAST, BeatProcess, long_markdown, postgres_down, redis_down, wait_for_log


def upload(data: bytes, name: str) -> Document:
    return register_upload(io.BytesIO(data), name, UploadMetadata(access_level=0)).document


def fully_embedded(doc: Document, space) -> bool:
    doc = Document.objects.filter(pk=doc.pk).first()
    if doc is None or doc.status != DocumentStatus.READY:
        return False
    chunks = Chunk.objects.filter(document=doc).count()
    return chunks > 0 and ChunkEmbedding.objects.filter(space=space, document=doc).count() == chunks


def assert_nothing_doubled(docs, space=None) -> None:
    for doc in docs:
        ordinals = list(Chunk.objects.filter(document=doc).order_by("ordinal").values_list("ordinal", flat=True))
        assert ordinals == list(range(len(ordinals))), f"{doc.code}: chunks written twice or lost"
        if space is not None:
            per_chunk = (ChunkEmbedding.objects.filter(space=space, document=doc).values("chunk")
                         .annotate(n=Count("id")).filter(n__gt=1))
            assert not per_chunk.exists()
            assert ChunkEmbedding.objects.filter(space=space, document=doc).count() == len(ordinals)


# --- the database goes away -------------------------------------------------

def start_beat(tmp_path, **env) -> BeatProcess:
    return BeatProcess({"PORTAL_DATABASE_NAME": connection.settings_dict["NAME"],
                        **{k: str(v) for k, v in env.items()}}, tmp_path / "beat.log").start()


@pytest.mark.worker
def test_documents_queued_during_a_database_outage_end_ready_with_all_their_vectors(
        start_worker, minilm_path, tmp_path):
    """Tasks retry through the outage; what falls between two commits (a document ready
    whose embedding was never queued) the beat's sweep finds."""
    space = spaces.activate(spaces.create_space("active", minilm_path))
    worker = start_worker(**FAST)
    beat = start_beat(tmp_path, **FAST)
    try:
        warm = upload(long_markdown(2, 0), "warm-up.md")
        wait_until(lambda: fully_embedded(warm, space), 180, 0.2, message="the worker to start and load its model")

        batch = [upload(long_markdown(5, seed), f"batch-{seed}.md") for seed in range(1, 5)]
        unfinished = sum(not fully_embedded(doc, space) for doc in batch)
        with postgres_down():
            time.sleep(8)  # queued and running tasks meet the outage
            # a task busy encoding on a loaded machine may take longer to reach the database
            # (the embedded server's own engine names the outage EmbeddedDatabaseNotRunning,
            # an OperationalError; a server elsewhere gives OperationalError itself)
            wait_until(lambda: re.search(r"(OperationalError|DatabaseNotRunning): .*; retry \d+ in",
                                         worker.log_path.read_text(errors="replace")), 60, 0.5,
                       message="a task to meet the outage and retry")
        assert unfinished, "the worker finished the batch before the outage: the test proved nothing"

        wait_until(lambda: all(fully_embedded(doc, space) for doc in batch), 90, 0.5,
                   message="every document of the batch to be ready with all its vectors after the outage")
        assert Document.objects.count() == len(batch) + 1
        assert_nothing_doubled(batch, space)
    finally:
        beat.stop()


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_answers_503_with_retry_after_json_under_api(django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_user("lan.hr", password="pw")
    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(user)  # its session and user are looked up in the middleware
    anonymous = Client(raise_request_exception=False)
    assert anonymous.get("/api/v1/documents/").status_code == 200

    with postgres_down():
        for browser in (anonymous, signed_in):
            api = browser.get("/api/v1/documents/")
            assert api.status_code == 503, api.content[:300]
            assert api["Content-Type"] == "application/json" and "detail" in api.json()
            assert int(api["Retry-After"]) > 0
            page = browser.get(reverse("document-list"))
            assert page.status_code == 503
            assert page["Content-Type"].startswith("text/html") and int(page["Retry-After"]) > 0
            assert b"Server Error" not in page.content

    assert anonymous.get("/api/v1/documents/").status_code == 200
    assert signed_in.get(reverse("document-list")).status_code == 200


# --- the broker goes away ---------------------------------------------------

@pytest.mark.worker
def test_uploads_while_the_broker_is_down_are_stored_told_and_processed_once_it_is_back(
        start_worker, client, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", password="pw")
    client.force_login(admin)
    with redis_down():
        page = client.post(reverse("document-upload"), {
            "file": SimpleUploadedFile("form.md", long_markdown(3, 11)), "document_type": "policy",
            "access_level": 1, "language": "vi"}, follow=True)
        assert page.status_code == 200
        form_doc = Document.objects.get(original_filename="form.md")
        assert page.redirect_chain[-1][0] == reverse("document-detail", args=[form_doc.pk])
        api = client.post("/api/v1/documents/", {"file": SimpleUploadedFile("api.md", long_markdown(3, 12)),
                                                 "access_level": 1})
        assert api.status_code == 201, api.content[:300]
        assert (api.json()["status"], api.json()["step"]) == ("pending", WAITING_FOR_QUEUE)
    for doc in Document.objects.all():
        assert (doc.status, doc.queued_at, doc.status_message) == ("pending", None, WAITING_FOR_QUEUE)
        assert doc.source_file.open("rb").read()  # stored, not lost

    start_worker(**FAST)  # the broker is back; the worker's first sweep queues what was never queued
    wait_until(lambda: Document.objects.filter(status=DocumentStatus.READY).count() == 2, 90, 0.2,
               message="both uploads to be processed after the broker came back")
    assert_nothing_doubled(Document.objects.all())


# --- a worker dies ----------------------------------------------------------

def big_upload(seed: int) -> Document:
    """About 600 KB of text: several seconds of processing, time to kill its worker."""
    return upload(long_markdown(600, seed), f"big-{seed}.md")


@pytest.mark.worker
def test_a_killed_pool_child_is_replaced_and_its_document_taken_over_at_once(start_worker):
    """The redelivered task must not skip the document because its heartbeat is fresh."""
    start_worker(args=("--pool=prefork", "--concurrency=1"), **FAST)
    doc = big_upload(1)
    held = wait_until(lambda: Document.objects.filter(pk=doc.pk, status=DocumentStatus.PROCESSING)
                      .exclude(holder="").first(), 120, 0.05, message="processing to start")
    os.kill(holder_pid(held.holder), signal.SIGKILL)  # the pool child, not the worker

    final = wait_until(lambda: Document.objects.filter(pk=doc.pk, status__in=["ready", "failed"]).first(), 60,
                       0.2, message="the document to be taken over (the lease is 60 s: not by waiting for it)")
    assert final.status == DocumentStatus.READY, final.error
    assert final.attempts == 2
    assert_nothing_doubled([final])


@pytest.mark.worker
def test_a_killed_worker_s_embedding_is_finished_by_another_worker_within_a_minute(
        start_worker, minilm_path, tmp_path):
    """The other worker is already running; redelivery would take the visibility timeout
    (an hour here): the beat's sweep sees the embedding's lock gone instead."""
    space = spaces.activate(spaces.create_space("active", minilm_path))
    env = {**FAST, "PORTAL_TASK_VISIBILITY_TIMEOUT": 3600, "PORTAL_CHUNK_MAX_TOKENS": 32,
           "PORTAL_CHUNK_OVERLAP_TOKENS": 4, "PORTAL_EMBED_TASK_CHUNKS": 100000}
    workers = {w.proc.pid: w for w in (start_worker(**env), start_worker(**env))}
    beat = start_beat(tmp_path, **env)
    try:
        doc = upload(long_markdown(10, 5), "many-chunks.md")  # ~200 chunks of at most 32 tokens
        total = wait_until(lambda: Document.objects.filter(pk=doc.pk, status=DocumentStatus.READY).exists()
                           and Chunk.objects.filter(document=doc).count(), 180, 0.1, message="chunks")
        pids = wait_until(lambda: ChunkEmbedding.objects.filter(document=doc).exists()
                          and holder_pids(EMBED_BASE + space.pk, doc.pk), 120, 0.02, message="embedding to start")
        workers[pids[0]].kill()
        assert ChunkEmbedding.objects.filter(document=doc).count() < total, "killed after the embedding was done"

        # The sweep notices within seconds; the rest is loading the model and embedding on a busy machine.
        wait_until(lambda: fully_embedded(doc, space), 90, 0.2,
                   message="the other worker to finish the vectors of the killed worker")
        assert_nothing_doubled([doc], space)
    finally:
        beat.stop()


# --- two beats --------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_only_one_of_two_beats_schedules_and_the_standby_takes_over(tmp_path):
    env = {"PORTAL_DATABASE_NAME": connection.settings_dict["NAME"], "PORTAL_RECOVERY_SWEEP_SECONDS": "1"}
    first = BeatProcess(env, tmp_path / "beat1.log").start()
    second = None
    try:
        wait_for_log(first, "holding the beat lock", 60)
        second = BeatProcess(env, tmp_path / "beat2.log").start()
        wait_for_log(second, "standing by", 60)
        before = first.sent()
        # 3 s more: the second beat's own entries (every 1 s) come due several times meanwhile
        wait_until(lambda: first.sent() >= before + 6, 30, 0.2, message="the first beat to go on sending")
        assert second.sent() == 0, second.log()[-2000:]

        first.kill()  # the standby takes over within a few seconds of the leader's death
        wait_until(lambda: second.sent() > 0, 30, 0.2, message="the standby beat to take over")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        _purge_queue()


# --- limits -----------------------------------------------------------------

@pytest.mark.worker
def test_a_document_over_the_time_limit_fails_with_the_limit_in_its_reason(start_worker, settings, monkeypatch):
    from documents.tasks import process_document_task

    # The limits travel in the message: the process that queues the task stamps them.
    settings.INGEST_TIME_LIMIT = 2
    monkeypatch.setattr(process_document_task, "soft_time_limit", 2)
    monkeypatch.setattr(process_document_task, "time_limit", 32)
    monkeypatch.setattr(process_document_task, "_exec_options", None)
    start_worker(args=("--pool=prefork", "--concurrency=1"), PORTAL_INGEST_TIME_LIMIT=2, **FAST)
    doc = big_upload(2)
    final = wait_until(lambda: Document.objects.filter(pk=doc.pk, status__in=["ready", "failed"]).first(), 120,
                       0.2, message="the document to end")
    assert final.status == DocumentStatus.FAILED
    assert "took longer than the limit of 2 s" in final.error
    assert not Chunk.objects.filter(document=doc).exists()

    # the same worker process goes on with the next document (the limit broke nothing in it)
    small = upload(long_markdown(2, 3), "small.md")
    final = wait_until(lambda: Document.objects.filter(pk=small.pk, status__in=["ready", "failed"]).first(), 60,
                       0.2, message="the next document")
    assert final.status == DocumentStatus.READY, final.error
