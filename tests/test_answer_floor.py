"""The answer floor (answers.services.support): a near miss that passes the
search's relevance floors is answered "not found", an answerable question is
still answered; the calibration picks its threshold by its rule; an empty
floor is the old behaviour; search results never change."""
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from answers.models import AnswerKind
from answers.services import answer_calibration as ac
from answers.services.answer_calibration import Point, choose_threshold
from answers.services.answering import answer_question
from answers.services.evidence import answer_floor_override, gather_evidence
from answers.services.support import Support, content_weights, measure, question_word_positions
from search.evaluation import sets
from search.models import EmbeddingSpace, SearchMode
from search.services.results import run_search
from search.services.spaces import active_space
from tests import factories as f
from tests.test_answers import QUESTION, corpus, employee  # noqa: F401 - fixtures

# The leave policy (tests.test_answers.LEAVE) gives permanent staff 12 days; it says
# nothing of probationers. The question shares "nhân viên", "nghỉ phép năm", "ngày".
NEAR_MISS = "Nhân viên thử việc được nghỉ phép năm bao nhiêu ngày?"


def set_answer_floor(value, semantic_only_floor=None):
    EmbeddingSpace.objects.filter(pk=active_space().pk).update(answer_floor=value,
                                                                semantic_only_floor=semantic_only_floor)


# --- the rule, on the tiny corpus ------------------------------------------------------------

@pytest.mark.django_db
def test_the_answer_floor_refuses_a_near_miss_the_relevance_floors_let_through(corpus, employee):
    # the relevance floors alone: both questions get an extracted answer from the leave policy
    assert answer_question(employee, NEAR_MISS).kind == AnswerKind.EXTRACTED
    assert answer_question(employee, QUESTION).kind == AnswerKind.EXTRACTED
    near = gather_evidence(employee, NEAR_MISS, answer_floor=None, measure_support=True).support
    right = gather_evidence(employee, QUESTION, answer_floor=None, measure_support=True).support
    # "thử việc" is the near miss's rarest word and no passage holds it; the question words weigh nothing
    assert right.coverage > 0.9 and near.coverage < 0.7, (near, right)
    set_answer_floor(0.8)
    refused = answer_question(employee, NEAR_MISS)
    assert refused.kind == AnswerKind.NOT_FOUND and refused.citations == []
    assert refused.evidence.held_back and refused.evidence.sources == []
    answered = answer_question(employee, QUESTION)
    assert answered.kind == AnswerKind.EXTRACTED and answered.citations[0].document == corpus["leave"]


@pytest.mark.django_db
def test_a_passage_as_close_as_the_semantic_only_floor_asks_is_answered_below_the_floor(corpus, employee):
    near = gather_evidence(employee, NEAR_MISS, answer_floor=None, measure_support=True).support
    assert near.similarity is not None
    set_answer_floor(0.99, semantic_only_floor=near.similarity)  # the bar at the passage's own similarity
    assert answer_question(employee, NEAR_MISS).kind == AnswerKind.EXTRACTED
    set_answer_floor(0.99, semantic_only_floor=near.similarity + 0.001)
    assert answer_question(employee, NEAR_MISS).kind == AnswerKind.NOT_FOUND


@pytest.mark.django_db
def test_an_empty_answer_floor_is_the_relevance_floors_alone(corpus, employee):
    assert Support(0.0, None).answers(None, None)  # no floor: every measured support answers
    set_answer_floor(None)
    evidence = gather_evidence(employee, NEAR_MISS)
    assert evidence.sources and evidence.support is None and evidence.held_back == []
    assert answer_question(employee, NEAR_MISS).kind == AnswerKind.EXTRACTED
    # the same sources as the evidence measured, and as with a floor too low to refuse anything
    assert [s.chunk.pk for s in evidence.sources] == \
        [s.chunk.pk for s in gather_evidence(employee, NEAR_MISS, answer_floor=0.0).sources]


@pytest.mark.django_db
def test_search_results_are_unchanged_by_the_answer_floor(corpus, employee):
    def ranked():
        result = run_search(employee, NEAR_MISS, SearchMode.HYBRID)
        return result.ranked, [h.document.pk for h in result.hits]

    before = ranked()
    set_answer_floor(0.99)
    assert ranked() == before and before[0]
    evidence = gather_evidence(employee, NEAR_MISS)
    assert evidence.sources == [] and evidence.ranked == before[0]  # the answer holds back; the ranking stays


@pytest.mark.django_db
def test_evaluation_can_switch_the_answer_floor_off_for_a_before_and_after(corpus, employee):
    set_answer_floor(0.99)
    with answer_floor_override(None):
        assert answer_question(employee, NEAR_MISS).kind == AnswerKind.EXTRACTED
    assert answer_question(employee, NEAR_MISS).kind == AnswerKind.NOT_FOUND


# --- question words ----------------------------------------------------------------------------

@pytest.mark.parametrize("question, asking", [
    ("Nghỉ phép năm được bao nhiêu ngày?", ["được", "bao", "nhiêu"]),
    ("nghi phep nam duoc bao nhieu ngay", ["duoc", "bao", "nhieu"]),
    ("Công ty có xe đưa đón không?", ["có", "không"]),
    ("lịch sao lưu cơ sở dữ liệu", []),  # "sao" of "sao lưu" is no "vì sao"
    ("cach dat ve may bay", []),  # without diacritics "may" may be "máy": kept
    ("Vì sao VPN tự ngắt?", ["vì", "sao"]),
])
def test_question_words_are_found_in_both_spellings(question, asking):
    from search.services.matching import QueryMatcher

    tokens = QueryMatcher(question).tokens
    assert [tokens[i] for i in sorted(question_word_positions(tokens))] == asking


