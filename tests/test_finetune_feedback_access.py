"""Pairs from search feedback, and access: a dataset built by a user (from
feedback or from the portal's chunks) contains nothing that user may not see,
for every principal of the access matrix."""
import pytest
from django.contrib.auth.models import AnonymousUser

from documents.selectors import visible_documents
from finetune.services.datasets import DatasetSpec, build_dataset
from search.models import Feedback, SearchLog
from tests import factories as f
from tests.test_access_matrix import EXPECTED, process, world  # noqa: F401 - the matrix's fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Messages are compared in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield


def processed(level, text, **kw):
    doc = f.document(level, text=text, **kw)
    process({0: doc})
    return doc


def search(user, query, *docs):
    return SearchLog.objects.create(user=user, query=query, mode="hybrid", results=[
        {"rank": i + 1, "chunk_id": d.chunks.first().pk, "document_id": d.pk, "score": 0.5}
        for i, d in enumerate(docs)])


def vote(log, doc, kind, chunk=True):
    shown = next(r for r in log.results if r["document_id"] == doc.pk)
    return Feedback.objects.create(search=log, user=log.user, document=doc, chunk_id=shown["chunk_id"] if chunk else None,
                                   rank=shown["rank"], kind=kind)


def test_feedback_pairs_negatives_and_what_is_left_out():
    leave = processed(1, "# Nghỉ phép\n\nNgười lao động được nghỉ phép năm 12 ngày.\n")
    advance = processed(1, "# Tạm ứng\n\nTạm ứng công tác phí trước 5 ngày.\n")
    secret = processed(3, "# Lương\n\nBảng lương bí mật của ban giám đốc.\n")
    builder, searcher = f.user("builder", clearance=1), f.user("searcher", clearance=1)
    s1 = search(searcher, "nghỉ phép năm", leave, advance, secret)
    vote(s1, leave, "helpful"), vote(s1, advance, "not_helpful"), vote(s1, secret, "not_helpful")
    s2 = search(searcher, "tạm ứng", advance, leave)
    vote(s2, advance, "click"), vote(s2, advance, "not_helpful")  # opened, then voted unhelpful: no positive
    s3 = search(None, "quy trình tạm ứng", advance, secret)  # anonymous visitors' clicks count too
    vote(s3, advance, "click"), vote(s3, secret, "helpful")  # the confidential one is never read
    s4 = search(searcher, "Nghỉ  phép năm", leave)  # the same query and chunk again: one pair
    vote(s4, leave, "helpful")
    s5 = search(searcher, "lương", leave)
    vote(s5, leave, "helpful", chunk=False)  # the chunk was replaced by a re-ingest since

    dataset = build_dataset("fb", DatasetSpec(feedback=True, eval_share=0), builder)
    pairs = {(p.query, p.doc_key): p for p in dataset.pairs.all()}
    assert set(pairs) == {("nghỉ phép năm", f"doc:{leave.pk}"), ("quy trình tạm ứng", f"doc:{advance.pk}")}
    first = pairs[("nghỉ phép năm", f"doc:{leave.pk}")]
    assert first.negative.endswith("Tạm ứng công tác phí trước 5 ngày.") and first.query_type == "helpful"
    assert first.positive == "Nghỉ phép Người lao động được nghỉ phép năm 12 ngày."  # heading line + text, cleaned
    assert first.chunk_id == leave.chunks.first().pk and first.access_level == 1
    assert pairs[("quy trình tạm ứng", f"doc:{advance.pk}")].negative == ""
    report = dataset.sources[0]
    assert report["as_user"] == "builder" and report["without_chunk"] == 1 and report["pairs"] == 2
    assert report["helpful"] == 3 and report["not_helpful"] == 2 and report["clicks"] == 2  # visible feedback only
    assert not any("bí mật" in p.positive + p.negative for p in dataset.pairs.all())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_dataset_contains_only_what_its_builder_may_see(world, name):  # noqa: F811
    """Every principal builds from feedback on every document and from every
    chunk: the pairs name exactly the documents it may see, and no text of a
    hidden document appears anywhere in the dataset."""
    docs, people = world
    process(docs)
    root = people["superuser"]
    log = search(root, "tài liệu", *docs.values())
    for doc in docs.values():
        vote(log, doc, "helpful")
    user = people[name]
    dataset = build_dataset(f"by-{name}", DatasetSpec(feedback=True, synthetic="offline", eval_share=0.3), user)
    visible = set(visible_documents(user).values_list("pk", flat=True))
    assert {doc.pk for doc in docs.values() if doc.access_level in EXPECTED[name]} == visible & {
        d.pk for d in docs.values()}
    found = {int(key.split(":")[1]) for key in dataset.pairs.values_list("doc_key", flat=True)}
    assert found == {doc.pk for level, doc in docs.items() if level in EXPECTED[name]}, name
    assert set(dataset.pairs.values_list("chunk__document_id", flat=True)) == found
    text = " ".join(q + p + n for q, p, n in dataset.pairs.values_list("query", "positive", "negative"))
    for level, doc in docs.items():
        if level not in EXPECTED[name]:
            assert f"mức truy cập {level}, số" not in text, (name, level)
    assert dataset.access_levels == sorted(EXPECTED[name])


