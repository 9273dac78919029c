"""The recovery sweeps, the outage retry policy and the queues, without workers:
what is found lost, what is left alone, and that nothing is queued twice."""
import io
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from documents.models import Document, DocumentStatus
from documents.services import processing, recovery
from documents.services.intake import UploadMetadata, register_upload
from portal import tasking
from portal.advisory import EMBED_BASE, INGEST, SessionLock
from search.models import ChunkEmbedding
from search.services import embedding, keyword_index, spaces, vector_recovery
from tests.faults import long_markdown

pytestmark = pytest.mark.django_db


def upload(seed: int, **changes) -> Document:
    doc = register_upload(io.BytesIO(long_markdown(2, seed)), f"d{seed}.md", UploadMetadata(access_level=0)).document
    if changes:
        Document.objects.filter(pk=doc.pk).update(**changes)
    return doc


@pytest.fixture
def ingest_queue(monkeypatch):
    """Pretend the ingest queue holds this many messages."""
    length = {"n": 0}
    monkeypatch.setattr(recovery, "queue_length", lambda name: length["n"])
    return length


def test_the_ingestion_sweep_finds_lost_documents_and_leaves_the_rest(ingest_queue):
    now = timezone.now()
    old = now - timedelta(hours=1)
    never_queued = upload(1, queued_at=None)  # the broker was down at upload
    waiting = upload(2, queued_at=now - timedelta(seconds=5))  # just queued: left alone
    lost_idle = upload(3, queued_at=now - timedelta(minutes=2))  # queued, but nothing waits in the queue
    dead_holder = upload(4, status=DocumentStatus.PROCESSING, holder="w:1:a", queued_at=old,
                         heartbeat_at=now - timedelta(seconds=30))  # its worker's lock is gone
    live_holder = upload(5, status=DocumentStatus.PROCESSING, holder="w:2:b", queued_at=old,
                         heartbeat_at=now - timedelta(seconds=30))  # lock held: alive, if slow to beat
    vanished = upload(6, status=DocumentStatus.PROCESSING, holder="w:3:c", queued_at=old,
                      heartbeat_at=now - timedelta(hours=2))  # lock lingers, no heartbeat for the lease
    fresh = upload(7, status=DocumentStatus.PROCESSING, holder="w:4:d", queued_at=old,
                   heartbeat_at=now)  # between two heartbeats
    upload(8, status=DocumentStatus.READY, queued_at=None)
    with SessionLock(INGEST, live_holder.pk) as live, SessionLock(INGEST, vanished.pk) as lingering:
        assert live.try_acquire() and lingering.try_acquire()
        ingest_queue["n"] = 5  # a busy queue: waiting documents may be in it
        assert recovery.lost_documents() == sorted([never_queued.pk, dead_holder.pk, vanished.pk])
        ingest_queue["n"] = 0  # an idle queue: a document queued a while ago was lost
        assert recovery.lost_documents() == [lost_idle.pk]  # the others were marked queued just now
    assert Document.objects.get(pk=waiting.pk).queued_at == now - timedelta(seconds=5)
    assert fresh.pk not in recovery.lost_documents()


def test_a_document_lost_behind_a_backlog_is_queued_again_after_the_requeue_time(ingest_queue, settings):
    ingest_queue["n"] = 1000
    behind = upload(1, queued_at=timezone.now() - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS + 5))
    upload(2, queued_at=timezone.now() - timedelta(seconds=settings.RECOVERY_REQUEUE_SECONDS - 60))
    assert recovery.lost_documents() == [behind.pk]


def test_the_sweep_queues_and_marks_and_a_broker_failure_leaves_it_for_the_next(ingest_queue, monkeypatch):
    from documents import tasks

    sent = []
    monkeypatch.setattr(tasks.process_document_task, "apply_async", lambda args, kwargs, **o: sent.append(args))
    doc = upload(1, queued_at=None)
    assert recovery.recover_documents() == [doc.pk] and sent == [(doc.pk,)]
    assert Document.objects.get(pk=doc.pk).queued_at is not None
    assert recovery.recover_documents() == []  # marked: a second sweep does not queue it again

    def broker_down(*a, **kw):
        raise OperationalError("Error 2 connecting to redis.sock")

    monkeypatch.setattr(tasks.process_document_task, "apply_async", broker_down)
    other = upload(2, queued_at=None)
    assert recovery.recover_documents() == [other.pk]
    other.refresh_from_db()
    assert other.queued_at is None and other.status_message.startswith("Waiting for the task queue")


@pytest.fixture
def ready_doc(minilm_path):
    space = spaces.activate(spaces.create_space("active", minilm_path))
    doc = upload(1)
    assert processing.process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return space, doc


