"""Rerank mode with a small cross-encoder built on the fly; the ingest command;
pagination of grouped results."""
from pathlib import Path

import pytest
from django.core.management import call_command

from documents.models import Document
from documents.services.processing import process_document
from search.services import embedding, keyword_index, spaces
from search.services.results import run_search
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db


def test_rerank_orders_candidates_by_the_cross_encoder(settings, tiny_cross_encoder, minilm_path):
    from sentence_transformers import CrossEncoder

    docs = [f.document(0, text=f"# Tài liệu VPN {i}\n\n## Nội dung\n\nHướng dẫn VPN số {i}: cài đặt, kết nối, "
                              f"xử lý lỗi {'mạng ' * i}.\n", status="pending") for i in range(5)]
    for d in docs:
        process_document(d.pk)
    space = spaces.activate(spaces.create_space("rr", minilm_path))
    embedding.backfill(space)
    keyword_index.rebuild()
    settings.RERANK_MODEL = tiny_cross_encoder
    settings.RERANK_DEPTH = 30
    result = run_search(None, "hướng dẫn VPN", "rerank")
    assert result.notice == "" and len(result.hits) == 5
    scorer = CrossEncoder(tiny_cross_encoder, device="cpu")
    scores = {h.document.pk: float(scorer.predict([("hướng dẫn VPN", h.chunk.text)])[0]) for h in result.hits}
    assert [h.document.pk for h in result.hits] == sorted(scores, key=lambda pk: -scores[pk])
    settings.RERANK_MODEL = None
    assert run_search(None, "hướng dẫn VPN", "rerank").notice == "no-reranker"  # off when none is configured


def test_ingest_command_takes_files_and_folders_with_metadata(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_bytes(files.md_bytes())
    (folder / "sub" / "b.docx").write_bytes(files.docx_bytes())
    (folder / "ignored.exe").write_bytes(b"MZ")
    single = tmp_path / "c.txt"
    single.write_bytes(files.txt_bytes())
    f.department("IT")
    from documents.models import Tag

    Tag.objects.create(slug="bao-mat", name="Bảo mật")
    call_command("ingest", str(folder), str(single), "--department", "IT", "--type", "technical_guide",
                 "--level", "2", "--tags", "bao-mat", "--sync", stdout=open("/dev/null", "w"))
    docs = Document.objects.all()
    assert docs.count() == 3
    assert {d.status for d in docs} == {"ready"}
    assert {(d.document_type, d.access_level) for d in docs} == {("technical_guide", 2)}
    assert all(list(d.departments.values_list("code", flat=True)) == ["IT"] for d in docs)
    assert all(list(d.tags.values_list("slug", flat=True)) == ["bao-mat"] for d in docs)
    call_command("ingest", str(folder), "--sync", stdout=open("/dev/null", "w"))  # again: all duplicates
    assert Document.objects.count() == 3


def test_ingest_command_refuses_unknown_metadata(tmp_path):
    from django.core.management.base import CommandError

    (tmp_path / "a.md").write_bytes(files.md_bytes())
    with pytest.raises(CommandError, match="Phòng ban không tồn tại: NOPE"):  # the portal's language (vi)
        call_command("ingest", str(tmp_path), "--department", "NOPE", "--sync")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("ingest", str(tmp_path / "missing"), "--sync")


def test_results_paginate_by_document():
    for i in range(23):
        doc = f.document(0, text=f"# Quy định {i}\n\n## Nội dung\n\nQuy định nội bộ số {i} về bảo mật.\n",
                         status="pending")
        process_document(doc.pk)
    keyword_index.rebuild()
    pages = [run_search(None, "quy định bảo mật", "keyword", page=p, page_size=10) for p in (1, 2, 3)]
    assert [p.pages for p in pages] == [3, 3, 3]
    assert [len(p.hits) for p in pages] == [10, 10, 3]
    ids = [h.document.pk for p in pages for h in p.hits]
    assert len(ids) == len(set(ids)) == 23
    assert [h.rank for h in pages[1].hits] == list(range(11, 21))
    assert run_search(None, "quy định bảo mật", "keyword", page=99, page_size=10).page == 3
