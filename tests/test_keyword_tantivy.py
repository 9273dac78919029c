"""Keyword search on tantivy (issue 12): the Vietnamese analyzer (diacritics,
NFD input, queries typed without accents, mixed English, document numbers),
the access rule and the facets inside the engine's query, and the results page
(snippets with highlights, did-you-mean) with the tantivy engine selected."""
from __future__ import annotations

import hashlib
import itertools
import unicodedata
from datetime import date

import pytest
from django.contrib.auth.models import AnonymousUser
from guardian.shortcuts import assign_perm

from documents.models import Chunk, Department, Document, Tag
from documents.selectors import visible_documents
from search.services import keyword_engine
from search.services.filters import SearchFilters, search_scope
from search.services.keyword_engine import analysis, searching, store, writer
from search.services.results import run_search

pytestmark = pytest.mark.django_db
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def tantivy_engine(settings, tmp_path):
    settings.KEYWORD_ENGINE = "tantivy"
    settings.KEYWORD_INDEX_DIR = tmp_path / "keyword-index"


def make_doc(*texts: str, level: int = 0, title: str | None = None, heading=None, **fields) -> Document:
    n = next(_seq)
    doc = Document.objects.create(code=f"TV_{n}", title=title or f"tài liệu {n}", access_level=level,
                                  status="ready", source_file=f"tv/{n}.txt", original_filename=f"{n}.txt",
                                  checksum=hashlib.sha256(f"tv{n}".encode()).hexdigest(), **fields)
    for i, text in enumerate(texts):
        Chunk.objects.create(document=doc, ordinal=i, text=text, token_count=len(text.split()),
                             heading_path=heading or [], char_start=0, char_end=len(text))
    return doc


def found(query: str, user=None, filters=None, limit=50) -> list[int]:
    """Document ids, best first, as the tantivy engine answers (with the SQL check)."""
    ranked = keyword_engine.keyword_search(query, search_scope(user or AnonymousUser(), filters), limit)
    docs = dict(Chunk.objects.filter(pk__in=[c for c, _ in ranked]).values_list("pk", "document_id"))
    return list(dict.fromkeys(docs[c] for c, _ in ranked))


def in_index(query: str, user=None, filters=None) -> set[int]:
    """Document ids the index itself returns, before the SQL check."""
    scope = search_scope(user or AnonymousUser(), filters)
    ranked = searching.ranked_in_index(store.reader(), query, scope.key_filter, 1000)
    return set(Chunk.objects.filter(pk__in=[c for c, _ in ranked]).values_list("document_id", flat=True))


# --- the analyzer ----------------------------------------------------------------

def test_analyzer_keeps_syllables_exact_and_folded_from_nfd_input():
    nfd = unicodedata.normalize("NFD", "Chính sách NGHỈ PHÉP theo Nghị định 13/2023/NĐ-CP")
    exact, folded = analysis.index_fields(nfd)
    assert exact.split() == ["chính", "sách", "nghỉ", "phép", "theo", "nghị", "định",
                             "13", "2023", "nđ", "cp", "13/2023/nđ-cp"]
    assert folded.split() == ["chinh", "sach", "nghi", "phep", "theo", "nghi", "dinh",
                              "13", "2023", "nd", "cp", "13/2023/nd-cp"]


def test_vietnamese_queries_with_and_without_accents_and_in_nfd():
    leave = make_doc(unicodedata.normalize("NFD", "Quy định nghỉ phép năm của người lao động"))
    other = make_doc("Nghị quyết về phép tính lương")  # 'nghị', 'phép': other words, folded alike
    make_doc("Hướng dẫn cài đặt VPN cho Kubernetes cluster")
    writer.rebuild()
    assert found("nghỉ phép")[0] == leave.pk                         # NFD text, NFC query
    assert found(unicodedata.normalize("NFD", "nghỉ phép"))[0] == leave.pk  # NFD query
    assert set(found("nghi phep")[:2]) == {leave.pk, other.pk}       # no accents: folded matches both
    assert found("NGHỈ PHÉP")[0] == leave.pk                          # case
    assert found("lao dong") == [leave.pk]


def test_mixed_english_and_document_numbers():
    vpn = make_doc("Hướng dẫn cài đặt VPN cho Kubernetes cluster")
    decree = make_doc("Thực hiện theo Nghị định 13/2023/NĐ-CP về bảo vệ dữ liệu cá nhân")
    writer.rebuild()
    assert found("vpn kubernetes") == [vpn.pk]
    assert found("Kubernetes") == [vpn.pk]
    assert found("13/2023/NĐ-CP") == [decree.pk]
    assert found("nd-cp") == [decree.pk]
    assert found("xyzzy") == []


