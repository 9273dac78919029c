"""The validation report: each error case (they stop a job), the warnings, the
stats, token lengths in the model's own tokens."""
import pytest
from django.utils import timezone

from finetune.models import DatasetStatus, TrainingDataset, TrainingPair
from finetune.services.validation import record_validation, validate_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Messages are compared in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield


def dataset(*pairs, status=DatasetStatus.READY, built=True):
    """pairs: (query, positive, split[, negative[, doc_key]]). Enough filler train
    pairs are added to stay clear of `few_pairs` unless asked otherwise."""
    ds = TrainingDataset.objects.create(name=f"v{TrainingDataset.objects.count()}", status=status,
                                        built_at=timezone.now() if built else None)
    TrainingPair.objects.bulk_create([
        TrainingPair(dataset=ds, query=p[0], positive=p[1], split=p[2], negative=p[3] if len(p) > 3 else "",
                     doc_key=p[4] if len(p) > 4 else f"doc:{p[1][:60]}", source="pairs") for p in pairs])
    return ds


def filler(n=100, split="train"):
    return [(f"filler query {split} {i}", f"filler passage {split} {i}", split) for i in range(n)]


def codes(findings):
    return [f["code"] for f in findings]


def test_a_clean_dataset_has_no_errors_and_its_stats():
    report = validate_dataset(dataset(*filler(), *filler(10, "eval"),
                                      ("nghỉ phép năm", "Người lao động được nghỉ 12 ngày.", "train")))
    assert report["errors"] == [] and report["warnings"] == []
    stats = report["stats"]
    assert (stats["pairs"], stats["train"], stats["eval"]) == (111, 101, 10)
    assert stats["documents"] == {"train": 101, "eval": 10}
    assert stats["languages"]["queries"] == {"other": 110, "vi": 1}
    assert stats["languages"]["pairs_across_languages"] == 0
    assert stats["query_types"] == {"-": 111} and stats["by_source"] == {"pairs": 111}


@pytest.mark.parametrize("status,built", [(DatasetStatus.FAILED, True), (DatasetStatus.BUILDING, False)])
def test_error_not_built(status, built):
    report = validate_dataset(dataset(*filler(), status=status, built=built))
    assert codes(report["errors"]) == ["not_built"]


def test_error_empty():
    report = validate_dataset(dataset(*filler(5, "eval")))
    assert codes(report["errors"]) == ["empty"]
    assert "no training pairs" in report["errors"][0]["message"]


def test_error_empty_text():
    ds = dataset(*filler(), ("  ", "a passage", "train"), ("a query", "\u200b", "train"))
    report = validate_dataset(ds)
    assert codes(report["errors"]) == ["empty_text"] and report["errors"][0]["count"] == 2


def test_error_negative_is_a_positive_of_the_same_query():
    ds = dataset(*filler(), ("nghỉ phép", "Đoạn A.", "train", "Đoạn B."), ("Nghi phep", "đoạn b", "train"),
                 ("tạm ứng", "Đoạn C.", "train", "Đoạn C"))  # its own positive, as spelled differently
    report = validate_dataset(ds)
    assert codes(report["errors"]) == ["negative_is_positive"]
    first, _, own = ds.pairs.filter(query__in=["nghỉ phép", "Nghi phep", "tạm ứng"]).order_by("pk")
    assert set(report["errors"][0]["examples"]) == {first.pk, own.pk}


def test_another_querys_positive_as_negative_is_normal():
    report = validate_dataset(dataset(*filler(), ("nghỉ phép", "Đoạn A.", "train", "Đoạn B."),
                                      ("tạm ứng", "Đoạn B.", "train")))
    assert report["errors"] == []


@pytest.mark.parametrize("pairs,code", [
    ([("q1", "p1", "train", "", "doc:1"), ("q2", "p2", "eval", "", "doc:1")], "leak_document"),
    ([("q1", "Đoạn chung.", "train", "", "doc:1"), ("q2", "doan chung", "eval", "", "doc:2")], "leak_positive"),
    ([("Nghỉ phép?", "p1", "train", "", "doc:1"), ("nghi phep", "p2", "eval", "", "doc:2")], "leak_query"),
    ([("q1", "p1", "train", "p2", "doc:1"), ("q2", "p2", "eval", "", "doc:2")], "leak_negative"),
])
def test_error_leakage_between_train_and_eval(pairs, code):
    report = validate_dataset(dataset(*filler(), *pairs))
    assert codes(report["errors"]) == [code]
    assert report["errors"][0]["count"] >= 1 and report["errors"][0]["examples"]


def test_warnings():
    ds = dataset(("nghỉ phép", "Đoạn A.", "train"), ("nghỉ phép", "Đoạn A.", "train"),  # exact
                 ("Nghi phep!", "đoạn a", "train"),  # near
                 ("tạm ứng", "Đoạn B.", "train"), ("tạm ứng", "Đoạn C.", "train"))  # one query, two positives
    report = validate_dataset(ds)
    assert report["errors"] == []
    found = {w["code"]: w["count"] for w in report["warnings"]}
    assert found == {"no_eval": 0, "few_pairs": 0, "exact_duplicates": 2, "near_duplicates": 3, "shared_query": 2}


def test_over_long_texts_in_the_models_tokens(minilm_path):
    long_text = " ".join(["passage"] * 40)
    ds = dataset(*filler(), *filler(3, "eval"), ("short query", long_text, "train", long_text + " x"))
    report = validate_dataset(ds, minilm_path, max_length=16)
    over = [w for w in report["warnings"] if w["code"] == "over_long"]
    assert [w["count"] for w in over] == [1, 1] and "16 tokens" in over[0]["message"]
    tokens = report["stats"]["tokens"]
    assert tokens["limit_tokens"] == 16 and tokens["positive"]["max_tokens"] == 42  # 40 words + [CLS] [SEP]
    assert tokens["query"]["over_limit"] == 0
    assert not [w for w in validate_dataset(ds, minilm_path, max_length=128)["warnings"] if w["code"] == "over_long"]


def test_record_validation_marks_the_dataset_ready_or_invalid():
    ds = dataset(*filler(5, "eval"))
    record_validation(ds)
    ds.refresh_from_db()
    assert ds.status == DatasetStatus.INVALID and codes(ds.validation["errors"]) == ["empty"]
    TrainingPair.objects.bulk_create([TrainingPair(dataset=ds, query=q, positive=p, split=s, source="pairs",
                                                   doc_key=p) for q, p, s in filler()])
    record_validation(ds)
    ds.refresh_from_db()
    assert ds.status == DatasetStatus.READY and ds.validation["errors"] == []
    failed = dataset(*filler(), status=DatasetStatus.FAILED)
    record_validation(failed)
    failed.refresh_from_db()
    assert failed.status == DatasetStatus.FAILED  # a failed build stays failed
