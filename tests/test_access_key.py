"""The access key copied onto vector rows (migration search/0004): it selects
exactly what the access function selects, for every principal, and follows
every way access can change — in the same transaction, whatever the write path."""
import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.db import connection

from documents.models import AccessLevel, Chunk, Document
from documents.selectors import access_key_condition, visible_documents
from portal.models import Clearance
from search.models import ChunkEmbedding, EmbeddingSpace, SpaceStatus
from search.services import spaces
from search.services.filters import SearchFilters, search_scope
from search.services.retrieval import vector_candidates
from tests import factories as f

pytestmark = pytest.mark.django_db


def _vectors_for(doc: Document, space: EmbeddingSpace, n: int = 2) -> None:
    for i in range(n):
        chunk = Chunk.objects.create(document=doc, ordinal=100 + i, text=f"đoạn {i}", token_count=2,
                                     char_start=0, char_end=6)
        ChunkEmbedding.objects.create(chunk=chunk, space=space, document=doc, embedding=[1.0, float(i), 0.5])


def _key_visible(user, space) -> set[int]:
    condition = access_key_condition(user, "ce")
    sql, params = condition if condition else ("TRUE", [])
    with connection.cursor() as cur:
        cur.execute(f"SELECT DISTINCT ce.document_id FROM search_chunkembedding ce "
                    f"WHERE ce.space_id = %s AND {sql}", [space.pk, *params])
        return {row[0] for row in cur.fetchall()}


@pytest.fixture
def space():
    return EmbeddingSpace.objects.create(name="key", model_path="/nowhere", dimension=3, max_seq_length=8,
                                         status=SpaceStatus.READY)


@pytest.fixture
def world(space):
    owner = f.user("uploader")
    group = Group.objects.create(name="auditors")
    docs = [f.document(level, departments=depts) for level in (0, 1, 2, 3)
            for depts in (("HR",), ("IT",), ("HR", "FIN"), ())]
    docs.append(f.document(3, departments=("FIN",), owner=owner))
    people = {
        "anonymous": AnonymousUser(),
        "employee": f.user("employee"),
        "hr": f.user("hr", departments=["HR"]),
        "hr_and_it": f.user("hr_it", departments=["HR", "IT"]),
        "fin": f.user("fin", departments=["FIN"]),
        "intern": f.user("intern", departments=["HR"], clearance=Clearance.INTERNAL),
        "executive": f.user("director", clearance=Clearance.EXECUTIVE),
        "partner": f.user("partner", clearance=Clearance.PUBLIC),
        "granted": f.user("granted"),
        "in_group": f.user("in_group"),
        "owner": owner,
        "inactive": f.user("gone", departments=["HR"], is_active=False),
        "root": f.user("root", is_superuser=True, is_staff=True),
    }
    people["in_group"].groups.add(group)
    f.grant(docs[13], user=people["granted"])  # confidential, IT
    f.grant(docs[15], user=people["granted"])
    f.grant(docs[14], group=group)
    f.grant(docs[13], user=people["inactive"])
    for doc in docs:
        _vectors_for(doc, space)
    return docs, people


def test_key_selects_exactly_the_visible_documents_for_every_principal(world, space):
    docs, people = world
    for name, user in people.items():
        expected = set(visible_documents(user).values_list("pk", flat=True))
        assert _key_visible(user, space) == expected, name