def test_the_embedding_sweep_finds_ready_documents_without_their_vectors(ready_doc, monkeypatch):
    space, doc = ready_doc
    queued = []
    monkeypatch.setattr(vector_recovery, "send", lambda task, *args, **kw: queued.append(args) or True)
    monkeypatch.setattr(vector_recovery, "queue_length", lambda name: 0)
    Document.objects.filter(pk=doc.pk).update(queued_at=timezone.now() - timedelta(minutes=5))

    with SessionLock(EMBED_BASE + space.pk, doc.pk) as writing:  # a worker is writing its vectors
        assert writing.try_acquire()
        assert vector_recovery.recover_missing_vectors() == []
    assert vector_recovery.recover_missing_vectors() == [(doc.pk, space.pk)]
    assert queued == [(doc.pk, space.pk)]
    assert vector_recovery.recover_missing_vectors() == []  # just queued: not again

    Document.objects.filter(pk=doc.pk).update(queued_at=None)
    embedding.embed_document(space, doc.pk)
    assert vector_recovery.recover_missing_vectors() == []  # complete
    ChunkEmbedding.objects.filter(document=doc, chunk=doc.chunks.first()).delete()
    assert vector_recovery.recover_missing_vectors() == [(doc.pk, space.pk)]  # one vector missing is enough


def test_the_sweep_indexes_the_keywords_of_a_ready_document_that_has_none(ready_doc):
    """Inline indexing and its queued task both lost: the sweep makes the document findable by keyword again."""
    _, doc = ready_doc
    everyone = ("SELECT id FROM documents_document", [])
    keyword_index.index_document(doc.pk)
    keyword_index.remove_document(doc.pk)
    assert keyword_index.keyword_search("thử nghiệm", *everyone) == []
    assert vector_recovery.recover_missing_keywords() == []  # just processed: its own indexing may still run
    Document.objects.filter(pk=doc.pk).update(processed_at=timezone.now() - timedelta(minutes=5))
    assert vector_recovery.recover_missing_keywords() == [doc.pk]
    found = keyword_index.keyword_search("thử nghiệm", *everyone)
    assert found and set(doc.chunks.values_list("id", flat=True)) >= {chunk_id for chunk_id, _ in found}
    assert vector_recovery.recover_missing_keywords() == []  # indexed: not again


def test_the_embedding_sweep_leaves_older_documents_to_a_new_space_s_backfill(ready_doc, wide_model_path,
                                                                             monkeypatch):
    space, doc = ready_doc
    embedding.embed_document(space, doc.pk)
    spaces.create_space("candidate", wide_model_path)  # building, created after the document was processed
    monkeypatch.setattr(vector_recovery, "send", lambda *a, **kw: True)
    Document.objects.filter(pk=doc.pk).update(queued_at=None)
    assert vector_recovery.recover_missing_vectors(everything=True) == []


def test_an_embedding_step_writes_at_most_its_share_and_says_what_is_left(ready_doc):
    space, doc = ready_doc
    total = doc.chunks.count()
    assert total >= 2
    first = embedding.embed_document_step(space, doc.pk, total - 1)
    assert (first.written, first.more, first.busy) == (total - 1, True, False)
    with SessionLock(EMBED_BASE + space.pk, doc.pk) as other:
        assert other.try_acquire()
        assert embedding.embed_document_step(space, doc.pk, 100).busy
    last = embedding.embed_document_step(space, doc.pk, 100)
    assert (last.written, last.more) == (1, False)
    assert ChunkEmbedding.objects.filter(space=space, document=doc).count() == total


def test_an_outage_is_retried_with_backoff_and_the_handler_never_queries_the_database(monkeypatch, settings):
    """The old handler looked up the document's attempts in the database that had just
    gone away, so its retry was never reached."""
    from django.db import connection

    from documents.tasks import process_document_task

    settings.TASK_MAX_RETRIES = 4
    calls = []

    def database_down(document_id, **kwargs):
        calls.append(kwargs)
        raise OperationalError("connection to server on socket failed: No such file or directory")

    monkeypatch.setattr(processing, "process_document", database_down)
    with CaptureQueriesContext(connection) as queries:
        outcome = process_document_task.apply(args=(42,)).get()  # eager: each retry runs at once
    assert outcome == "gave up" and len(calls) == 5  # the first run and 4 retries
    assert len(queries) == 0


def test_backoff_doubles_up_to_the_cap_and_covers_several_minutes(settings):
    delays = [tasking.backoff(n) for n in range(settings.TASK_MAX_RETRIES)]
    assert all(d <= settings.TASK_RETRY_MAX_DELAY * 1.2 for d in delays)
    assert 0.8 <= delays[0] <= 1.2 and delays[3] >= 8 * 0.8
    assert sum(delays) >= 8 * 60  # an outage of several minutes is ridden out


