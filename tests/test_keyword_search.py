"""BM25 keyword index inside PostgreSQL: tokenisation, scoring against a hand
computation, accent folding, the access filter inside the SQL, re-indexing and
deletion bookkeeping, "did you mean" and highlighting."""
from __future__ import annotations

import hashlib
import itertools
import math
import unicodedata

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command

from documents.models import Chunk, Document
from documents.selectors import visible_documents
from search.models import KeywordPosting, KeywordStats, KeywordTerm
from search.services import keyword_index as ki
from search.services.keyword_index import fold, tokenize

pytestmark = pytest.mark.django_db
_seq = itertools.count(1)
K1, B = 1.2, 0.75


def make_doc(*texts: str, level: int = 0, status: str = "ready", heading: list[str] | None = None,
             index: bool = True) -> Document:
    n = next(_seq)
    doc = Document.objects.create(code=f"KW_{n}", title=f"kw {n}", access_level=level, status=status,
                                  source_file=f"kw/{n}.txt", original_filename=f"{n}.txt",
                                  checksum=hashlib.sha256(f"kw{n}".encode()).hexdigest())
    for i, text in enumerate(texts):
        Chunk.objects.create(document=doc, ordinal=i, text=text, token_count=len(text.split()),
                             heading_path=heading or [], char_start=0, char_end=len(text))
    if index:
        ki.index_document(doc.pk)
    return doc


def allowed(user=None) -> tuple[str, list]:
    qs = visible_documents(user or AnonymousUser(), Document.objects.filter(status="ready"))
    sql, params = qs.order_by().values("id").query.sql_with_params()
    return sql, list(params)


def search(query: str, user=None, **kw) -> list[tuple[int, float]]:
    sql, params = allowed(user)
    return ki.keyword_search(query, sql, params, **kw)


def chunk_of(doc: Document, ordinal: int = 0) -> int:
    return doc.chunks.get(ordinal=ordinal).pk


def df(term: str) -> int:
    return KeywordTerm.objects.filter(term=term).values_list("df", flat=True).first() or 0


def chunks_with(term: str) -> int:
    return KeywordPosting.objects.filter(term__term=term).count()


# --- tokenisation -------------------------------------------------------------

def test_tokenize_vietnamese_nfc_lowercase_and_codes():
    assert tokenize("Chính sách NGHỈ PHÉP năm 2024") == ["chính", "sách", "nghỉ", "phép", "năm", "2024"]
    nfd = unicodedata.normalize("NFD", "Nghỉ phép Đà Nẵng")
    assert nfd != unicodedata.normalize("NFC", nfd)
    assert tokenize(nfd) == ["nghỉ", "phép", "đà", "nẵng"]
    assert tokenize("Nghị định 13/2023/NĐ-CP, COVID-19.") == [
        "nghị", "định", "13", "2023", "nđ", "cp", "13/2023/nđ-cp", "covid", "19", "covid-19"]
    assert tokenize("  ,.;  ") == []


def test_fold_removes_diacritics_and_d_stroke():
    assert fold("nghỉ phép") == "nghi phep"
    assert fold("Đường Đi đến") == "duong di den"
    assert fold(unicodedata.normalize("NFD", "Đà Nẵng ưu tiên")) == "da nang uu tien"
    assert fold("ơ ư ă â ê ô ỹ Ỵ") == "o u a a e o y y"
    assert fold("covid-19") == "covid-19"


# --- BM25 ---------------------------------------------------------------------

def test_bm25_scores_match_hand_computation():
    d1 = make_doc("mèo đen")            # 2 tokens
    d2 = make_doc("mèo trắng mèo")      # 3 tokens, tf(mèo) = 2
    make_doc("chó")                     # 1 token
    ki.rebuild()                        # bake the final average length: (2 + 3 + 1) / 3 = 2
    stats = KeywordStats.objects.get()
    assert (stats.chunk_count, stats.total_length, stats.avg_length_at_build) == (3, 6, 2.0)

    n, avg = 3, 2.0
    idf = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))  # "mèo" and "~meo": df 2 of 3

    def weight(tf, length):
        return tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))

    q = ki.EXACT_WEIGHT + ki.FOLD_WEIGHT  # the exact and the folded term match alike here
    expected = {chunk_of(d2): q * idf * weight(2, 3), chunk_of(d1): q * idf * weight(1, 2)}
    got = search("Mèo")
    assert [c for c, _ in got] == [chunk_of(d2), chunk_of(d1)]
    for chunk_id, score in got:
        assert score == pytest.approx(expected[chunk_id], rel=1e-9)
    assert weight(1, 2) == pytest.approx(1.0)  # sanity of the hand formula at the average length

    # two terms add up; a repeated query token counts twice (BM25Okapi)
    idf_den = math.log(1 + (n - 1 + 0.5) / (1 + 0.5))
    two = dict(search("mèo đen"))
    assert two[chunk_of(d1)] == pytest.approx(q * idf * 1.0 + q * idf_den * 1.0)
    assert dict(search("mèo mèo"))[chunk_of(d1)] == pytest.approx(2 * q * idf)


