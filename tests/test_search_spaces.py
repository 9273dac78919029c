"""Embedding spaces, vectors of two dimensions side by side, vector search with
the access filter inside the SQL, A/B stickiness, grouping, highlighting, fusion."""
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DataError, IntegrityError, connection, transaction

from documents.services.processing import process_document
from search.models import ChunkEmbedding, EmbeddingSpace, SpaceStatus
from search.services import embedding, fusion, spaces
from search.services.filters import SearchFilters, search_scope
from search.services.results import run_search
from search.services.retrieval import vector_candidates
from search.services.snippets import make_snippet
from tests import factories as f

pytestmark = pytest.mark.django_db

LEAVE = ("# Chính sách nghỉ phép\n\n## 1. Số ngày nghỉ\n\nNhân viên được nghỉ phép năm 12 ngày có hưởng lương.\n\n"
         "## 2. Thủ tục\n\nĐơn xin nghỉ phép gửi quản lý trực tiếp trước 3 ngày làm việc.\n")
VPN = ("# Hướng dẫn VPN\n\n## Cài đặt\n\nTải phần mềm VPN client và đăng nhập bằng tài khoản SSO.\n\n"
       "## Lỗi thường gặp\n\nNếu không kết nối được VPN, kiểm tra mạng và liên hệ IT helpdesk.\n")
SALARY = "# Bảng lương mật\n\n## Thưởng\n\nMức thưởng Tết của ban giám đốc là 6 tháng lương.\n"


def ready(level, text, departments=("HR",), **kw):
    doc = f.document(level, text=text, departments=departments, status="pending", **kw)
    assert process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return doc


@pytest.fixture
def corpus():
    return {"leave": ready(1, LEAVE), "vpn": ready(0, VPN, departments=("IT",)),
            "salary": ready(3, SALARY, departments=("FIN",))}


