"""Answer metrics (issue 13, item 6): each metric computed right on hand-made
answers, the runner through the answer service in both modes (the generated
one against the loopback stub), and `evaluate_answers` on the sample corpus."""
import json
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from answers.services import answer_calibration, evaluation
from answers.services.answering import Answer, answer_question
from answers.services.evaluation import Case, score_case, summarise
from answers.services.prompt_templates import question_language
from search.evaluation import sets
from tests.answer_helpers import AnswerChatStub, delta, says, streams, use_endpoint
from tests.test_answers import OFF_TOPIC, QUESTION, corpus  # noqa: F401 - fixture


def answer(kind="extracted", text="", cited=()):
    citations = [SimpleNamespace(document=SimpleNamespace(code=code)) for code in cited]
    return Answer(question="q", kind=kind, text=text, citations=citations, space=None)


def row(case, given, latency=10.0):
    return {**score_case(case, given), "latency_ms": latency, "first_token_ms": latency}


LEAVE = Case("một năm nghỉ phép bao nhiêu ngày", True, {"HR_1"}, "được nghỉ 12 ngày làm việc")
VPN = Case("cài VPN", True, {"IT_1"})
PARKING = Case("có hỗ trợ gửi xe không", False)


def test_a_citation_of_a_wrong_document_lowers_precision():
    right = summarise([row(LEAVE, answer(text="x", cited=["HR_1"])), row(VPN, answer(text="y", cited=["IT_1"]))])
    assert right["citation_precision"] == 1.0 and right["first_citation_right"] == 1.0
    wrong = summarise([row(LEAVE, answer(text="x", cited=["HR_1", "FIN_9"])),
                       row(VPN, answer(text="y", cited=["HR_1"]))])
    assert wrong["citation_precision"] == pytest.approx(1 / 3, abs=1e-4)  # 1 right of 3 citations
    assert wrong["first_citation_right"] == 0.5 and wrong["answered_rate"] == 1.0


def test_an_answered_unanswerable_question_lowers_the_refusal_rate():
    refused = summarise([row(PARKING, answer("not_found")), row(LEAVE, answer(text="x", cited=["HR_1"]))])
    assert refused["refusal_rate"] == 1.0
    answered = summarise([row(PARKING, answer(text="Nhân viên gửi xe ở tầng hầm [1]", cited=["HR_1"])),
                          row(Case("căng tin mở mấy giờ", False), answer("not_found"))])
    assert answered["refusal_rate"] == 0.5
    assert answered["citation_precision"] is None  # no answerable question: nothing to be precise about


def test_the_reference_span_counts_when_quoted_whole_accents_and_case_folded():
    quoted = row(LEAVE, answer(text="Người lao động ĐƯỢC NGHỈ 12  ngày làm việc, hưởng lương. [1]", cited=["HR_1"]))
    partial = row(LEAVE, answer(text="Người lao động được nghỉ 12 ngày. [1]", cited=["HR_1"]))
    not_found = row(LEAVE, answer("not_found", text="được nghỉ 12 ngày làm việc"))
    assert (quoted["contained"], partial["contained"], not_found["contained"]) == (True, False, False)
    summary = summarise([quoted, partial, not_found, row(VPN, answer(text="z", cited=["IT_1"]))])
    assert summary["reference_contained"] == pytest.approx(1 / 3, abs=1e-4)  # VPN has no reference: not counted
    assert summary["answered_rate"] == 0.75 and summary["with_reference"] == 3


def test_latency_percentiles_over_every_question():
    rows = [row(LEAVE, answer(text="x", cited=["HR_1"]), latency=float(ms)) for ms in range(1, 101)]
    summary = summarise(rows)
    assert summary["latency_p50_ms"] == pytest.approx(50.5, abs=0.6) and summary["latency_p95_ms"] >= 95
    assert summary["first_token_p50_ms"] == summary["latency_p50_ms"]  # these rows: the same moment


@pytest.mark.django_db
def test_both_modes_through_the_answer_service_and_the_report(corpus, settings, tmp_path):
    evaluation_set = sets.import_records("tiny", [
        {"query": QUESTION, "positive": "Nhân viên chính thức được nghỉ phép năm 12 ngày làm việc mỗi năm",
         "doc_id": corpus["leave"].code, "_line": 1}])
    unanswerable = tmp_path / "unanswerable.jsonl"
    unanswerable.write_text(json.dumps({"query": OFF_TOPIC}, ensure_ascii=False) + "\n", encoding="utf-8")
    from tests import factories as f

    root = f.user("root", is_superuser=True)
    settings.VAR_DIR = tmp_path
    with AnswerChatStub(says("Nhân viên được nghỉ 12 ngày mỗi năm [1].")) as stub:
        use_endpoint(settings, stub.url)
        call_command("evaluate_answers", "--set", "tiny", "--unanswerable", str(unanswerable), "--name", "tiny",
                     "--json", str(tmp_path / "out.json"), "--html", str(tmp_path / "out.html"))
    modes = {r["mode"]: r for r in json.loads((tmp_path / "out.json").read_text())["modes"]}
    assert set(modes) == {"extracted", "generated"} and modes["generated"]["model"] == "stub-model"
    extracted, generated = modes["extracted"]["summary"], modes["generated"]["summary"]
    assert extracted["answered_rate"] == generated["answered_rate"] == 1.0
    settings.ANSWER_CHAT_URL = None
    offline = answer_question(root, QUESTION)  # what the extracted mode got, asked directly
    codes = [c.document.code for c in offline.citations]
    assert extracted["citation_precision"] == pytest.approx(codes.count(corpus["leave"].code) / len(codes), abs=1e-4)
    assert generated["citation_precision"] == 1.0  # the model cited the leave policy's passage only
    # the extraction quotes the reference; the model paraphrased it
    assert (extracted["reference_contained"], generated["reference_contained"]) == (1.0, 0.0)
    assert extracted["refusal_rate"] == generated["refusal_rate"] == 1.0
    assert len(stub.requests) == 1  # only the answerable question had passages to send
    html = (tmp_path / "out.html").read_text()
    assert "data:image/png;base64," in html and "generated (stub-model)" in html


