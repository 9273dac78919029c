"""The tantivy index kept from PostgreSQL's change log (issue 12): every write
path reaches the index through the triggers (ORM save, bulk update, m2m, delete,
raw SQL), an access change hides a result at once (the SQL check) before the
writer runs, rebuild and verify, a writer that crashes mid-batch (nothing lost,
nothing doubled), a transaction that commits late under an older id, the lag
report and pruning. Committed transactions (the writer sees only those)."""
from __future__ import annotations

import hashlib
import itertools

import psycopg
import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.db import connection
from tantivy import Query

from documents.models import Chunk, Department, Document, Tag
from search.keyword_models import KeywordChange
from search.services import keyword_engine
from search.services.filters import SearchFilters, search_scope
from search.services.keyword_engine import maintenance, rows, searching, store, writer

pytestmark = pytest.mark.django_db(transaction=True)
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def tantivy_engine(settings, tmp_path):
    settings.KEYWORD_ENGINE = "tantivy"
    settings.KEYWORD_INDEX_DIR = tmp_path / "keyword-index"


def make_doc(*texts: str, level: int = 0, **fields) -> Document:
    n = next(_seq)
    doc = Document.objects.create(code=f"TW_{n}", title=f"văn bản {n}", access_level=level, status="ready",
                                  source_file=f"tw/{n}.txt", original_filename=f"{n}.txt",
                                  checksum=hashlib.sha256(f"tw{n}".encode()).hexdigest(), **fields)
    for i, text in enumerate(texts):
        Chunk.objects.create(document=doc, ordinal=i, text=text, token_count=len(text.split()),
                             char_start=0, char_end=len(text))
    return doc


def in_index(query: str, user=None, filters=None) -> set[int]:
    """Documents the index itself returns (no SQL check): what the writer applied."""
    key = search_scope(user or AnonymousUser(), filters).key_filter
    searcher = store.reader().searcher()
    hits = searcher.search(searching.bm25_query(query, key), limit=1000).hits
    return {int(d) for d in searcher.fast_field_values("document_id", [address for _, address in hits])}


def entries_per_chunk() -> dict[int, int]:
    searcher = store.reader().searcher()
    out = {}
    for chunk_id in Chunk.objects.values_list("pk", flat=True):
        out[chunk_id] = len(searcher.search(Query.term_query(store.SCHEMA, "chunk_id", chunk_id), limit=5).hits)
    return out


@pytest.fixture
def built():
    doc = make_doc("quy trình nghỉ phép năm", "bảng lương tháng")
    writer.rebuild()
    return doc


def _raw(sql, *params):
    with connection.cursor() as cur:
        cur.execute(sql, params)


def _save_chunk(doc):
    chunk = doc.chunks.get(ordinal=1)
    chunk.text = "bảng lương và thưởng Tết"
    chunk.save()
    return lambda: in_index("thưởng tết") == {doc.pk}


def _new_document(doc):
    new = make_doc("hướng dẫn sao lưu dữ liệu")
    return lambda: in_index("sao lưu") == {new.pk}


def _bulk_access_level(doc):
    Document.objects.filter(pk=doc.pk).update(access_level=3)  # an admin bulk action
    return lambda: in_index("nghỉ phép") == set()


def _owner_on_save(doc, user_model):
    owner = user_model.objects.create(username="owner", clearance=0)
    Document.objects.filter(pk=doc.pk).update(access_level=3)
    writer.sync()
    doc.refresh_from_db()
    doc.owner = owner
    doc.save()
    return lambda: in_index("nghỉ phép", owner) == {doc.pk} and in_index("nghỉ phép") == set()


def _department_added(doc):
    doc.departments.add(Department.objects.create(code="it", name="IT"))
    return lambda: in_index("nghỉ phép", filters=SearchFilters(departments=["it"])) == {doc.pk}


def _department_removed(doc):
    doc.departments.add(Department.objects.create(code="it", name="IT"))
    writer.sync()
    doc.departments.clear()
    return lambda: in_index("nghỉ phép", filters=SearchFilters(departments=["it"])) == set()


def _tag_added(doc):
    doc.tags.add(Tag.objects.create(slug="sao-luu", name="Sao lưu",
                                    parent=Tag.objects.create(slug="cong-nghe", name="Công nghệ")))
    return lambda: in_index("nghỉ phép", filters=SearchFilters(tags=["cong-nghe"])) == {doc.pk}