@pytest.fixture
def minilm_space(minilm_path, corpus):
    space = spaces.create_space("minilm", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    space.refresh_from_db()
    return space


def test_space_reads_its_shape_from_the_model_and_creates_its_index(minilm_space, wide_model_path):
    assert (minilm_space.dimension, minilm_space.max_seq_length) == (384, 256)
    wide = spaces.create_space("wide", wide_model_path)
    assert wide.dimension == 1024
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'search_chunkembedding'")
        defs = dict(cur.fetchall())
    assert f"vector(384)" in defs[minilm_space.index_name] and f"space_id = {minilm_space.pk}" in defs[
        minilm_space.index_name]
    assert "vector(1024)" in defs[wide.index_name]


def test_two_dimensions_live_in_one_table_and_search_independently(minilm_space, wide_model_path, corpus):
    wide = spaces.create_space("wide", wide_model_path)
    embedding.backfill(wide)
    n = corpus["leave"].chunks.count() + corpus["vpn"].chunks.count() + corpus["salary"].chunks.count()
    assert ChunkEmbedding.objects.filter(space=minilm_space).count() == n
    assert ChunkEmbedding.objects.filter(space=wide).count() == n
    root = f.user("root", is_superuser=True)
    allowed = search_scope(root)
    for space in (minilm_space, wide):
        top = vector_candidates(space, "VPN client SSO login", allowed, limit=3)
        assert top and top[0][0] in set(corpus["vpn"].chunks.values_list("pk", flat=True))


def test_the_vector_query_uses_the_space_index(minilm_space):
    """EXPLAIN the very SQL vector_candidates sends (captured with its
    parameters), under the settings it sets: the plan scans this space's HNSW index."""
    from search.services import retrieval

    sent = []

    def capture(execute, sql, params, many, context):
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        vector_candidates(minilm_space, "VPN", search_scope(f.user("root", is_superuser=True)), limit=5)
    sql, params = next((q, p) for q, p in sent if "WITH nearest" in q)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cur.execute(retrieval._PREFER_INDEX_SCAN)
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert f"Index Scan using {minilm_space.index_name}" in plan, plan


def test_a_wrong_dimension_insert_fails_loudly(minilm_space, corpus):
    chunk = corpus["vpn"].chunks.first()
    with pytest.raises(DataError, match="expected 384 dimensions"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE search_chunkembedding SET embedding = %s::vector WHERE space_id = %s AND chunk_id = %s",
                    ["[" + ",".join(["0.1"] * 10) + "]", minilm_space.pk, chunk.pk])


def test_only_one_active_space_is_enforced_by_the_database(minilm_space, minilm_path):
    other = spaces.create_space("other", minilm_path)
    with pytest.raises(IntegrityError), transaction.atomic():
        EmbeddingSpace.objects.filter(pk=other.pk).update(status=SpaceStatus.ACTIVE)
    spaces.activate(other)  # the service demotes the old one atomically
    assert list(EmbeddingSpace.objects.filter(status="active")) == [other]
    minilm_space.refresh_from_db()
    assert minilm_space.status == SpaceStatus.READY


def test_embedding_is_idempotent(minilm_space, corpus):
    before = ChunkEmbedding.objects.count()
    assert embedding.backfill(minilm_space) == 0  # nothing missing
    embedding.embed_chunks(minilm_space, corpus["leave"].chunks.all())  # re-embed: upsert, no duplicates
    assert ChunkEmbedding.objects.count() == before


def test_vector_search_never_returns_hidden_chunks_and_still_fills_k(minilm_space, corpus):
    employee = f.user("employee")  # sees levels 0 and 1
    for _ in range(3):
        ready(1, LEAVE.replace("12 ngày", f"{_ + 13} ngày"))
    allowed = search_scope(employee)
    hidden = set(corpus["salary"].chunks.values_list("pk", flat=True))
    found = vector_candidates(minilm_space, "thưởng Tết ban giám đốc lương", allowed, limit=8)
    assert found and not (hidden & {c for c, _ in found})
    assert len(found) == min(8, ChunkEmbedding.objects.filter(space=minilm_space).exclude(chunk__in=hidden).count())
    anon = vector_candidates(minilm_space, "nghỉ phép", search_scope(AnonymousUser()), limit=20)
    assert {c for c, _ in anon} <= set(corpus["vpn"].chunks.values_list("pk", flat=True))


def test_ab_share_is_sticky_per_user(minilm_space, minilm_path, django_assert_num_queries):
    candidate = spaces.create_space("candidate", minilm_path, status=SpaceStatus.READY)
    candidate.traffic_share = 0.5
    candidate.save()
    users = [f.user(f"u{i}") for i in range(120)]
    # The active space and the candidates in one query: a request during a promote
    # sees the spaces before it or after it, never half of each.
    with django_assert_num_queries(1):
        spaces.space_for(users[0])
    first = {u.pk: spaces.space_for(u).pk for u in users}
    assert all(spaces.space_for(u).pk == first[u.pk] for u in users)  # sticky
    share = sum(1 for v in first.values() if v == candidate.pk) / len(users)
    assert 0.3 < share < 0.7
    assert spaces.space_for(AnonymousUser(), "sess-1") == spaces.space_for(AnonymousUser(), "sess-1")


def test_results_are_grouped_by_document(minilm_space):
    long_doc = ready(0, "# Sổ tay VPN\n\n" + "\n\n".join(
        f"## Mục {i}\n\nKết nối VPN bước {i}: mở VPN client, chọn máy chủ VPN số {i}." for i in range(8)),
        departments=("IT",))
    embedding.backfill(minilm_space)  # in production the document_chunked hand-off queues this
    result = run_search(f.user("root", is_superuser=True), "kết nối VPN client", mode="vector")
    codes = [h.document.code for h in result.hits]
    assert len(codes) == len(set(codes))
    hit = next(h for h in result.hits if h.document.pk == long_doc.pk)
    assert hit.more_chunks and all(c.document_id == long_doc.pk for c in hit.more_chunks)
    assert result.space == minilm_space


def test_snippet_highlights_accented_words_for_an_accentless_query():
    html = make_snippet("Nhân viên được nghỉ phép năm 12 ngày <b>có lương</b>.", "nghi phep")
    assert "<mark>nghỉ phép</mark>" in html  # one phrase
    assert "&lt;b&gt;" in html  # the document's text is escaped


def test_fusion_weights():
    vector = [(1, 0.9), (2, 0.8), (3, 0.1)]
    keyword = [(3, 12.0), (4, 9.0)]
    assert [c for c, _ in fusion.fuse(vector, keyword, method="rrf", vector_weight=0, keyword_weight=1)] == [3, 4]
    assert [c for c, _ in fusion.fuse(vector, keyword, method="rrf", vector_weight=1, keyword_weight=0)] == [1, 2, 3]
    both = fusion.fuse(vector, keyword, method="rrf", vector_weight=1, keyword_weight=1, rrf_k=60)
    assert both[0][0] == 3  # found by both sides
    scored = fusion.fuse(vector, keyword, method="score", vector_weight=1, keyword_weight=2)
    assert scored[0][0] == 3 and {c for c, _ in scored} == {1, 2, 3, 4}


def test_retiring_frees_rows_and_the_index(minilm_space, minilm_path):
    other = spaces.create_space("other", minilm_path)
    embedding.backfill(other)
    spaces.activate(other)
    freed = spaces.retire(minilm_space)
    assert freed["rows"] > 0 and freed["vector_bytes"] > 0
    assert not ChunkEmbedding.objects.filter(space=minilm_space).exists()
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [minilm_space.index_name])
        assert cur.fetchone()[0] is None
    with pytest.raises(spaces.SpaceError):
        spaces.retire(other)  # the active one