def test_key_follows_every_access_change_in_the_same_transaction(world, space):
    docs, people = world
    hr, fin = people["hr"], people["fin"]
    doc = docs[10]  # restricted, HR + FIN
    assert doc.pk in _key_visible(hr, space) and doc.pk in _key_visible(fin, space)

    doc.departments.remove(f.department("FIN"))  # m2m remove
    assert doc.pk in _key_visible(hr, space) and doc.pk not in _key_visible(fin, space)
    doc.departments.clear()  # m2m clear
    assert doc.pk not in _key_visible(hr, space)
    doc.departments.set([f.department("FIN")])  # m2m set
    assert doc.pk in _key_visible(fin, space)

    Document.objects.filter(pk=doc.pk).update(access_level=AccessLevel.CONFIDENTIAL)  # bulk admin action path
    assert doc.pk not in _key_visible(fin, space)
    doc.refresh_from_db()
    doc.access_level = AccessLevel.PUBLIC  # plain save()
    doc.save()
    assert doc.pk in _key_visible(people["anonymous"], space)

    secret = docs[-1]  # confidential, owned by "uploader"
    assert secret.pk in _key_visible(people["owner"], space)
    people["owner"].delete()  # owner SET NULL
    assert secret.pk not in _key_visible(people["employee"], space)
    secret.owner = people["employee"]
    secret.save()
    assert secret.pk in _key_visible(people["employee"], space)

    # and the key always equals what the access function says
    for name, user in people.items():
        if name == "owner":
            continue
        user = user if isinstance(user, AnonymousUser) else type(user).objects.get(pk=user.pk)
        assert _key_visible(user, space) == set(visible_documents(user).values_list("pk", flat=True)), name


def test_vectors_written_by_raw_sql_get_their_key(space):
    doc = f.document(2, departments=("HR", "IT"))
    chunk = Chunk.objects.create(document=doc, ordinal=1, text="x", token_count=1, char_start=0, char_end=1)
    with connection.cursor() as cur:
        cur.execute("INSERT INTO search_chunkembedding (space_id, chunk_id, document_id, embedding) "
                    "VALUES (%s, %s, %s, '[1,2,3]')", [space.pk, chunk.pk, doc.pk])
    row = ChunkEmbedding.objects.get(chunk=chunk)
    assert row.doc_access_level == 2
    assert sorted(row.doc_department_ids) == sorted(doc.departments.values_list("pk", flat=True))


def test_selective_filter_returns_every_visible_row_not_a_short_list(space):
    """A filter that hides almost everything: the HNSW scan may run out; the exact
    fallback still returns every visible row, and nothing else."""
    spaces.create_index(space)
    hidden = [f.document(3, departments=("IT",)) for _ in range(30)]
    shown = [f.document(2, departments=("HR",)) for _ in range(2)]
    for doc in hidden + shown:
        _vectors_for(doc, space, n=3)
    hr = f.user("hr", departments=["HR"])

    def encode(_space, _query):
        import numpy as np
        return np.array([1.0, 0.2, 0.5], dtype=np.float32)

    from search.services import encoders
    original, encoders.encode_query = encoders.encode_query, encode
    try:
        found = vector_candidates(space, "q", search_scope(hr, SearchFilters(departments=["HR"])), limit=20)
    finally:
        encoders.encode_query = original
    docs_found = set(Chunk.objects.filter(pk__in=[c for c, _ in found]).values_list("document_id", flat=True))
    assert docs_found == {d.pk for d in shown}
    assert len(found) == 6


def test_migration_backfill_fills_keys_and_keeps_the_hnsw_index(space):
    """search/0004 on an installation with vectors: keys are filled, the space's
    index is dropped for the update and built again."""
    import importlib

    migration = importlib.import_module("search.migrations.0004_embedding_access_key")
    spaces.create_index(space)
    doc = f.document(2, departments=("HR",))
    _vectors_for(doc, space)
    with connection.cursor() as cur:  # as before the migration: no key yet
        cur.execute("UPDATE search_chunkembedding SET doc_access_level = 3, doc_department_ids = '{}'")
    with connection.schema_editor() as editor:
        migration.backfill_keys(None, editor)
    rows = list(ChunkEmbedding.objects.filter(document=doc))
    assert rows and all(r.doc_access_level == 2 and r.doc_department_ids == [f.department("HR").pk] for r in rows)
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [space.index_name])
        assert cur.fetchone()