def test_heading_path_is_indexed_with_the_chunk():
    doc = make_doc("Người lao động được nghỉ mười hai ngày.", heading=["Chính sách nghỉ phép", "2. Phạm vi"])
    assert [c for c, _ in search("phạm vi")] == [chunk_of(doc)]


def test_accentless_query_finds_accented_text_and_exact_accent_ranks_first():
    exact = make_doc("quy định nghỉ phép năm")
    folded_only = make_doc("quy định nghĩ phép năm")   # same length, differs only in the tone mark
    make_doc("báo cáo tài chính quý")
    assert {c for c, _ in search("nghi phep")} == {chunk_of(exact), chunk_of(folded_only)}
    ranked = search("nghỉ phép")
    assert [c for c, _ in ranked] == [chunk_of(exact), chunk_of(folded_only)]
    assert ranked[0][1] > ranked[1][1]
    assert [c for c, _ in search("NGHỈ")][:1] == [chunk_of(exact)]
    assert [c for c, _ in search(unicodedata.normalize("NFD", "nghỉ phép"))][:1] == [chunk_of(exact)]


def test_access_filter_is_inside_the_query_and_the_limit_is_filled_from_visible_chunks():
    hidden = [make_doc("hợp đồng hợp đồng hợp đồng", level=3) for _ in range(5)]
    visible = [make_doc(f"hợp đồng số {i} về thuê nhà ở và các điều khoản khác") for i in range(5)]
    make_doc("hợp đồng và các điều khoản khác nữa", status="processing")
    everything = ki.keyword_search("hợp đồng", "SELECT id FROM documents_document", [], limit=5)
    assert {c for c, _ in everything} == {chunk_of(d) for d in hidden}  # hidden would win unfiltered

    got = search("hợp đồng", limit=3)
    assert len(got) == 3
    assert {c for c, _ in got} <= {chunk_of(d) for d in visible}
    assert {c for c, _ in search("hợp đồng", limit=50)} == {chunk_of(d) for d in visible}


def test_two_phase_scoring_agrees_with_exact_on_a_small_corpus():
    docs = [make_doc(f"văn bản số {i} quy định về an toàn lao động và phòng cháy chữa cháy tại nhà máy {i}")
            for i in range(8)]
    target = make_doc("quy trình kiểm tra thiết bị phòng cháy chữa cháy định kỳ hằng tháng")
    query = "quy trình kiểm tra thiết bị phòng cháy chữa cháy tại nhà máy"
    exact = search(query, exact=True, limit=5)
    two = search(query, exact=False, limit=5)
    assert exact[0][0] == two[0][0] == chunk_of(target)
    assert two[0][1] == pytest.approx(exact[0][1])  # phase 2 added the common terms' scores
    assert {c for c, _ in two} <= {c for c, _ in exact} | {chunk_of(d) for d in docs}


def test_a_long_query_ranks_as_exact_scoring_does():
    """Only the rarest MAX_RARE_TOKENS tokens pick candidates; every other token
    is still scored for them, so the best chunk and its score stay exact."""
    words = ("tiêm vaccine phòng bệnh dại uốn ván sởi quai bị rubella thủy đậu cúm mùa viêm gan "
             "viêm não nhật bản bạch hầu ho gà bại liệt").split()
    assert len(set(words)) > ki.MAX_RARE_TOKENS + 5
    for i in range(6):
        make_doc(" ".join(words[i::3]) + f" hướng dẫn số {i}")
    target = make_doc(" ".join(words) + " lịch tiêm chủng đầy đủ cho trẻ em")
    query = " ".join(words) + " lịch tiêm chủng cho trẻ"
    exact = search(query, exact=True, limit=5)
    two = search(query, exact=False, limit=5)
    assert exact[0][0] == two[0][0] == chunk_of(target)
    assert two[0][1] == pytest.approx(exact[0][1])


def test_a_very_common_term_is_read_heaviest_postings_first(monkeypatch):
    """Phase 1 reads at most TERM_CAP postings of a term, the heaviest ones (the
    impact index): the chunks where the term weighs most are still found."""
    for i in range(12):
        make_doc(f"vaccine là một chủ đề trong văn bản dài số {i} về nhiều vấn đề khác nhau của công ty")
    target = make_doc("vaccine vaccine covid")
    monkeypatch.setattr(ki, "TERM_CAP", 2)
    got = search("vaccine covid", exact=False, limit=10)
    assert got[0][0] == chunk_of(target)
    assert len(got) <= 2 * 2 + 1  # ≤ 2 postings per term (exact and folded forms of 2 tokens overlap)
    exact = search("vaccine covid", exact=True, limit=20)
    assert len(exact) == 13
    scores = dict(exact)
    for chunk_id, score in got:  # the capped term is scored in full for every candidate
        assert score == pytest.approx(scores[chunk_id])


# --- index bookkeeping ----------------------------------------------------------