@pytest.mark.django_db
def test_the_generated_mode_times_the_first_streamed_words_apart_from_the_whole_answer(corpus, settings):
    from tests import factories as f

    root = f.user("root", is_superuser=True)
    slow = streams(delta("Nhân viên được "), delta("nghỉ 12 ngày "), delta("mỗi năm [1]."), gap=0.4)
    with AnswerChatStub(slow) as stub:
        use_endpoint(settings, stub.url)
        generated = evaluation.TIMERS["generated"](root, QUESTION)
        extracted = evaluation.TIMERS["extracted"](root, QUESTION)
    assert generated.answer.kind == "generated" and "[1]" in generated.answer.text
    assert generated.full_ms - generated.first_token_ms >= 600  # two more pieces, 0.4 s apart, after the first
    assert extracted.answer.kind == "extracted" and extracted.first_token_ms == extracted.full_ms


def test_the_generated_mode_is_refused_without_an_endpoint(settings):
    settings.ANSWER_CHAT_URL = None
    assert evaluation.available_modes() == ["extracted"]


# --- the sample corpus's answer set ---------------------------------------------------------

def test_sample_references_lie_in_their_documents_and_unanswerable_questions_are_new():
    from search.evaluation.sets import normalise, query_key
    from tests.test_samples import SAMPLES, extracted, read_jsonl

    calibration = read_jsonl(SAMPLES / "eval_pairs.jsonl")
    referenced = [r for r in calibration if r.get("positive")]
    assert len(referenced) >= len(calibration) / 2
    for r in referenced:
        codes = r["doc_id"] if isinstance(r["doc_id"], list) else [r["doc_id"]]
        texts = [normalise("\n".join(s.text for s in extracted(code).sections)) for code in codes]
        assert any(normalise(r["positive"]) in text for text in texts), r
    unanswerable = read_jsonl(SAMPLES / "unanswerable.jsonl")  # held out: evaluate_answers
    held_for_calibration = read_jsonl(SAMPLES / "unanswerable_calibration.jsonl")  # calibrate_answers
    answerable_for_calibration = read_jsonl(SAMPLES / "answerable_calibration.jsonl")
    assert len(unanswerable) >= 30 and len(held_for_calibration) >= 20 and len(answerable_for_calibration) >= 40
    for r in unanswerable + held_for_calibration:
        assert set(r) <= {"query", "kinds", "near", "_line"} and ("near" in r) == ("near_miss" in r["kinds"]), r
    asked = {query_key(r["query"]) for r in calibration + read_jsonl(SAMPLES / "guard_pairs.jsonl")}
    keys = [{query_key(r["query"]) for r in rows}
            for rows in (unanswerable, held_for_calibration, answerable_for_calibration)]
    assert sum(map(len, keys)) == len(set().union(*keys)) and not asked & set().union(*keys)  # all new, none twice
    assert all(question_language(r["query"]) == "vi" for r in unanswerable + held_for_calibration)
    documents = {d["code"] for d in json.loads((SAMPLES / "manifest.json").read_text())["documents"]}
    assert {r["doc_id"] for r in answerable_for_calibration} <= documents


@pytest.mark.django_db
def test_evaluate_answers_runs_on_the_sample_corpus(settings, tmp_path):
    """As bin/run serves it: the e5 space calibrated on `samples`."""
    from search.evaluation import calibration, floors
    from search.services import default_space, keyword_index
    from tests import factories as f

    call_command("load_samples", "--sync", verbosity=0)
    keyword_index.rebuild()
    space = default_space.ensure_default_space(prefer="e5")
    samples = sets.import_jsonl("samples", "documents/samples/eval_pairs.jsonl", replace=True)
    floors.calibrate_floors(samples, space)
    calibration.calibrate(samples, space)
    f.user("root", is_superuser=True)
    settings.VAR_DIR, settings.ANSWER_CHAT_URL = tmp_path, None
    call_command("calibrate_answers", verbosity=0)  # as bin/run does next
    space.refresh_from_db()
    assert space.calibration["answers"]["answerable"] == samples.items.count() + len(
        evaluation.read_unanswerable(answer_calibration.SAMPLE_ANSWERABLE_CALIBRATION))
    calibration.calibrate(samples, space)  # the fusion recalibrated: the floors' and answers' records stay
    space.refresh_from_db()
    assert "floors" in space.calibration and "answers" in space.calibration
    call_command("evaluate_answers", "--json", str(tmp_path / "samples.json"))
    (result,) = json.loads((tmp_path / "samples.json").read_text())["modes"]
    summary = result["summary"]
    print("answers on the samples set:", json.dumps(summary))
    with_reference = sum(bool(i.positive) for i in samples.items.all())
    assert (summary["answerable"], summary["with_reference"]) == (samples.items.count(), with_reference)
    assert summary["unanswerable"] == len(evaluation.read_unanswerable(evaluation.SAMPLE_UNANSWERABLE))
    assert result["mode"] == "extracted" and len(result["rows"]) == summary["questions"]
    # calibrated on this set: nearly every question gets an answer, and most cite the right document
    assert summary["answered_rate"] >= 0.9 and summary["citation_precision"] >= 0.6, summary