def test_filters_narrow_results(minilm_space, corpus):
    root = f.user("root", is_superuser=True)
    only_it = run_search(root, "hướng dẫn", mode="vector", filters=SearchFilters(departments=["IT"]))
    assert {h.document.pk for h in only_it.hits} == {corpus["vpn"].pk}
    guides = run_search(root, "hướng dẫn", mode="vector", filters=SearchFilters(document_types=["report"]))
    assert guides.hits == []


def test_tag_filter_includes_child_tags_and_date_and_language_filters(minilm_space):
    from datetime import date

    from documents.models import Tag
    from search.services import keyword_index

    parent = Tag.objects.create(slug="cong-nghe", name="Công nghệ")
    child = Tag.objects.create(slug="bao-mat", name="Bảo mật", parent=parent)
    grandchild = Tag.objects.create(slug="mat-khau", name="Mật khẩu", parent=child)
    other = Tag.objects.create(slug="nhan-su", name="Nhân sự")
    a = ready(0, "# Mật khẩu\n\n## Quy tắc\n\nMật khẩu tối thiểu 12 ký tự, đổi mỗi 90 ngày.\n", departments=("IT",))
    b = ready(0, "# Mật khẩu nhân sự\n\n## Quy tắc\n\nMật khẩu hệ thống HRM do phòng nhân sự cấp.\n")
    a.tags.add(grandchild)
    b.tags.add(other)
    a.effective_date, a.language = date(2024, 3, 1), "vi"
    b.effective_date, b.language = date(2025, 6, 1), "mixed"
    a.save()
    b.save()
    keyword_index.rebuild()
    root = f.user("root", is_superuser=True)

    def found(**filters):
        hits = run_search(root, "mật khẩu", "keyword", SearchFilters(**filters)).hits
        return {h.document.pk for h in hits} & {a.pk, b.pk}  # the fixture corpus has "mật" too

    assert found() == {a.pk, b.pk}
    assert found(tags=["cong-nghe"]) == {a.pk}  # grandchild tag counts under its ancestor
    assert found(tags=["nhan-su"]) == {b.pk}
    assert found(date_from=date(2025, 1, 1)) == {b.pk}
    assert found(date_to=date(2024, 12, 31)) == {a.pk}
    assert found(languages=["mixed"]) == {b.pk}