def _wait_until_blocked_by(waiter, holder, timeout: float = 10.0) -> None:
    """Assert that `waiter`'s backend is waiting for a lock that `holder`'s open
    transaction holds (pg_blocking_pids), within `timeout` seconds."""
    import time

    import psycopg

    waiter_pid, holder_pid = waiter.info.backend_pid, holder.info.backend_pid
    params = connection.settings_dict
    with psycopg.connect(host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"],
                         dbname=params["NAME"], autocommit=True) as observer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = observer.execute("SELECT wait_event_type, pg_blocking_pids(pid) FROM pg_stat_activity "
                                   "WHERE pid = %s", [waiter_pid]).fetchone()
            if row and row[0] == "Lock" and holder_pid in row[1]:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {waiter_pid} never waited for a lock held by {holder_pid}: {row}")


@pytest.mark.django_db(transaction=True)
def test_concurrent_access_change_and_vector_write_never_miss_each_other():
    """An access change and a worker writing the same document's vectors in two
    open transactions: the second one blocks until the first commits (checked in
    pg_stat_activity), and whichever commits first, the key ends up current."""
    import threading

    import psycopg

    space = EmbeddingSpace.objects.create(name="race", model_path="/nowhere", dimension=3, max_seq_length=8,
                                          status=SpaceStatus.READY)
    params = connection.settings_dict

    def connect():
        return psycopg.connect(host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"],
                               dbname=params["NAME"])

    def new_chunk(doc, ordinal):
        return Chunk.objects.create(document=doc, ordinal=ordinal, text="x", token_count=1, char_start=0,
                                    char_end=1)

    def insert_vector(conn, doc, chunk):
        conn.execute("INSERT INTO search_chunkembedding (space_id, chunk_id, document_id, embedding) "
                     "VALUES (%s, %s, %s, '[1,2,3]')", [space.pk, chunk.pk, doc.pk])

    def in_thread(fn):
        errors = []

        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)
        t = threading.Thread(target=run)
        t.start()
        return t, errors

    def finish(t, errors):
        t.join(10)
        assert not t.is_alive() and not errors, errors

    doc = f.document(3, departments=("HR",))
    admin, worker = connect(), connect()
    try:
        # 1. the access change is open first; the vector write waits for it
        admin.execute("UPDATE documents_document SET access_level = 0 WHERE id = %s", [doc.pk])
        chunk = new_chunk(doc, 1)
        t = in_thread(lambda: (insert_vector(worker, doc, chunk), worker.commit()))
        _wait_until_blocked_by(worker, admin)
        admin.commit()
        finish(*t)
        assert ChunkEmbedding.objects.get(chunk=chunk).doc_access_level == 0

        # 2. the vector write is open first; the access change waits for it
        insert_vector(worker, doc, new_chunk(doc, 2))
        t = in_thread(lambda: (admin.execute("UPDATE documents_document SET access_level = 1 WHERE id = %s",
                                             [doc.pk]), admin.commit()))
        _wait_until_blocked_by(admin, worker)
        worker.commit()
        finish(*t)
        assert set(ChunkEmbedding.objects.filter(document=doc).values_list("doc_access_level", flat=True)) == {1}

        # 3. the same for a department link added while vectors are written
        it = f.department("IT")
        insert_vector(worker, doc, new_chunk(doc, 3))
        link = "INSERT INTO documents_document_departments (document_id, department_id) VALUES (%s, %s)"
        t = in_thread(lambda: (admin.execute(link, [doc.pk, it.pk]), admin.commit()))
        _wait_until_blocked_by(admin, worker)
        worker.commit()
        finish(*t)
        assert all(it.pk in ids for ids in ChunkEmbedding.objects.filter(document=doc)
                   .values_list("doc_department_ids", flat=True))
    finally:  # a failed wait must not leave a transaction open (the test database could not be flushed)
        admin.close()
        worker.close()
