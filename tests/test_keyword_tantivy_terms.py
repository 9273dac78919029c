"""With the tantivy engine, did-you-mean and the relevance floor's word weights
come from the tantivy index (its term dictionary and doc_freq), not from the
PostgreSQL postings tables: these tests leave those tables empty."""
from __future__ import annotations

import hashlib
import itertools
import math

import pytest
from django.contrib.auth.models import AnonymousUser

from documents.models import Chunk, Document
from search.models import KeywordPosting, KeywordTerm
from search.services import keyword_engine, relevance
from search.services.filters import search_scope
from search.services.keyword_engine import terms, writer
from search.services.results import run_search

pytestmark = pytest.mark.django_db
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def tantivy_engine(settings, tmp_path):
    settings.KEYWORD_ENGINE = "tantivy"
    settings.KEYWORD_INDEX_DIR = tmp_path / "keyword-index"


def make_doc(*texts: str, level: int = 0) -> Document:
    n = next(_seq)
    doc = Document.objects.create(code=f"TT_{n}", title=f"tệp {n}", access_level=level, status="ready",
                                  source_file=f"tt/{n}.txt", original_filename=f"{n}.txt",
                                  checksum=hashlib.sha256(f"tt{n}".encode()).hexdigest())
    for i, text in enumerate(texts):
        Chunk.objects.create(document=doc, ordinal=i, text=text, token_count=len(text.split()),
                             char_start=0, char_end=len(text))
    return doc


def suggest(query: str, user=None) -> str | None:
    return keyword_engine.suggest(query, search_scope(user or AnonymousUser()))


@pytest.fixture
def corpus():
    make_doc("quy định nghỉ phép năm", "đơn xin nghỉ phép")
    make_doc("nghĩ về tương lai")
    secret = [make_doc("suy nghĩ nghĩ kỹ nghĩ lại. Tài liệu bí mật", level=3) for _ in range(4)]
    writer.rebuild()
    assert not KeywordPosting.objects.exists() and not KeywordTerm.objects.exists()  # nothing to read there
    return secret


def test_written_forms_come_from_the_term_dictionary(corpus):
    from search.services.keyword_engine import store

    searcher = store.reader().searcher()
    assert sorted(terms.written_forms(searcher, "nghi")) == ["nghĩ", "nghỉ"]
    assert terms.written_forms(searcher, "bi") == ["bí"]
    assert terms.written_forms(searcher, "dinh") == ["định"]  # "đ": its variants walked too
    assert terms.written_forms(searcher, "xyz") == []


def test_suggest_returns_the_accented_form_from_visible_documents_only(corpus, django_user_model):
    assert suggest("nghi phep") == "nghỉ phép"
    assert suggest("Nghi") == "Nghỉ"               # the visible frequency, not the hidden one
    assert suggest("bi mat") is None                # only in a document the user cannot see
    assert suggest("nghỉ phép") is None             # already accented
    assert suggest("xyz") is None
    admin = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    assert suggest("bi mat", admin) == "bí mật"
    assert suggest("nghi", admin) == "nghĩ"


def test_a_stale_index_entry_cannot_reveal_a_suggestion():
    """The index still holds the document as public (the writer has not run), the
    SQL already says confidential: the suggestion is withheld."""
    doc = make_doc("báo cáo tài chính quý")
    writer.rebuild()
    assert suggest("bao cao") == "báo cáo"
    Document.objects.filter(pk=doc.pk).update(access_level=3)
    assert suggest("bao cao") is None


def test_the_results_page_suggests_from_tantivy():
    doc = make_doc("Nhân viên được nghỉ phép mười hai ngày mỗi năm.")
    writer.rebuild()
    result = run_search(AnonymousUser(), "nghi phep", "keyword")
    assert [h.document.pk for h in result.hits] == [doc.pk]
    assert result.suggestion == "nghỉ phép"


def test_word_weights_are_the_index_document_frequencies():
    make_doc("hợp đồng lao động", "lao động nữ", "nghỉ phép")
    make_doc("hợp đồng thuê nhà", "thuê xe")
    writer.rebuild()
    df, chunks = keyword_engine.document_frequencies({"hợp", "lao", "~thue", "~xyz", "nhà"})
    assert chunks == 5
    assert df == {"hợp": 2, "lao": 2, "~thue": 2, "nhà": 1}
    idf = lambda d: math.log(1 + (5 - d + 0.5) / (d + 0.5))  # noqa: E731
    weights = relevance.query_weights("hợp đồng thuê nhà xyz")
    assert weights["hợp"] == pytest.approx(idf(2)) and weights["nhà"] == pytest.approx(idf(1))
    assert weights["xyz"] == pytest.approx(idf(0))  # found nowhere: the heaviest
    assert relevance.query_weights("thue nha")["thue"] == pytest.approx(idf(2))  # typed without accents: folded


def test_the_keyword_floor_weighs_words_with_the_index(corpus):
    """A chunk matching only the common word of a query is below a floor its rare
    word decides (weights from tantivy: the postings tables are empty)."""
    from types import SimpleNamespace

    common = make_doc("quy định chung", "quy định chung", "quy định chung")
    rare = make_doc("quy định về thai sản")
    writer.rebuild()
    ids = {doc.pk: list(doc.chunks.values_list("pk", flat=True)) for doc in (common, rare)}
    ranked = [(c, 1.0) for pk in ids for c in ids[pk]]
    kept = relevance.above_keyword_floor(SimpleNamespace(keyword_floor=0.5), "quy định thai sản", ranked)
    assert {c for c, _ in kept} == set(ids[rare.pk])