@pytest.mark.django_db(transaction=True)
def test_hybrid_runs_its_vector_side_on_the_search_thread_with_the_same_results(minilm_path):
    """Outside a transaction the vector side (encoding + HNSW query) runs on the
    search thread with its own connection; the results equal the serial path's."""
    from search.services import modes, retrieval

    docs = {"leave": ready(1, LEAVE), "vpn": ready(0, VPN, departments=("IT",)),
            "salary": ready(3, SALARY, departments=("FIN",))}
    space = spaces.create_space("minilm-threads", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    space.refresh_from_db()
    employee = f.user("employee", departments=["HR"])
    scope = search_scope(employee)
    threads = []
    original = retrieval.vector_candidates

    def spy(*args, **kwargs):
        import threading
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    retrieval.vector_candidates = spy
    try:
        parallel, _ = modes.ranked_chunks("nghỉ phép năm", "hybrid", scope, space, 20)
        with transaction.atomic():
            serial, _ = modes.ranked_chunks("nghỉ phép năm", "hybrid", scope, space, 20)
    finally:
        retrieval.vector_candidates = original
    assert threads[0].startswith("vector-search") and not threads[1].startswith("vector-search")
    assert [c for c, _ in parallel] == [c for c, _ in serial]
    assert parallel and all(s == pytest.approx(t) for (_, s), (_, t) in zip(parallel, serial))
    salary_chunks = set(docs["salary"].chunks.values_list("pk", flat=True))
    assert not salary_chunks & {c for c, _ in parallel}


def test_document_page_shows_vector_progress_until_every_passage_has_one(minilm_path, corpus, client):
    space = spaces.create_space("progress", minilm_path)
    spaces.activate(space)
    leave = corpus["leave"]
    client.force_login(f.user("reader", departments=["HR"]))
    total = leave.chunks.count()
    vectors = f"/search/documents/{leave.pk}/vectors/"  # the search app's fragment (issue 9)
    status = client.get(f"/documents/{leave.pk}/status/").content.decode()
    assert f'hx-get="{vectors}"' in status
    page = client.get(vectors).content.decode()
    assert f"Vector cho tìm kiếm theo ngữ nghĩa: 0/{total} đoạn" in page
    assert 'hx-trigger="every 2s"' in page  # keeps polling while vectors are written
    from datetime import timedelta

    from django.utils import timezone
    type(leave).objects.filter(pk=leave.pk).update(processed_at=timezone.now() - timedelta(days=1))
    page = client.get(vectors).content.decode()
    assert f"0/{total} đoạn" in page and "hx-trigger" not in page  # vectors that never came: no endless polling
    embedding.embed_document(space, leave.pk)
    page = client.get(vectors).content.decode()
    assert "Vector cho tìm kiếm" not in page and "hx-trigger" not in page


def test_query_vectors_are_cached_and_models_warm_up(minilm_space, monkeypatch):
    """The next page of a search does not encode the query again; warm_up loads
    a space's model before any search."""
    from search.services import encoders

    calls = []
    original = encoders._encode
    monkeypatch.setattr(encoders, "_encode", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    encoders._encoded_query.cache_clear()
    employee = f.user("pager", departments=["HR"])
    first = run_search(employee, "nghỉ phép năm", mode="vector", page_size=1, page=1)
    second = run_search(employee, "nghỉ phép năm", mode="vector", page_size=1, page=2)
    assert first.hits and second.hits and first.hits[0].document != second.hits[0].document
    assert calls == [["nghỉ phép năm"]]
    encoders.forget_models()
    encoders.warm_up([minilm_space])
    assert list(encoders._models) == [minilm_space.model_path]


def test_vector_search_leaves_no_planner_settings_behind_and_bounds_its_depth(minilm_space):
    employee = f.user("deep", departments=["HR"])
    with transaction.atomic(), connection.cursor() as cur:
        assert vector_candidates(minilm_space, "nghỉ phép", search_scope(employee), limit=1500)
        cur.execute("SHOW enable_seqscan")
        assert cur.fetchone()[0] == "on"  # the caller's next queries plan normally
    result = run_search(employee, "nghỉ phép", page=10_000)  # ?page=10000: a last page, not an error
    assert result.hits and result.page == result.pages