@pytest.mark.django_db
def test_question_words_weigh_nothing_unless_the_question_is_nothing_else(corpus):
    weights = content_weights("Nghỉ phép năm được bao nhiêu ngày?")
    assert weights["bao"] == weights["nhiêu"] == weights["được"] == 0.0 and weights["phép"] > 0
    assert any(content_weights("bao nhiêu?").values())  # nothing else to weigh: the keyword floor's weights


@pytest.mark.django_db
def test_no_sources_no_support(corpus):
    assert measure(active_space(), QUESTION, []) is None


# --- the calibration's choice, on hand-made points ----------------------------------------------

def P(coverage, answerable, similarity=0.5):  # noqa: N802 - reads like a point
    return Point(f"q{coverage}{answerable}", answerable, Support(coverage, similarity))


def test_the_threshold_maximises_answered_plus_refused_ties_to_the_lowest():
    points = [P(1.0, True), P(0.9, True), P(0.8, True), P(0.6, True),
              P(0.7, False), P(0.5, False), Point("off-topic", False, None)]
    record = choose_threshold(points, similarity_bar=None, max_answer_loss=0.5, confidence=None)
    # refusing 0.7 costs the answer at 0.6: 0.75 + 1.0 beats the floors' 1.0 + 1/3 and 0.5001's 1.0 + 2/3
    assert record["threshold"] == 0.7001 and record["chosen"] == {"threshold": 0.7001, "answered_rate": 0.75,
                                                                  "refusal_rate": 1.0}
    assert record["floors_only"]["answered_rate"] == 1.0 and record["floors_only"]["refusal_rate"] == 0.3333
    # the lowest of the equally good thresholds: 0.7001 and 0.8 refuse and answer the same
    assert {c["threshold"] for c in record["curve"] if c["answered_rate"] == 0.75 and c["refusal_rate"] == 1.0} \
        == {0.7001, 0.8}


def test_the_answer_loss_bounds_the_choice():
    points = [P(1.0, True), P(0.9, True), P(0.6, True), P(0.55, True), P(0.7, False), P(0.65, False), P(0.5, False)]
    free = choose_threshold(points, similarity_bar=None, max_answer_loss=1.0, confidence=None)
    assert free["threshold"] == 0.7001  # loses half of the answers: 0.5 + 1.0 against 1.0 + 1/3
    bounded = choose_threshold(points, similarity_bar=None, max_answer_loss=0.25, confidence=None)
    assert bounded["threshold"] == 0.5001 and bounded["chosen"]["answered_rate"] == 1.0


def test_the_similarity_bar_counts_in_the_choice():
    points = [P(1.0, True), P(0.4, True, similarity=0.93), P(0.6, False, similarity=0.88)]
    record = choose_threshold(points, similarity_bar=0.9, confidence=None)
    assert record["threshold"] == 0.6001 and record["chosen"]["answered_rate"] == 1.0  # 0.4 answered by meaning


def test_a_gain_within_chance_stores_no_threshold():
    """Refusing 2 of 25 unanswerable questions at no cost is chance; 20 of 25 is not."""
    answerable = [P(0.9 + i / 1000, True) for i in range(40)]
    few = answerable + [P(0.3, False), P(0.35, False)] + [Point(f"u{i}", False, None) for i in range(23)]
    record = choose_threshold(few, similarity_bar=None)
    assert record["threshold"] is None and record["best"]["threshold"] == 0.3501 and record["gain"] == 0.08
    assert record["gain_interval"][0] <= 0 < record["gain_interval"][1] and "within chance" in record["reason"]
    many = answerable + [P(0.3 + i / 100, False) for i in range(20)] + [Point(f"u{i}", False, None) for i in range(5)]
    record = choose_threshold(many, similarity_bar=None)
    assert record["threshold"] == 0.4901 and record["chosen"]["refusal_rate"] == 1.0
    assert record["gain_interval"][0] > 0


def test_no_threshold_when_the_floors_alone_do_as_well():
    record = choose_threshold([P(1.0, True), P(0.5, True), Point("x", False, None)], similarity_bar=None)
    assert record["threshold"] is None and "floors alone" in record["reason"]
    assert choose_threshold([P(1.0, True)], None)["threshold"] is None  # no unanswerable question


# --- the command -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_calibrate_answers_stores_the_floor_and_its_record(corpus, tmp_path, capsys):
    f.user("root", is_superuser=True)
    sets.import_records("tiny", [{"query": QUESTION, "doc_id": corpus["leave"].code, "_line": 1}])
    unanswerable = tmp_path / "near.jsonl"
    unanswerable.write_text(json.dumps({"query": NEAR_MISS}, ensure_ascii=False) + "\n", encoding="utf-8")
    call_command("calibrate_answers", "--set", "tiny", "--unanswerable", str(unanswerable))
    space = active_space()
    record = space.calibration["answers"]
    near = next(p for p in record["points"] if not p["answerable"])
    assert space.answer_floor is not None and near["coverage"] < space.answer_floor <= 1.0
    assert record["chosen"] == {"threshold": space.answer_floor, "answered_rate": 1.0, "refusal_rate": 1.0}
    assert "answer floor:" in capsys.readouterr().out
    with pytest.raises(CommandError, match="held out"):
        call_command("calibrate_answers", "--set", "tiny", "--unanswerable", str(ac.SAMPLE_UNANSWERABLE_CALIBRATION
                                                                                  .with_name("unanswerable.jsonl")))