def test_reindexing_is_idempotent():
    doc = make_doc("bảo hiểm xã hội bắt buộc", "bảo hiểm y tế tự nguyện")
    make_doc("bảo hiểm thất nghiệp")
    ki.index_document(doc.pk)  # weights now baked with the 3-chunk average, like the other document's

    def postings():
        return sorted(KeywordPosting.objects.filter(document=doc).values_list("term__term", "chunk_id", "weight"))

    before, first = postings(), search("bảo hiểm y tế")
    for _ in range(2):
        assert ki.index_document(doc.pk) == len(before) - 2  # minus the two '#len' rows
    assert postings() == before
    assert df("bảo") == 3 == chunks_with("bảo")
    assert df("~bao") == 3 and df("y") == 1
    assert KeywordStats.objects.get().chunk_count == 3
    assert search("bảo hiểm y tế") == first

    # the text changed: the old words go, df follows
    Chunk.objects.filter(document=doc, ordinal=1).update(text="an toàn vệ sinh")
    ki.index_document(doc.pk)
    assert df("y") == 0 and df("vệ") == 1 and df("bảo") == 2 == chunks_with("bảo")


def test_deleting_a_document_removes_postings_df_and_statistics():
    gone = make_doc("phòng chống dịch bệnh", "dịch vụ công")
    kept = make_doc("dịch thuật tài liệu")
    assert df("dịch") == 3 and KeywordStats.objects.get().chunk_count == 3
    gone.delete()   # cascade; the postings' delete trigger corrects df and the statistics
    assert not KeywordPosting.objects.filter(document_id=gone.pk).exists()
    assert df("dịch") == 1 == chunks_with("dịch") and df("~dich") == 1 and df("phòng") == 0
    stats = KeywordStats.objects.get()
    assert stats.chunk_count == 1 and stats.total_length == len(tokenize("dịch thuật tài liệu"))
    assert [c for c, _ in search("phòng chống dịch")] == [chunk_of(kept)]

    assert ki.remove_document(kept.pk) > 0
    assert df("dịch") == 0 and KeywordStats.objects.get().chunk_count == 0
    assert search("dịch") == []


def test_rebuild_matches_incremental_indexing_and_skips_unready_documents():
    make_doc("an toàn lao động", "lao động nữ")
    make_doc("hợp đồng lao động")
    pending = make_doc("lao động thời vụ", status="processing")
    incremental = {t.term: t.df for t in KeywordTerm.objects.all() if t.df}
    call_command("rebuild_keyword_index", "--no-progress")
    assert not KeywordPosting.objects.filter(document=pending).exists()
    rebuilt = {t.term: t.df for t in KeywordTerm.objects.all()}
    assert rebuilt["lao"] == 3 == incremental["lao"] - 1 and rebuilt["~lao"] == 3
    assert "thời" not in rebuilt and incremental["thời"] == 1
    assert KeywordStats.objects.get().chunk_count == 3
    # the term table can grow again after the rebuild (sequence reset right)
    make_doc("lao động thời vụ")
    assert df("thời") == 1 and df("lao") == 4


# --- suggestions and highlighting --------------------------------------------

def test_suggest_returns_the_accented_form_from_visible_documents_only(django_user_model):
    make_doc("quy định nghỉ phép năm", "đơn xin nghỉ phép")
    make_doc("nghĩ về tương lai")
    for _ in range(4):
        make_doc("suy nghĩ nghĩ kỹ nghĩ lại. Tài liệu bí mật", level=3)
    sql, params = allowed()
    assert ki.suggest("nghi phep", sql, params) == "nghỉ phép"
    assert ki.suggest("Nghi", sql, params) == "Nghỉ"         # the visible frequency, not the hidden one
    assert ki.suggest("bi mat", sql, params) is None          # only in a document the user cannot see
    assert ki.suggest("nghỉ phép", sql, params) is None       # already accented
    assert ki.suggest("xyz", sql, params) is None

    admin = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    sql, params = allowed(admin)
    assert ki.suggest("bi mat", sql, params) == "bí mật"
    assert ki.suggest("nghi", sql, params) == "nghĩ"


def test_a_document_deleted_between_ranking_and_the_page_is_left_out(monkeypatch):
    """A document deleted (or re-ingested: its chunks replaced) after the ranking but
    before the page is built — an upload or a migration's backfill meanwhile — is
    left out of the page; the search does not fail and the others keep their ranks."""
    from search.services import results

    gone, changed, kept = (make_doc(f"hợp đồng lao động mẫu số {n}", "phụ lục hợp đồng") for n in range(3))
    grouped = results._group_by_document

    def then_delete(ranked):
        groups = grouped(ranked)
        Document.objects.filter(pk=gone.pk).delete()
        Chunk.objects.filter(document=changed).delete()
        return groups

    monkeypatch.setattr(results, "_group_by_document", then_delete)
    result = results.run_search(AnonymousUser(), "hợp đồng lao động", "keyword")
    assert [h.document.pk for h in result.hits] == [kept.pk]
    assert [h.rank for h in result.hits] == [1]
    assert result.hits[0].snippet