def test_exact_accents_rank_above_folded_only_matches():
    exact = make_doc("bàn giao tài sản")
    folded_only = make_doc("bán gạo tài sản")  # 'bán gạo' folds to 'ban gao' too
    writer.rebuild()
    assert found("bàn giao tài sản")[:2] == [exact.pk, folded_only.pk]


def test_heading_and_title_are_searched():
    doc = make_doc("Người lao động được nghỉ mười hai ngày.", heading=["Chính sách", "Phạm vi áp dụng"],
                   title="Sổ tay nhân viên")
    make_doc("Một văn bản khác về ngày nghỉ.")
    writer.rebuild()
    assert found("phạm vi áp dụng") == [doc.pk]
    assert found("so tay nhan vien") == [doc.pk]


# --- the scope inside the index's query -------------------------------------------

def test_access_rule_and_facets_run_inside_the_index_query(django_user_model):
    hr, it = Department.objects.create(code="hr", name="HR"), Department.objects.create(code="it", name="IT")
    parent = Tag.objects.create(slug="nhan-su", name="Nhân sự")
    child = Tag.objects.create(slug="nghi-phep", name="Nghỉ phép", parent=parent)
    docs = {
        "public": make_doc("quy trình nghỉ phép", level=0, document_type="policy", language="vi",
                           effective_date=date(2024, 1, 1)),
        "internal": make_doc("quy trình nghỉ phép nội bộ", level=1, document_type="procedure"),
        "hr": make_doc("quy trình nghỉ phép của phòng nhân sự", level=2, effective_date=date(2025, 6, 1)),
        "it": make_doc("quy trình nghỉ phép của phòng IT", level=2, language="en"),
        "secret": make_doc("quy trình nghỉ phép mật", level=3),
    }
    docs["hr"].departments.add(hr)
    docs["it"].departments.add(it)
    docs["hr"].tags.add(child)
    member = django_user_model.objects.create(username="lan", clearance=2)
    member.departments.add(hr)
    granted = django_user_model.objects.create(username="tuan", clearance=1)
    assign_perm("documents.view_document", granted, docs["secret"])
    owner = django_user_model.objects.create(username="ha", clearance=0)
    Document.objects.filter(pk=docs["it"].pk).update(owner=owner)
    boss = django_user_model.objects.create(username="boss", clearance=3)
    root = django_user_model.objects.create(username="root", is_superuser=True)
    writer.rebuild()

    filters = [None, SearchFilters(departments=["hr"]), SearchFilters(tags=["nhan-su"]),
               SearchFilters(document_types=["policy", "procedure"]), SearchFilters(languages=["en"]),
               SearchFilters(date_from=date(2024, 6, 1)), SearchFilters(date_to=date(2024, 6, 1)),
               SearchFilters(tags=["no-such-tag"])]
    for user in (AnonymousUser(), member, granted, owner, boss, root):
        for f in filters:
            from search.services.filters import allowed_documents

            expected = set(allowed_documents(user, f).values_list("pk", flat=True))
            assert in_index("quy trinh nghi phep", user, f) == expected, (user, f)
            assert set(found("quy trình nghỉ phép", user, f)) == expected, (user, f)
    assert in_index("nghỉ phép", AnonymousUser()) == {docs["public"].pk}
    assert visible_documents(member).filter(pk=docs["hr"].pk).exists()


def test_the_limit_is_filled_from_visible_chunks():
    for n in range(30):
        make_doc(f"báo cáo ngân sách quý {n} " * 3, level=3)  # hidden, and better matches
    visible = [make_doc(f"báo cáo ngân sách năm {n}") for n in range(5)]
    writer.rebuild()
    assert sorted(found("báo cáo ngân sách", limit=5)) == sorted(d.pk for d in visible)


# --- the results page --------------------------------------------------------------

def test_results_page_highlights_and_suggests_with_tantivy():
    doc = make_doc("Nhân viên được nghỉ phép mười hai ngày mỗi năm.")
    writer.rebuild()  # did-you-mean reads the tantivy index (tests/test_keyword_tantivy_terms.py)
    result = run_search(AnonymousUser(), "nghi phep", "keyword")
    assert [h.document.pk for h in result.hits] == [doc.pk]
    assert "<mark>nghỉ phép</mark>" in result.hits[0].snippet
    assert result.suggestion == "nghỉ phép"


def test_postgres_answers_until_this_machine_has_a_copy():
    from search.services import keyword_index

    doc = make_doc("hợp đồng lao động")
    keyword_index.index_document(doc.pk)
    assert store.current_copy() is None
    assert found("hợp đồng") == [doc.pk]