def _tag_moved(doc):
    parent = Tag.objects.create(slug="cong-nghe", name="Công nghệ")
    child = Tag.objects.create(slug="sao-luu", name="Sao lưu")
    doc.tags.add(child)
    writer.sync()
    Tag.objects.filter(pk=child.pk).update(parent=parent)  # its documents' ancestors change
    return lambda: in_index("nghỉ phép", filters=SearchFilters(tags=["cong-nghe"])) == {doc.pk}


def _document_deleted(doc):
    doc.delete()
    return lambda: in_index("nghỉ phép") == set()


def _raw_sql_title(doc):
    _raw("UPDATE documents_document SET title = 'Cẩm nang an toàn' WHERE id = %s", doc.pk)
    return lambda: in_index("cam nang an toan") == {doc.pk}


def _raw_sql_access_and_type(doc):
    _raw("UPDATE documents_document SET access_level = 1, document_type = 'report' WHERE id = %s", doc.pk)
    return lambda: (in_index("nghỉ phép") == set()
                    and in_index("nghỉ phép", _superuser(), SearchFilters(document_types=["report"])) == {doc.pk})


def _raw_sql_chunks_deleted(doc):
    _raw("DELETE FROM documents_chunk WHERE document_id = %s AND ordinal = 0", doc.pk)
    return lambda: in_index("nghỉ phép") == set() and in_index("bảng lương") == {doc.pk}


def _not_ready(doc):
    Document.objects.filter(pk=doc.pk).update(status="processing")  # re-processing
    return lambda: in_index("nghỉ phép") == set()


def _superuser():
    from portal.models import User

    return User.objects.get_or_create(username="root", defaults={"is_superuser": True})[0]


WRITE_PATHS = [_save_chunk, _new_document, _bulk_access_level, _owner_on_save, _department_added,
               _department_removed, _tag_added, _tag_moved, _document_deleted, _raw_sql_title,
               _raw_sql_access_and_type, _raw_sql_chunks_deleted, _not_ready]


@pytest.mark.parametrize("change", WRITE_PATHS, ids=[f.__name__.strip("_") for f in WRITE_PATHS])
def test_every_write_path_reaches_the_index(built, change, django_user_model):
    args = (built, django_user_model) if change is _owner_on_save else (built,)
    expected = change(*args)
    assert not expected()  # not applied yet: the index still has the old state
    assert writer.sync().entries > 0
    assert expected()
    assert maintenance.verify().ok


def test_an_access_change_hides_a_result_at_once_before_the_writer_runs(built):
    scope = search_scope(AnonymousUser())
    assert keyword_engine.keyword_search("nghỉ phép", scope)
    Document.objects.filter(pk=built.pk).update(access_level=3)
    assert in_index("nghỉ phép") == {built.pk}  # the index has not caught up...
    assert keyword_engine.keyword_search("nghỉ phép", search_scope(AnonymousUser())) == []  # ...the SQL has
    Chunk.objects.filter(document=built).delete()  # a deleted chunk: same
    Document.objects.filter(pk=built.pk).update(access_level=0)
    assert keyword_engine.keyword_search("nghỉ phép", search_scope(AnonymousUser())) == []
    writer.sync()
    assert in_index("nghỉ phép") == set()


def test_rebuild_verify_and_status(built):
    out = call_command("keyword_index", "verify")
    assert out is None  # no CommandError: the copy matches
    Document.objects.filter(pk=built.pk).update(title="đổi tên")
    lag = maintenance.status()
    assert [entry.entries for entry in lag] == [1] and lag[0].local and lag[0].oldest_seconds >= 0
    writer.sync()
    assert [entry.entries for entry in maintenance.status()] == [0]
    # an entry lost from the index is found by verify, and a rebuild repairs it
    index = store.open_index(store.current_copy())
    w = index.writer(50_000_000, 1)
    w.delete_documents_by_term("chunk_id", built.chunks.first().pk)
    w.commit()
    del w
    report = maintenance.verify()
    assert not report.ok and "1 chunks in the index, 2 in PostgreSQL" in report.problems[0]
    with pytest.raises(Exception, match="differences"):
        call_command("keyword_index", "verify")
    old = store.current_copy()
    call_command("keyword_index", "rebuild", "--no-progress")
    assert store.current_copy() != old and not old.exists()  # the old copy's files are gone
    assert maintenance.verify().ok
    assert [c.copy_id for c in maintenance.status()] == [store.current_copy().name]


