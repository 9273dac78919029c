"""Training datasets from imported files and the benchmark: formats, refusals
(every malformed line named, nothing written), the document of each pair, the
split by document, counts and the content hash."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.models import DatasetStatus, TrainingDataset, TrainingPair
from finetune.services.datasets import DatasetRefused, DatasetSpec, PairRecord, build_dataset
from finetune.services.datasets.splitting import assign_splits, content_hash
from finetune.services.texts import near_key, passage_key
from tests.finetune_helpers import jsonl, meta_doc, metadata, pairs_of, vicov_file

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Messages are compared in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield

PAIRS = [{"query": f"câu hỏi số {i} về nghỉ phép", "positive": f"Đoạn văn {i}: người lao động được nghỉ {i} ngày.",
          "query_type": "question", "domain": "hr"} for i in range(30)]


def test_positive_pairs_file_builds_a_split_dataset():
    seen = []
    dataset = build_dataset("pairs", DatasetSpec(pairs=jsonl("positive_pairs.jsonl", *PAIRS, {**PAIRS[0], "x": 1}),
                                                 eval_share=0.2, seed=1),
                            progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert dataset.status == DatasetStatus.READY, dataset.validation
    assert [s for s in seen if s[0] == "splitting"][-1] == ("splitting", 30, 30), "the progress bar must end full"
    rows = pairs_of(dataset)
    assert len(rows) == 30  # the repeated line is merged, and counted
    assert dataset.counts["duplicates_merged"] == 1
    assert dataset.sources[0] == {"source": "pairs", "file": "positive_pairs.jsonl", "pairs": 31,
                                  "ignored_fields": {"x": 1}}
    assert {r["doc_key"] for r in rows} == {passage_key(p["positive"]) for p in PAIRS}  # no document known
    assert rows[0]["line"] == 1 and rows[0]["query_type"] == "question" and rows[0]["domain"] == "hr"
    assert dataset.counts["eval"]["documents"] == 6 and dataset.counts["train"]["documents"] == 24
    assert dataset.counts["by_source"]["pairs"] == {"pairs": 30, "train": 24, "eval": 6, "negatives": 0}
    assert dataset.access_levels == [] and dataset.counts["access_unknown"] == 30
    assert len(dataset.content_hash) == 64


def test_malformed_lines_are_all_named_and_nothing_is_written():
    bad = jsonl("positive_pairs.jsonl", PAIRS[0], {"query": "q"}, {"query": "", "positive": "p"},
                {"query": "q", "positive": "p", "query_type": "x" * 51}, {"query": 3, "positive": "p"},
                raw=["{not json", "[1, 2]", ""])
    with pytest.raises(DatasetRefused) as refused:
        build_dataset("bad", DatasetSpec(pairs=bad))
    problems = "\n".join(refused.value.problems)
    for expected in ('line 2: "positive" is missing', 'line 3: "query" is empty', 'line 4: "query_type" is longer',
                     'line 5: "query" is missing or not a string', "line 6: not valid JSON",
                     "line 7: expected a JSON object"):
        assert expected in problems
    assert "line 1" not in problems
    assert not TrainingDataset.objects.exists() and not TrainingPair.objects.exists()


@pytest.mark.parametrize("data,problem", [
    (b"", "no pairs in the file"),
    ("câu hỏi".encode("utf-16"), "not UTF-8 text"),
])
def test_an_empty_or_undecodable_file_is_refused(data, problem):
    from finetune.services.datasets import SourceFile

    with pytest.raises(DatasetRefused, match=problem):
        build_dataset("x", DatasetSpec(pairs=SourceFile("positive_pairs.jsonl", data)))


def test_hard_negatives_file():
    good = {"query": "hạn hoàn ứng", "positive": "Hoàn ứng trong 10 ngày.", "hard_negative": "Tạm ứng trước 5 ngày.",
            "negative_score": 0.61}
    dataset = build_dataset("neg", DatasetSpec(negatives=jsonl("hard_negatives.jsonl", good), eval_share=0))
    pair = dataset.pairs.get()
    assert (pair.negative, pair.negative_score, pair.source) == ("Tạm ứng trước 5 ngày.", 0.61, "negatives")
    assert dataset.counts["negatives"] == 1
    with pytest.raises(DatasetRefused) as refused:
        build_dataset("neg2", DatasetSpec(negatives=jsonl(
            "hard_negatives.jsonl", {**good, "hard_negative": "hoàn ứng trong 10 ngày"},
            {**good, "negative_score": "high"}, {**good, "hard_negative": None}, {**good, "negative_score": True})))
    assert refused.value.problems == [
        "hard_negatives.jsonl: line 1: the hard negative is the positive itself",
        'hard_negatives.jsonl: line 2: "negative_score" is not a number',
        'hard_negatives.jsonl: line 3: "hard_negative" is missing or not a string',
        'hard_negatives.jsonl: line 4: "negative_score" is not a number']


def test_metadata_gives_imported_pairs_their_document_and_access_level():
    meta = metadata(
        meta_doc("HR-1", 2, "Người lao động được nghỉ phép năm 12 ngày làm việc.", "Nghỉ kết hôn được 3 ngày."),
        meta_doc("IT-1", 0, "Kết nối VPN bằng ứng dụng FortiClient trước khi truy cập hệ thống nội bộ."),
        meta_doc("IT-2", 1, "Mật khẩu phải dài ít nhất 12 ký tự."),
        meta_doc("IT-3", 1, "Mật khẩu phải dài ít nhất 12 ký tự và đổi mỗi 90 ngày."))
    pairs = jsonl("positive_pairs.jsonl",
                  {"query": "phép năm", "positive": "Người lao động được nghỉ phép năm 12 ngày làm việc."},  # exact
                  {"query": "cưới", "positive": "nghi ket hon duoc 3 ngay"},  # near: accents and case
                  {"query": "vpn", "positive": "ứng dụng FortiClient trước khi truy cập"},  # contained, one doc
                  {"query": "mật khẩu", "positive": "khẩu phải dài ít nhất 12 ký tự"},  # contained in two docs
                  {"query": "khác", "positive": "Một đoạn không có trong metadata."})
    dataset = build_dataset("meta", DatasetSpec(pairs=pairs, metadata=meta, eval_share=0))
    rows = {r["query"]: r for r in pairs_of(dataset)}
    assert (rows["phép năm"]["doc_key"], rows["phép năm"]["access_level"]) == ("meta:HR-1", 2)
    assert rows["phép năm"]["domain"] == "policy"  # the document's type when the line names no domain
    assert rows["cưới"]["doc_key"] == "meta:HR-1"
    assert (rows["vpn"]["doc_key"], rows["vpn"]["access_level"]) == ("meta:IT-1", 0)
    assert rows["mật khẩu"]["doc_key"].startswith("passage:") and rows["mật khẩu"]["access_level"] is None
    assert rows["khác"]["doc_key"].startswith("passage:")
    assert dataset.access_levels == [0, 2]
    assert dataset.sources[0]["matched_to_metadata"] == 3
    assert dataset.sources[1] == {"source": "metadata", "file": "document_metadata.json", "documents": 4, "chunks": 5}


def test_malformed_metadata_is_refused_with_json_paths():
    bad = metadata(meta_doc("A", 1, "x"), meta_doc("A", 1, "y"), {**meta_doc("B", 5, "z")},
                   {**meta_doc("C", 1, "z"), "chunks": [{"chunk_id": 1, "text": " "}]}, "not an object",
                   {**meta_doc("D", 1, "z"), "tags": "hr"})
    with pytest.raises(DatasetRefused) as refused:
        build_dataset("m", DatasetSpec(pairs=jsonl("p.jsonl", PAIRS[0]), metadata=bad))
    assert refused.value.problems == [
        "document_metadata.json: documents[1]: \"doc_id\" 'A' appears twice",
        'document_metadata.json: documents[2]: "access_level" must be 0, 1, 2 or 3',
        'document_metadata.json: documents[3].chunks[0]: "text" is missing or empty',
        "document_metadata.json: documents[4]: expected an object",
        "document_metadata.json: documents[5]: expected a list of strings"]
    with pytest.raises(DatasetRefused, match="not valid JSON"):
        build_dataset("m", DatasetSpec(pairs=jsonl("p.jsonl", PAIRS[0]),
                                       metadata=jsonl("document_metadata.json", raw=["{"])))


def test_options_are_checked_before_anything_is_written():
    build_dataset("taken", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)))
    with pytest.raises(DatasetRefused) as refused:
        build_dataset("taken", DatasetSpec(eval_share=0.9, per_chunk=0, synthetic="gpt", feedback=True))
    assert refused.value.problems == [
        "A dataset named 'taken' exists already.", "The eval share must be between 0 and 0.5.",
        "Synthetic queries per chunk must be between 1 and 20.",
        "Unknown synthetic generator 'gpt' (choose offline, http).",
        "Feedback and synthetic queries read portal chunks: name the user whose access applies."]
    with pytest.raises(DatasetRefused, match="Name at least one source"):
        build_dataset("none", DatasetSpec(metadata=metadata(meta_doc("A", 1, "x"))))
    assert TrainingDataset.objects.count() == 1


def test_vicov_train_split_by_answer_passage_and_val_as_eval(tmp_path):
    shared = "Vắc xin đã được cấp phép và an toàn."
    train = vicov_file(tmp_path, "train", [("1", "Vắc xin có an toàn không?", shared),
                                           ("2", "Tiêm vắc xin có sao không?", shared),
                                           ("3", "Cách ly mấy ngày?", "Cách ly 7 ngày."),
                                           ("4", "Cách ly mấy ngày?", "Cách ly theo hướng dẫn của Bộ Y tế."),
                                           ("5", "", "Một đoạn không có câu hỏi."),
                                           *[(str(i), f"Câu hỏi {i}?", f"Trả lời {i}.") for i in range(6, 26)]])
    val = vicov_file(tmp_path, "val", [("30", "Khẩu trang loại nào?", "Khẩu trang y tế."),
                                       ("31", "Vắc xin dùng được không?", shared)])
    dataset = build_dataset("vicov", DatasetSpec(vicov_train=train, vicov_val=val, eval_share=0))
    rows = pairs_of(dataset)
    assert {r["source"] for r in rows} == {"benchmark"} and dataset.access_levels == [0]
    by_query = {r["query"]: r for r in rows}
    assert by_query["Khẩu trang loại nào?"]["split"] == "eval"
    # a train question whose answer is a val answer follows it to eval: one passage, one side
    assert by_query["Vắc xin có an toàn không?"]["split"] == "eval"
    assert by_query["Cách ly mấy ngày?"]["split"] == "train"
    assert len([r for r in rows if r["query"] == "Cách ly mấy ngày?"]) == 2  # two answers, two pairs
    assert dataset.sources[0]["train_questions"] == 23 and dataset.sources[0]["val_questions"] == 2
    assert "Một đoạn không có câu hỏi." not in {r["positive"] for r in rows}
    assert dataset.status == DatasetStatus.READY, dataset.validation["errors"]


def test_vicov_test_split_is_refused(tmp_path):
    test = vicov_file(tmp_path, "test", [("1", "q", "a")])
    with pytest.raises(DatasetRefused, match="the test split, train was expected"):
        build_dataset("v", DatasetSpec(vicov_train=test))
    with pytest.raises(DatasetRefused, match="no such file"):
        build_dataset("v", DatasetSpec(vicov_train=tmp_path / "UIT-ViCoV19QA_train.csv"))


def test_the_real_vicov_train_split(settings):
    from finetune.services.datasets.benchmark import default_train_path

    if not default_train_path().exists():
        pytest.skip("the vicov19qa dataset is not on this machine")
    dataset = build_dataset("vicov-real", DatasetSpec(vicov_train=default_train_path(), eval_share=0.1))
    assert dataset.status == DatasetStatus.READY, dataset.validation["errors"]
    assert 3400 <= dataset.counts["pairs"] <= 3600
    splits_of_passage = {}
    for positive, split in dataset.pairs.values_list("positive", "split"):
        splits_of_passage.setdefault(positive, set()).add(split)
    assert all(len(s) == 1 for s in splits_of_passage.values())
    assert 0.07 < dataset.counts["eval"]["documents"] / dataset.counts["documents"] < 0.13


def test_content_hash_is_over_sorted_normalised_pairs_and_split():
    rows = [("train", "q1", "p1", ""), ("eval", "q2", "p2", "n2")]
    assert content_hash(rows) == content_hash(list(reversed(rows)))
    assert content_hash(rows) == content_hash([("train", " q1 ", "p1", ""), ("eval", "q2", "p2\u200b", "n2")])
    assert content_hash(rows) != content_hash([("eval", "q1", "p1", ""), ("eval", "q2", "p2", "n2")])
    assert content_hash(rows) != content_hash([("train", "q1", "p1", "x"), ("eval", "q2", "p2", "n2")])


def test_same_sources_same_seed_same_hash():
    a = build_dataset("a", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS), seed=7))
    b = build_dataset("b", DatasetSpec(pairs=jsonl("p.jsonl", *reversed(PAIRS)), seed=7))
    c = build_dataset("c", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS), seed=8))
    assert a.content_hash == b.content_hash != c.content_hash


records = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15), st.integers(0, 15), st.booleans()),
                   min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(records, st.sampled_from([0.0, 0.1, 0.3, 0.5]), st.integers(0, 5))
def test_split_never_puts_a_document_query_or_positive_on_both_sides(rows, share, seed):
    def make():
        return [PairRecord(query=f"q {q}", positive=f"p {p}", source="pairs", doc_key=f"d{d}",
                           fixed_split="eval" if fixed and d == 0 else None) for d, q, p, fixed in rows]

    first = make()
    info = assign_splits(first, share, seed)
    for key in ("doc_key", "query", "positive"):
        sides = {}
        for r in first:
            sides.setdefault(near_key(getattr(r, key)), set()).add(r.split)
        assert all(len(s) == 1 for s in sides.values()), key
    assert all(r.split == "eval" for r in first if r.fixed_split == "eval")
    if not any(r.fixed_split for r in first):
        splits = {r.split for r in first}
        if share == 0:
            assert splits == {"train"}
        else:  # a group always stays for training; with two groups or more, one is held out
            assert "train" in splits and ("eval" in splits) == (info["groups"] >= 2)
    again = make()
    random.Random(0).shuffle(again)  # the order records come in does not matter
    assign_splits(again, share, seed)
    assert sorted((r.query, r.positive, r.doc_key, r.split) for r in again) == \
        sorted((r.query, r.positive, r.doc_key, r.split) for r in first)


def test_a_train_negative_that_is_an_eval_positive_is_dropped_and_counted():
    recs = [PairRecord(query=f"q{i}", positive=f"p{i}", source="pairs", doc_key=f"d{i}") for i in range(10)]
    for i, r in enumerate(recs):
        r.negative = f"p{(i + 1) % 10}"
    info = assign_splits(recs, 0.3, 0)
    eval_positives = {r.positive for r in recs if r.split == "eval"}
    assert eval_positives and not any(r.negative in eval_positives for r in recs if r.split == "train")
    assert info["negatives_dropped_for_leakage"] == sum(
        1 for i, r in enumerate(recs) if r.split == "train" and f"p{(i + 1) % 10}" in eval_positives)


def test_when_every_group_is_larger_than_the_share_the_smallest_is_held_out():
    recs = [PairRecord(query=f"q{d}-{i}", positive=f"p{d}-{i}", source="pairs", doc_key=f"d{d}-{i}")
            for d, n in ((0, 5), (1, 3), (2, 6)) for i in range(n)]
    for r in recs:  # one query per group joins its documents
        r.query = "shared " + r.doc_key.split("-")[0]
    assign_splits(recs, 0.05, 0)  # 14 documents: a target of 1, smaller than any group
    assert {r.doc_key.split("-")[0] for r in recs if r.split == "eval"} == {"d1"}