def test_ingestion_embedding_and_control_tasks_have_their_own_queues(settings):
    from tests.conftest import _purge_queue
    from documents.tasks import process_document_task, recover_stale_documents_task
    from search.tasks import embed_document_task

    _purge_queue()
    try:
        assert tasking.send(process_document_task, 1)
        assert tasking.send(embed_document_task, 1, 2) and tasking.send(embed_document_task, 3, 4)
        assert tasking.send(recover_stale_documents_task)
        lengths = {kind: tasking.queue_length(name) for kind, name in settings.TASK_QUEUES.items()}
        assert lengths == {"ingest": 1, "embed": 2, "finetune": 0}
        assert tasking.queue_length(settings.CELERY_TASK_DEFAULT_QUEUE) == 1
    finally:
        _purge_queue()


def test_a_broker_outage_at_upload_is_recorded_not_raised(monkeypatch):
    from documents import tasks
    from documents.services.intake import enqueue_processing, waits_for_queue

    def broker_down(*a, **kw):
        raise OperationalError("Error 2 connecting to redis.sock")

    monkeypatch.setattr(tasks.process_document_task, "apply_async", broker_down)
    doc = upload(1)
    # on-commit hooks do not run inside the test's transaction: call what register_upload's hook calls
    assert enqueue_processing(doc.pk, doc) is False
    assert waits_for_queue(doc)
    doc.refresh_from_db()
    assert waits_for_queue(doc) and doc.queued_at is None


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_is_renewed_while_a_step_runs_and_notices_a_takeover():
    import time

    from documents.services.heartbeat import Heartbeat

    doc = upload(1, status=DocumentStatus.PROCESSING, holder="me", heartbeat_at=timezone.now() - timedelta(hours=1))
    with Heartbeat(doc.pk, "me", interval=0.1) as beat:
        assert beat.acquire()
        beat.start()
        time.sleep(0.6)  # a long step: nothing in the pipeline touches the row meanwhile
        assert timezone.now() - Document.objects.get(pk=doc.pk).heartbeat_at < timedelta(seconds=2)
        assert not beat.lost.is_set()
        Document.objects.filter(pk=doc.pk).update(holder="someone-else")  # taken over
        deadline = time.monotonic() + 5
        while not beat.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost.is_set()


def test_an_outage_after_the_claim_resumes_the_attempt_instead_of_using_up_another(monkeypatch, settings):
    from documents.tasks import process_document_task

    settings.TASK_MAX_RETRIES = 5
    doc = upload(1)
    real = processing.process_document
    runs = []

    def flaky(document_id, resume_holder=""):
        runs.append(resume_holder)
        if len(runs) == 1:  # claimed, then the database went away mid-way
            claimed = processing._claim(document_id, "w:1:first", True)
            assert claimed is not None
            raise processing.ProcessingInterrupted("w:1:first") from OperationalError("server closed the connection")
        if len(runs) < 4:  # the retries meet the database still down, before any claim
            raise OperationalError("connection refused")
        return real(document_id, resume_holder=resume_holder)

    monkeypatch.setattr(processing, "process_document", flaky)
    assert process_document_task.apply(args=(doc.pk,)).get() == "ready"
    assert runs == ["", "w:1:first", "w:1:first", "w:1:first"]
    doc.refresh_from_db()
    assert doc.attempts == 1  # one attempt, interrupted and resumed


def test_tasks_carry_their_time_limits(settings):
    from documents.tasks import process_document_task
    from search.tasks import embed_document_task

    assert (process_document_task.soft_time_limit, process_document_task.time_limit) == (
        settings.INGEST_TIME_LIMIT, settings.INGEST_TIME_LIMIT + 30)
    assert (embed_document_task.soft_time_limit, embed_document_task.time_limit) == (
        settings.EMBED_TIME_LIMIT, settings.EMBED_TIME_LIMIT + 30)


def test_a_worker_process_imports_its_libraries_before_its_first_task():
    """A soft time limit that fires inside a first import leaves torch half-initialised in
    the process; so an ingest worker imports them when its process starts."""
    import subprocess
    import sys

    from tests.faults import ROOT

    script = ("import django; django.setup(); import sys; from documents import tasks; "
              "before = 'unstructured.partition.pdf' in sys.modules; tasks._preload(); "
              "print(before, all(m in sys.modules for m in ('torch', 'transformers', 'unstructured.partition.pdf', "
              "'unstructured.partition.docx')))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "portal.settings"})
    assert out.stdout.split()[-2:] == ["False", "True"], out.stderr[-2000:]