@pytest.mark.parametrize("crash_at", ["while adding", "after the commit, before the cursor"])
def test_a_writer_crash_mid_batch_loses_and_doubles_nothing(built, monkeypatch, crash_at):
    docs = [make_doc(f"biên bản họp số {n}", f"phụ lục {n}") for n in range(6)]
    Document.objects.filter(pk=built.pk).update(access_level=1)

    class Crash(Exception):
        pass

    if crash_at == "while adding":
        real = rows.chunks_of

        def half_then_crash(ids):
            return real(ids)[:3] + [None]  # three added, then the process "dies"

        monkeypatch.setattr(rows, "chunks_of", half_then_crash)
        monkeypatch.setattr(writer, "_apply", _apply_until(writer._apply, Crash))
    else:
        monkeypatch.setattr(writer, "_save_cursor", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        writer.sync(batch=100)
    monkeypatch.undo()
    writer.sync(batch=100)
    assert set(entries_per_chunk().values()) == {1}  # every chunk once: none lost, none doubled
    assert in_index("biên bản họp") == {d.pk for d in docs}
    assert in_index("nghỉ phép") == set()  # level 1 now: not for anonymous
    assert maintenance.verify().ok


def _apply_until(apply, crash):
    def apply_then_crash(w, ids):
        try:
            return apply(w, ids)
        except TypeError:  # the None: the crash, with three documents added but not committed
            raise crash()
    return apply_then_crash


def test_a_change_committed_late_under_an_older_transaction_is_not_skipped(built):
    """Transaction A writes first (smaller xid) but commits after B: the writer
    must not move past A's entry while A runs."""
    params = connection.get_connection_params()
    late = make_doc("chưa được ghi")
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("UPDATE documents_chunk SET text = 'thông báo tuyển dụng' WHERE document_id = %s", [late.pk])
        make_doc("lịch trực tuần")  # B: committed while A is open
        writer.sync()
        assert in_index("tuyển dụng") == set()
        assert in_index("lịch trực") == set()  # B waits behind A: applying it would move the cursor past A
        other.commit()
    writer.sync()
    assert in_index("tuyển dụng") == {late.pk}
    assert in_index("lịch trực") != set()


def test_prune_keeps_what_a_copy_still_needs(built):
    Document.objects.filter(pk=built.pk).update(title="một")
    writer.sync()
    Document.objects.filter(pk=built.pk).update(title="hai")
    assert maintenance.prune() >= 1
    assert KeywordChange.objects.count() == 1  # not applied yet: kept
    writer.sync()
    maintenance.prune()
    assert KeywordChange.objects.count() == 0
    assert in_index("hai") == {built.pk}


def test_a_copy_unknown_to_the_database_is_built_again(built):
    from search.keyword_models import KeywordIndexCopy

    KeywordIndexCopy.objects.all().delete()  # forgotten (silent too long): its log may be pruned
    Document.objects.filter(pk=built.pk).update(title="mới")
    result = writer.sync()
    assert result.rebuilt and in_index("mới") == {built.pk}


def test_old_segment_files_are_garbage_collected(built):
    """paperless-ngx saw an index grow 90 MB → 18 GB without it: after many
    commits the folder holds only the files of the segments in use."""
    import json

    for n in range(12):
        Document.objects.filter(pk=built.pk).update(title=f"phiên bản {n}")
        writer.sync()
    copy = store.current_copy()
    meta = json.loads((copy / "meta.json").read_text())
    live = {s["segment_id"].replace("-", "") for s in meta["segments"]}
    segment_files = [p for p in copy.iterdir() if p.suffix in (".idx", ".store", ".fast", ".term", ".fieldnorm")]
    assert segment_files and {p.name.split(".")[0] for p in segment_files} <= live
    assert len(live) <= 8  # merged as it goes, not one segment per commit


def test_the_periodic_task_applies_the_log_only_with_the_tantivy_engine(built, settings):
    from search.tasks import sync_keyword_index_task

    Document.objects.filter(pk=built.pk).update(access_level=3)
    settings.KEYWORD_ENGINE = "postgres"
    assert sync_keyword_index_task.apply().get() == 0
    settings.KEYWORD_ENGINE = "tantivy"
    assert sync_keyword_index_task.apply().get() == 1
    assert in_index("nghỉ phép") == set()


def test_the_admin_shows_each_copy_and_its_lag(built, admin_client):
    page = admin_client.get("/admin/search/keywordindexcopy/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert store.current_copy().name in page.content.decode() and "up to date" in page.content.decode()
    Document.objects.filter(pk=built.pk).update(title="đổi")
    page = admin_client.get("/admin/search/keywordindexcopy/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "1 changes not applied" in page and "Keyword search on this machine: tantivy" in page
