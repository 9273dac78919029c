"""evaluate_corpus with the tantivy engine: the scratch database gets its own
tantivy index (a temporary folder, built from the scratch documents), the
machine's copy of the portal's index is neither searched nor replaced."""
from __future__ import annotations

import csv
import glob
import json
import os
import tempfile
from io import StringIO

import pytest
from django.core.management import call_command

from search.services.keyword_engine import store, writer
from tests.test_keyword_tantivy_writer import make_doc

ROWS = {
    "train": [("1", "Vắc xin có an toàn không?", "Vắc xin đã được cấp phép và an toàn khi tiêm.")],
    "val": [("2", "Cách ly bao nhiêu ngày?", "Cách ly tại nhà 7 ngày kể từ khi có kết quả dương tính.")],
    "test": [("3", "Khó thở đau ngực thì làm gì?", "Khi khó thở hoặc đau tức ngực kéo dài, hãy đến cơ sở y tế."),
             ("4", "Đeo khẩu trang loại nào?", "Khẩu trang y tế hoặc khẩu trang vải nhiều lớp, đeo kín mũi."),
             ("5", "Triệu chứng sốt ho là gì?", "Sốt, ho khan, mệt mỏi và mất vị giác.")],
}


def test_evaluate_corpus_builds_the_scratch_database_its_own_tantivy_index(transactional_db, settings, tmp_path):
    settings.KEYWORD_ENGINE = "tantivy"
    settings.KEYWORD_INDEX_DIR = machine = tmp_path / "machine-index"
    settings.VAR_DIR = tmp_path
    make_doc("khẩu trang y tế khẩu trang vải đeo kín mũi khi khó thở")  # the portal's (test) documents
    writer.rebuild()
    copy = store.current_copy()
    folder = tmp_path / "vicov"
    folder.mkdir()
    for split, lines in ROWS.items():
        with open(folder / f"UIT-ViCoV19QA_{split}.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="|", quotechar='"', quoting=csv.QUOTE_MINIMAL)
            w.writerow(["id", "Question", "Answer_1"])
            w.writerows(lines)
    out = StringIO()
    call_command("evaluate_corpus", "--csv", str(folder), "--mode", "keyword", "--name", "tiny-tantivy",
                 "--no-record", stdout=out)
    text = out.getvalue()
    assert "keyword index (tantivy)" in text, text
    data = json.loads((tmp_path / "reports" / "tiny-tantivy" / "performance_metrics.json").read_text())
    assert data["benchmark"]["keyword_engine"] == "tantivy"
    assert data["runs"][0]["metrics"]["MRR@10"] == pytest.approx(1.0)  # each question finds its own answer
    # the machine's copy: the same folder, the same copy, searched again afterwards
    assert settings.KEYWORD_INDEX_DIR == machine and store.current_copy() == copy
    assert store.reader().searcher().num_docs == 1
    assert not glob.glob(f"{tempfile.gettempdir()}/eval_scratch_{os.getpid()}-keyword-*")  # this run's, removed