def test_anonymous_builds_from_public_documents_only(world):  # noqa: F811
    docs, _ = world
    process(docs)
    dataset = build_dataset("anon", DatasetSpec(synthetic="offline", eval_share=0), AnonymousUser())
    assert set(dataset.pairs.values_list("doc_key", flat=True)) == {f"doc:{docs[0].pk}"}


# --- answer feedback (issue 13: the answer log's opened citations and votes) ----------

def answered(user, question, *docs, helpful=None, opened=()):
    """An AnswerLog citing the first chunk of each of `docs` (numbered in order), with the asker's feedback."""
    from answers.models import AnswerLog

    citations = [{"number": i + 1, "chunk_id": d.chunks.first().pk, "document_id": d.pk, "score": 0.5}
                 for i, d in enumerate(docs)]
    return AnswerLog.objects.create(user=user, question=question, kind="extracted", citations=citations,
                                    retrieved=citations, helpful=helpful,
                                    opened=[{**c, "at": "2026-01-01T00:00:00+00:00"} for c in citations
                                            if c["number"] in opened])


def test_answer_feedback_pairs_negatives_and_what_is_left_out():
    leave = processed(1, "# Nghỉ phép\n\nNgười lao động được nghỉ phép năm 12 ngày.\n")
    advance = processed(1, "# Tạm ứng\n\nTạm ứng công tác phí trước 5 ngày.\n")
    overtime = processed(1, "# Làm thêm giờ\n\nLàm thêm giờ được trả 150% lương.\n")
    secret = processed(3, "# Lương\n\nBảng lương bí mật của ban giám đốc.\n")
    builder, asker = f.user("builder", clearance=1), f.user("asker", clearance=1)
    answered(asker, "Nghỉ phép năm bao nhiêu ngày?", leave, secret, helpful=True)  # secret: never read
    answered(asker, "nghỉ phép năm bao nhiêu ngày", advance, overtime, secret, helpful=False)  # same question
    answered(None, "tạm ứng công tác phí", advance, leave, opened=(1,))  # anonymous visitors' openings count
    answered(asker, "làm thêm giờ", overtime, leave, opened=(1, 2), helpful=False)  # opened, then unhelpful
    answered(asker, "không ai bấm", overtime)  # no feedback: nothing
    gone = answered(asker, "lương", leave, helpful=True)
    gone.citations = [{**gone.citations[0], "chunk_id": 999999}]  # re-ingested since: the chunk is gone
    gone.save()

    dataset = build_dataset("afb", DatasetSpec(feedback=True, eval_share=0), builder)
    pairs = {(p.query, p.doc_key): p for p in dataset.pairs.all()}
    assert set(pairs) == {("Nghỉ phép năm bao nhiêu ngày?", f"doc:{leave.pk}"),
                          ("tạm ứng công tác phí", f"doc:{advance.pk}")}
    helpful = pairs[("Nghỉ phép năm bao nhiêu ngày?", f"doc:{leave.pk}")]
    assert helpful.query_type == "answer_helpful" and helpful.chunk_id == leave.chunks.first().pk
    assert helpful.positive == "Nghỉ phép Người lao động được nghỉ phép năm 12 ngày."
    assert helpful.negative.endswith("Tạm ứng công tác phí trước 5 ngày.")  # the unhelpful answer's first citation
    opened = pairs[("tạm ứng công tác phí", f"doc:{advance.pk}")]
    assert opened.query_type == "answer_opened" and opened.negative == ""
    report = next(r for r in dataset.sources if r.get("from") == "answers")
    assert report["as_user"] == "builder" and report["pairs"] == 2 and report["negatives"] == 1
    assert report["helpful"] == 2 and report["not_helpful"] == 2 and report["without_chunk"] == 1
    assert report["unused_negatives"] == 1  # the overtime passage, second citation of the unhelpful answer
    assert not any("bí mật" in p.positive + p.negative for p in dataset.pairs.all())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_answer_feedback_contains_only_what_its_builder_may_see(world, name):  # noqa: F811
    """A superuser's answers: one citing every level, voted helpful; for another
    question, the public document opened and an answer citing the other levels
    voted unhelpful. The positives name exactly the documents the builder may
    see, the negative is the first of them the builder may see, and no text of
    a hidden document is anywhere in the dataset."""
    docs, people = world
    process(docs)
    root = people["superuser"]
    answered(root, "tài liệu nhân sự", *[docs[level] for level in sorted(docs)], helpful=True)
    answered(root, "quy định chung", docs[0], opened=(1,))
    answered(root, "quy định chung", docs[3], docs[2], docs[1], helpful=False)
    dataset = build_dataset(f"answers-by-{name}", DatasetSpec(feedback=True, eval_share=0), people[name])
    visible = {doc.pk for level, doc in docs.items() if level in EXPECTED[name]}
    pairs = list(dataset.pairs.all())
    assert {int(p.doc_key.split(":")[1]) for p in pairs if p.query == "tài liệu nhân sự"} == visible, name
    general = next(p for p in pairs if p.query == "quy định chung")
    hidden_first = [level for level in (3, 2, 1) if level in EXPECTED[name]]
    if hidden_first:
        assert f"mức truy cập {hidden_first[0]}, số" in general.negative, name
    else:
        assert general.negative == "", name
    text = " ".join(p.query + p.positive + p.negative for p in pairs)
    for level in docs:
        if level not in EXPECTED[name]:
            assert f"mức truy cập {level}, số" not in text, (name, level)
