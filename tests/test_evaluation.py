"""Evaluation: the metrics (by hand, against ranx and against sentence-transformers'
InformationRetrievalEvaluator), evaluation sets (import, validation, export,
feedback), the runner, calibration, the admin and the Celery task."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from documents.models import Chunk
from documents.services.processing import process_document
from search.evaluation import calibration, metrics, report, runner, sets
from search.evaluation.models import EvaluationQueryResult, EvaluationRun, EvaluationSet
from search.models import Feedback, SearchLog
from search.services import embedding, keyword_index, spaces
from tests import factories as f

LEAVE = ("# Chính sách nghỉ phép\n\n## 1. Số ngày nghỉ\n\nNhân viên được nghỉ phép năm 12 ngày có hưởng lương.\n\n"
         "## 2. Thủ tục\n\nĐơn xin nghỉ phép gửi quản lý trực tiếp trước 3 ngày làm việc.\n")
VPN = ("# Hướng dẫn VPN\n\n## Cài đặt\n\nTải phần mềm VPN client và đăng nhập bằng tài khoản SSO.\n\n"
       "## Lỗi thường gặp\n\nNếu không kết nối được VPN, kiểm tra mạng và liên hệ IT helpdesk.\n")
SALARY = "# Bảng lương mật\n\n## Thưởng\n\nMức thưởng Tết của ban giám đốc là 6 tháng lương.\n"


# --- metrics -------------------------------------------------------------------

def test_metrics_on_a_hand_made_example():
    ranking = ["a", "b", "c", "d", "e", "f"]
    rel = {"c": 1, "e": 1, "z": 1}  # z is never retrieved
    assert metrics.reciprocal_rank(ranking, rel, 10) == pytest.approx(1 / 3)
    assert metrics.reciprocal_rank(ranking, rel, 2) == 0
    assert (metrics.hit(ranking, rel, 1), metrics.hit(ranking, rel, 3), metrics.hit(ranking, rel, 5)) == (0, 1, 1)
    assert metrics.recall(ranking, rel, 3) == pytest.approx(1 / 3)
    assert metrics.recall(ranking, rel, 10) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(4) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg(ranking, rel, 10) == pytest.approx(dcg / idcg)
    assert metrics.average_precision(ranking, rel, 10) == pytest.approx((1 / 3 + 2 / 5) / 3)
    # graded relevance: linear gains, ideal order by grade
    graded = {"b": 2, "a": 1}
    assert metrics.ndcg(["a", "b"], graded, 10) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # nothing relevant retrieved
    assert metrics.query_metrics(["x", "y"], {"q": 1}) == {k: 0.0 for k in metrics.query_metrics(["x"], {"q": 1})}
    mean = metrics.mean_metrics([metrics.query_metrics(ranking, rel), metrics.query_metrics(["c"], {"c": 1})])
    assert mean["MRR@10"] == pytest.approx((1 / 3 + 1) / 2) and mean["Hit@1"] == 0.5


def test_metrics_on_a_second_example_with_several_relevant_results():
    # relevant at ranks 2, 3 and 12 (outside the top 10) of 4 relevant
    ranking = [f"x{i}" for i in range(1, 15)]
    rel = {"x2": 1, "x3": 1, "x12": 1, "y": 1}
    q = metrics.query_metrics(ranking, rel)
    assert q["MRR@10"] == 0.5 and (q["Hit@1"], q["Hit@5"], q["Hit@10"]) == (0, 1, 1)
    assert q["Recall@10"] == 0.5 and q["Recall@50"] == 0.75
    assert q["MAP@10"] == pytest.approx((1 / 2 + 2 / 3) / 4)
    assert q["nDCG@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4))
                                         / sum(1 / math.log2(i + 1) for i in range(1, 5)))


CORPUS = {
    "c1": "The cat sits on the warm windowsill in the afternoon sun.",
    "c2": "Dogs love to play fetch in the park with their owners.",
    "c3": "Quarterly revenue grew by twelve percent compared with last year.",
    "c4": "The company reported a net loss for the third quarter.",
    "c5": "To reset your password, open the settings page and choose security.",
    "c6": "VPN access requires the client software and a company account.",
    "c7": "Employees receive twelve days of paid annual leave.",
    "c8": "Sick leave must be reported to your manager before nine o'clock.",
    "c9": "The cafeteria serves vegetarian lunch every Wednesday.",
    "c10": "Printers on the third floor are out of toner.",
    "c11": "Fire drills take place twice a year; follow the wardens.",
    "c12": "Expense reports are due by the fifth working day of each month.",
    "c13": "Kittens and cats often sleep most of the day.",
    "c14": "The data centre migration is planned for the weekend.",
}
QUERIES = {"q1": "Where is the cat sleeping?", "q2": "How many vacation days do staff get?",
           "q3": "financial results of the quarter", "q4": "I forgot my login password",
           "q5": "how do I connect remotely to the office network",
           "q6": "pets that sleep all day"}  # judged: the dogs passage — the cats come first, so MRR < 1
RELEVANT = {"q1": {"c1", "c13"}, "q2": {"c7"}, "q3": {"c3", "c4"}, "q4": {"c5"}, "q5": {"c6", "c14"}, "q6": {"c2"}}


def test_metrics_agree_with_sentence_transformers_evaluator(minilm_path, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(minilm_path, device="cpu")
    evaluator = InformationRetrievalEvaluator(QUERIES, CORPUS, RELEVANT, mrr_at_k=[10], ndcg_at_k=[10],
                                              accuracy_at_k=[1, 5, 10], precision_recall_at_k=[10], map_at_k=[10],
                                              name="tiny", write_csv=False, show_progress_bar=False)
    st = evaluator(model, output_path=str(tmp_path))

    def st_value(suffix):
        return next(v for k, v in st.items() if k.endswith("cosine_" + suffix))

    ids = list(CORPUS)
    passages = model.encode([CORPUS[i] for i in ids], normalize_embeddings=True)
    per_query = []
    for qid, text in QUERIES.items():
        q = model.encode([text], normalize_embeddings=True)[0]
        sims = passages @ q
        ranking = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-round(float(sims[i]), 6), ids[i]))]
        per_query.append(metrics.query_metrics(ranking, {c: 1 for c in RELEVANT[qid]}))
    ours = metrics.mean_metrics(per_query)
    assert 0 < ours["MRR@10"] < 1.0  # an imperfect ranking: the comparison below is informative
    assert ours["MRR@10"] == pytest.approx(st_value("mrr@10"), abs=1e-6)
    assert ours["nDCG@10"] == pytest.approx(st_value("ndcg@10"), abs=1e-6)
    assert ours["Recall@10"] == pytest.approx(st_value("recall@10"), abs=1e-6)
    assert ours["Hit@1"] == pytest.approx(st_value("accuracy@1"), abs=1e-6)
    assert ours["MAP@10"] == pytest.approx(st_value("map@10"), abs=1e-6)


# --- corpus fixtures -------------------------------------------------------------

def ready(level, text, departments=("HR",), **kw):
    doc = f.document(level, text=text, departments=departments, status="pending", **kw)
    assert process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return doc


@pytest.fixture
def corpus(db):
    docs = {"leave": ready(1, LEAVE), "vpn": ready(0, VPN, departments=("IT",)),
            "salary": ready(3, SALARY, departments=("FIN",))}
    keyword_index.rebuild()
    return docs


@pytest.fixture
def minilm_space(minilm_path, corpus):
    space = spaces.create_space("minilm", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    space.refresh_from_db()
    return space


def chunk_with(text: str) -> Chunk:
    return next(c for c in Chunk.objects.all() if text in c.text)


@pytest.fixture
def small_set(corpus):
    records = [
        {"query": "Nhân viên được nghỉ phép bao nhiêu ngày?", "positive": "nghỉ phép năm 12 ngày"},
        {"query": "gửi đơn xin nghỉ cho ai", "positive": "Đơn xin nghỉ phép gửi quản lý"},
        {"query": "không kết nối được VPN", "chunk_id": chunk_with("liên hệ IT helpdesk").pk},
        {"query": "cài đặt VPN client SSO", "doc_id": corpus["vpn"].code},
        {"query": "thưởng Tết ban giám đốc", "positive": "Mức thưởng Tết"},
    ]
    return sets.import_records("small", [{**r, "_line": i} for i, r in enumerate(records, start=1)])


# --- evaluation sets -----------------------------------------------------------

def test_import_resolves_positives_and_reports_every_problem(corpus, tmp_path):
    vpn_chunk = chunk_with("liên hệ IT helpdesk")
    lines = [
        {"query": "nghỉ phép năm", "positive": "được  nghỉ phép\nnăm 12 ngày"},  # whitespace differs: resolved
        {"query": "số ngày nghỉ", "positive": "nghỉ phép"},  # in two chunks: both relevant
        {"query": "câu hỏi không có đáp án", "positive": "văn bản không tồn tại ở đâu"},  # unresolved
        {"query": "   ", "positive": "VPN"},  # empty query
        {"query": "Nghỉ phép  năm", "chunk_id": vpn_chunk.pk},  # duplicate of line 1 (case/space-insensitive)
        {"query": "lỗi VPN", "chunk_id": f"{corpus['vpn'].code}#1"},  # chunk by document code and ordinal
        {"query": "chunk đã xoá", "chunk_id": 999999},  # missing chunk id
        {"query": "thưởng", "doc_id": corpus["salary"].code},  # confidential document
        {"query": "tài liệu lạ", "doc_id": "NO_SUCH_DOC"},
    ]
    path = tmp_path / "eval_pairs.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n{not json\n", encoding="utf-8")
    s = sets.import_jsonl("imported", path)
    rep = s.import_report
    items = {i.query: i for i in s.items.all()}
    leave_chunk = chunk_with("12 ngày")
    assert items["nghỉ phép năm"].relevant_chunks == [leave_chunk.pk, vpn_chunk.pk]  # duplicate merged
    assert len(items["số ngày nghỉ"].relevant_chunks) == 2
    assert [u["line"] for u in rep["unresolved"]] == [3, 7, 9]
    assert rep["empty_queries"] == [{"line": 4}]
    assert [d["line"] for d in rep["duplicates"]] == [5]
    assert rep["problems"][0]["problem"] == "invalid JSON"
    assert rep["multi_match"][0]["line"] == 2
    assert items["lỗi VPN"].relevant_chunks == [vpn_chunk.pk]
    assert items["câu hỏi không có đáp án"].level == "unresolved"  # kept and reported, not dropped

    employee = f.user("employee")  # clearance 1: sees levels 0 and 1
    found = sets.validate(s, employee)
    assert [x["query"] for x in found["invisible"]] == ["thưởng"]
    assert {x["query"] for x in found["unresolved"]} == {"câu hỏi không có đáp án", "chunk đã xoá", "tài liệu lạ"}
    assert not found["ok"]
    assert sets.validate(s, f.user("root", is_superuser=True))["invisible"] == []


def test_validation_reports_duplicates_and_empty_queries_entered_by_hand(corpus):
    s = EvaluationSet.objects.create(name="manual")
    c = chunk_with("12 ngày").pk
    s.items.create(query="nghỉ phép", relevant_chunks=[c])
    s.items.create(query="Nghỉ  phép", relevant_chunks=[c])
    s.items.create(query=" ", relevant_chunks=[c])
    found = sets.validate(s)
    assert len(found["duplicates"]) == 1 and len(found["empty_queries"]) == 1
    assert found["invisible"] and found["invisible"][0]["documents"] == [corpus["leave"].code]  # anonymous view


def test_export_round_trips(small_set, tmp_path):
    path = tmp_path / "out.jsonl"
    assert sets.export_jsonl(small_set, path) == small_set.items.count()
    again = sets.import_jsonl("again", path)
    key = lambda s: sorted((i.query, tuple(i.relevant_chunks), tuple(i.relevant_documents)) for i in s.items.all())  # noqa
    assert key(again) == key(small_set)
    assert again.import_report["unresolved"] == [] and again.import_report["duplicates"] == []


def test_set_from_feedback(corpus):
    user = f.user("lan")
    vpn_chunk = chunk_with("liên hệ IT helpdesk")
    log1 = SearchLog.objects.create(user=user, query="lỗi VPN", mode="hybrid")
    Feedback.objects.create(search=log1, user=user, document=corpus["vpn"], chunk=vpn_chunk, rank=1, kind="helpful")
    Feedback.objects.create(search=log1, user=user, document=corpus["leave"], rank=2, kind="click")
    Feedback.objects.create(search=log1, user=user, document=corpus["leave"], rank=2, kind="not_helpful")
    Feedback.objects.create(search=log1, user=user, document=corpus["leave"], rank=2, kind="not_helpful")
    log2 = SearchLog.objects.create(user=user, query="nghỉ phép", mode="hybrid")
    Feedback.objects.create(search=log2, user=user, document=corpus["leave"], rank=1, kind="click")
    s = sets.build_from_feedback("fb")
    items = {i.query: i for i in s.items.all()}
    assert items["lỗi VPN"].relevant_documents == [corpus["vpn"].code]  # the leave click was outvoted
    assert items["lỗi VPN"].grades == {corpus["vpn"].code: 2}
    assert items["nghỉ phép"].relevant_documents == [corpus["leave"].code]
    chunk_level = sets.build_from_feedback("fb-chunks", level="chunk")
    assert {i.query: i.relevant_chunks for i in chunk_level.items.all()}["lỗi VPN"] == [vpn_chunk.pk]


# --- runner, reports, calibration ---------------------------------------------------

def test_runner_stores_per_query_results_and_writes_both_report_files(minilm_space, small_set, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    runs = [runner.evaluate(small_set, minilm_space, mode, name="t") for mode in ("vector", "keyword", "hybrid")]
    for run in runs:
        assert run.status == "done" and run.query_count == 5 and run.results.count() == 5
        assert 0 < run.mrr_at_10 <= 1 and set(run.metrics) >= {"MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10",
                                                                 "MAP@10", "Recall@10", "Recall@100"}
        assert run.performance["latency_p95_ms"] >= run.performance["latency_p50_ms"] > 0
    vector = runs[0].performance
    assert vector["encode_passages_per_s"] > 0 and vector["model_load_s"] > 0 and vector["dimension"] == 384
    assert vector["model_memory_mb"] > 10 and vector["peak_rss_mb"] > vector["model_memory_mb"]
    doc_level = EvaluationQueryResult.objects.get(run=runs[1], query="cài đặt VPN client SSO")
    assert doc_level.level == "document" and doc_level.top[0]["document"] == doc_level.top[0]["id"]
    failed = runs[1].results.order_by("reciprocal_rank").first()
    assert failed.top and "text" in failed.top[0]  # what came first instead
    out = report.write_report(runs, "t", title="tiny")
    data = json.loads((out / "performance_metrics.json").read_text())
    assert [r["mode"] for r in data["runs"]] == ["vector", "keyword", "hybrid"]
    assert len(data["runs"][0]["per_query"]) == 5
    html = (out / "report.html").read_text()
    assert 'id="summary"' in html and html.count('src="data:image/png;base64,') == 2
    assert 'src="http' not in html and "<script" not in html  # self-contained
    assert EvaluationRun.objects.get(pk=runs[0].pk).report_dir == str(out)


def test_runner_applies_the_evaluating_users_access(minilm_space, small_set):
    employee = f.user("employee2")
    run = runner.evaluate(small_set, minilm_space, "keyword", as_user=employee)
    salary = run.results.get(query="thưởng Tết ban giám đốc")
    assert salary.first_relevant_rank is None  # confidential: never retrieved for this user
    assert not any(t["document"] == "salary" for r in run.results.all() for t in r.top)
    hidden = set(Chunk.objects.filter(document__access_level=3).values_list("pk", flat=True))
    assert not any(t["id"] in hidden for r in run.results.all() for t in r.top)


def test_calibration_stores_the_robust_default_unless_the_grid_wins_beyond_the_interval(minilm_space, small_set):
    record = calibration.calibrate(small_set, minilm_space, depths=(10, 20), rrf_ks=(10, 60))
    ci = record["bootstrap"]
    assert ci["low"] <= ci["gain"] <= ci["high"] and ci["queries"] == 5
    assert record["best"]["MRR@10"] >= record["default"]["MRR@10"]
    # five questions cannot show a real gain: the robust default (RRF k=60, weighted toward the stronger mode)
    assert not record["chosen"]["adopted_grid_best"] and ci["low"] <= 0
    vector, keyword = record["vector_only"]["MRR@10"], record["keyword_only"]["MRR@10"]
    ratio = (min(vector, keyword) / max(vector, keyword)) ** 4
    expected_share = round(1 / (1 + ratio) if vector >= keyword else ratio / (1 + ratio), 2)
    assert (record["chosen"]["fusion"], record["chosen"]["rrf_k"], record["chosen"]["vector_share"]) == (
        "rrf", 60, expected_share)
    assert {p["vector_share"] for p in record["curve"]} >= {0.0, 1.0} and all(
        p["fusion"] == "rrf" for p in record["curve"])  # no score-range-dependent fusion in the grid
    minilm_space.refresh_from_db()
    assert minilm_space.calibration["chosen"] == record["chosen"]
    assert (minilm_space.fusion, minilm_space.vector_weight, minilm_space.rrf_k) == (
        "rrf", record["chosen"]["vector_weight"], 60)
    # the real hybrid search with the stored settings scores what calibration said
    hybrid = runner.evaluate(small_set, minilm_space, "hybrid", measure=False)
    assert hybrid.mrr_at_10 == pytest.approx(record["chosen"]["MRR@10"])
    table = calibration.curve_table(record)
    assert "robust default" in table and "interval" in table


def _scores(rr: list[float]) -> np.ndarray:
    """Per-query metric rows (MRR, nDCG, Hit@1, Hit@10) from reciprocal ranks."""
    return np.array([[r, r, float(r == 1.0), float(r > 0)] for r in rr])


def _world(vector_rr, keyword_rr, grid_rr):
    """Every fused point scores `grid_rr(point)`; the single modes score as given."""
    points = list(calibration.grid_points(rrf_ks=(60,), depths=(100,)))

    def score(p):
        rr = vector_rr if p["vector_share"] == 1.0 else keyword_rr if p["vector_share"] == 0.0 else grid_rr(p)
        return _scores(rr)
    return points, score


def test_decision_keeps_the_default_when_the_gain_is_noise():
    rng = np.random.default_rng(1)
    base = rng.choice([1.0, 0.5, 0.0], size=100).tolist()
    noisy = list(base)
    noisy[3] = 1.0 if base[3] != 1.0 else 0.5  # one question better: a gain of at most 0.01
    points, score = _world(base, [x * 0.8 for x in base], lambda p: noisy if p["vector_share"] == 0.9 else base)
    record = calibration.decide(points, score)
    assert record["best"]["vector_share"] == 0.9 and record["best"]["MRR@10"] > record["default"]["MRR@10"]
    assert record["bootstrap"]["low"] <= 0 < record["bootstrap"]["gain"]
    # keyword at 0.8 of vector: weight 0.8⁴ = 0.41 beside 1 → vector share 1 / 1.41
    assert record["chosen"]["vector_share"] == record["default"]["vector_share"] == 0.71


def test_a_near_useless_side_barely_weighs_in_the_default():
    strong = [1.0, 0.5, 0.0, 1.0] * 25
    points, score = _world([x * 0.1 for x in strong], strong, lambda p: strong)
    default = calibration.decide(points, score)["default"]
    assert default["vector_share"] == 0.0  # 0.1⁴ of the keyword side's weight: keyword search alone
    assert calibration.robust_default(0.3, 0.3)["vector_share"] == 0.5


def test_decision_adopts_a_gain_the_bootstrap_shows_is_real():
    rng = np.random.default_rng(2)
    weak = rng.choice([0.5, 0.0], size=200).tolist()
    strong = [1.0] * 200
    points, score = _world(weak, [x * 0.9 for x in weak], lambda p: strong if p["vector_share"] == 0.4 else weak)
    record = calibration.decide(points, score)
    assert record["bootstrap"]["low"] > 0.3
    assert record["chosen"]["adopted_grid_best"] and record["chosen"]["vector_share"] == 0.4


def test_paired_bootstrap_interval_brackets_the_mean_gain():
    ci = calibration.paired_bootstrap([1.0, 0.5, 1.0, 0.0] * 25, [0.5, 0.5, 1.0, 0.0] * 25, samples=500)
    assert ci["gain"] == pytest.approx(0.125) and ci["low"] < 0.125 < ci["high"] and ci["low"] > 0
    flat = calibration.paired_bootstrap([0.5] * 50, [0.5] * 50)
    assert flat == {**flat, "gain": 0.0, "low": 0.0, "high": 0.0}


def test_calibrate_command_prints_the_curve_and_writes_the_plot(minilm_space, small_set, settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("calibrate_hybrid", "--space", "minilm", "--set", "small", "--depths", "20", "--rrf-k", "60",
                 "--name", "cal", stdout=out)
    assert "vector share" in out.getvalue() and "stored on space minilm" in out.getvalue()
    assert (tmp_path / "reports" / "cal" / "calibration.png").stat().st_size > 1000
    assert "data:image/png" in (tmp_path / "reports" / "cal" / "report.html").read_text()


def test_evaluate_command_and_import_export_commands(minilm_space, settings, tmp_path, corpus):
    from io import StringIO

    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "lỗi VPN", "doc_id": corpus["vpn"].code}, ensure_ascii=False) + "\n"
                    + json.dumps({"query": "nghỉ phép 12 ngày", "positive": "12 ngày"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    out = StringIO()
    call_command("import_eval_set", "cmd", str(path), stdout=out)
    assert "2 items (2 usable)" in out.getvalue()
    call_command("evaluate", "--set", "cmd", "--space", "minilm", "--mode", "keyword", "--mode", "vector",
                 "--name", "cmd-report", stdout=out)
    assert (tmp_path / "reports" / "cmd-report" / "report.html").exists()
    assert EvaluationRun.objects.filter(name="cmd-report", status="done").count() == 2
    call_command("export_eval_set", "cmd", "--out", str(tmp_path / "back.jsonl"), stdout=out, stderr=out)
    assert len((tmp_path / "back.jsonl").read_text().splitlines()) == 2


def test_compare_models_recommends_with_reasons(minilm_space, small_set, wide_model_path, settings, tmp_path):
    from search.evaluation import compare

    settings.VAR_DIR = tmp_path
    runs, comparison = compare.compare(small_set, ["minilm", wide_model_path], log=lambda *_: None)
    assert [r.performance["dimension"] for r in runs] == [384, 1024]
    assert comparison["recommendation"] in {"minilm", wide_model_path}
    assert any(r.startswith("accuracy") for r in comparison["reasons"])
    assert any("storage" in r for r in comparison["reasons"])
    assert compare.storage_per_million(384)["vectors_gb"] == pytest.approx(1.54, abs=0.01)
    from search.models import EmbeddingSpace
    assert not EmbeddingSpace.objects.filter(name__startswith="cmp-").exists()  # temporary space removed


def test_admin_history_and_celery_task(minilm_space, small_set, settings, tmp_path, client):
    from search.evaluation.tasks import evaluation_run_task

    settings.VAR_DIR = tmp_path
    run = runner.create_run(small_set, minilm_space, "keyword")
    assert evaluation_run_task(run.pk) == run.pk  # what the worker runs
    run.refresh_from_db()
    assert run.status == "done" and run.progress == 100 and run.report_dir
    root = f.user("root", is_superuser=True, is_staff=True)
    client.force_login(root)
    page = client.get(f"/admin/evaluation/evaluationrun/?space__id__exact={minilm_space.pk}")
    assert page.status_code == 200 and b"<progress" in page.content and f"{run.mrr_at_10:.4f}".encode() in page.content
    report_page = client.get(f"/admin/evaluation/evaluationrun/{run.pk}/report/")
    assert report_page.status_code == 200 and b'id="summary"' in b"".join(report_page.streaming_content)
    staff = f.user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(f"/admin/evaluation/evaluationrun/{run.pk}/report/").status_code in (302, 403, 404)


def test_an_outage_during_a_run_retries_it_and_the_last_retry_fails_it_with_the_reason(
        minilm_space, small_set, settings, tmp_path, monkeypatch):
    from django.db import OperationalError

    from portal import tasking
    from search.evaluation.tasks import evaluation_run_task
    from search.services import results

    settings.VAR_DIR = tmp_path
    run = runner.create_run(small_set, minilm_space, "keyword")
    real_search, outage = results.run_search, {"on": True}

    def flaky(*args, **kwargs):
        if outage["on"]:
            raise OperationalError("server closed the connection unexpectedly")
        return real_search(*args, **kwargs)

    retries = []
    monkeypatch.setattr(results, "run_search", flaky)
    monkeypatch.setattr(tasking, "retry_later", lambda task, exc: retries.append(exc) or "gave up")
    assert evaluation_run_task(run.pk) is None
    run.refresh_from_db()
    assert len(retries) == 1 and run.status == "failed" and "gave up after" in run.error
    assert "server closed the connection" in run.error

    run.status = "queued"
    run.save()
    monkeypatch.setattr(tasking, "retry_later", lambda task, exc: retries.append(exc) or pytest.fail("retried"))
    outage["on"] = False  # the database is back: the retried run completes
    assert evaluation_run_task(run.pk) == run.pk
    run.refresh_from_db()
    assert run.status == "done" and run.query_count == small_set.items.count()


def test_evaluate_corpus_uses_a_scratch_database_and_drops_it(transactional_db, minilm_path, settings, tmp_path):
    """vicov19qa format (pipe-separated, quoted multi-line answers) on a tiny copy
    made here; the portal's (here: the test) database is not touched."""
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    from documents.models import Document
    from portal import embedded

    settings.VAR_DIR = tmp_path
    rows = {
        "train": [("1", "Vắc xin có an toàn không?", "Vắc xin đã được cấp phép\nvà an toàn khi tiêm.")],
        "val": [("2", "Triệu chứng của COVID-19 là gì?", "Sốt, ho khan, mệt mỏi và mất vị giác."),
                ("3", "Cách ly bao nhiêu ngày?", "Cách ly tại nhà 7 ngày kể từ khi có kết quả dương tính.")],
        "test": [("4", "Khi nào cần đi khám?", "Khi khó thở hoặc đau tức ngực kéo dài, hãy đến cơ sở y tế."),
                 ("5", "Đeo khẩu trang loại nào?", "Khẩu trang y tế hoặc khẩu trang vải nhiều lớp, đeo kín mũi."),
                 ("6", "Vắc xin tiêm mấy mũi?", "Vắc xin đã được cấp phép\nvà an toàn khi tiêm.")],
    }
    folder = tmp_path / "vicov"
    folder.mkdir()
    for split, lines in rows.items():
        with open(folder / f"UIT-ViCoV19QA_{split}.csv", "w", encoding="utf-8", newline="") as fh:
            import csv

            w = csv.writer(fh, delimiter="|", quotechar='"', quoting=csv.QUOTE_MINIMAL)
            w.writerow(["id", "Question", "Answer_1"])
            w.writerows(lines)
    before = Document.objects.count()
    test_db = connection.settings_dict["NAME"]
    out = StringIO()
    call_command("evaluate_corpus", "--csv", str(folder), "--format", "vicov19qa", "--model", minilm_path,
                 "--mode", "keyword", "--mode", "vector", "--mode", "hybrid", "--calibrate-on", "val",
                 "--name", "tiny-vicov", stdout=out)
    text = out.getvalue()
    # one answer shared by two questions: 5 passages; questions are counted once
    assert "5 passages (0 distractors), 3 test questions with 3 relevant passages, 2 calibration questions" in text
    assert "similarity floor" in text and "robust default" in text
    assert "hybrid MRR@10" in text and "best single mode" in text
    assert connection.settings_dict["NAME"] == test_db and Document.objects.count() == before
    with embedded._connect(settings.DATABASES["default"]["HOST"]) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'eval_scratch_%%'").fetchall()
    assert left == []
    data = json.loads((tmp_path / "reports" / "tiny-vicov" / "performance_metrics.json").read_text())
    assert {r["mode"] for r in data["runs"]} == {"keyword", "vector", "hybrid"}
    assert data["calibration"]["best"]["MRR@10"] >= max(data["calibration"]["vector_only"]["MRR@10"],
                                                        data["calibration"]["keyword_only"]["MRR@10"])
    assert data["floors"]["vector"]["floor"] is not None and "bootstrap" in data["calibration"]
    assert EvaluationRun.objects.filter(name="tiny-vicov", set_name="vicov19qa:test").count() == 3
    # floors from elsewhere, given: a similarity floor no passage reaches leaves vector search empty-handed
    call_command("evaluate_corpus", "--csv", str(folder), "--model", minilm_path, "--mode", "vector",
                 "--floors", "0.999,-,-", "--name", "given-floors", "--no-record", stdout=out)
    given = json.loads((tmp_path / "reports" / "given-floors" / "performance_metrics.json").read_text())
    assert given["floors_given"] == {"similarity_floor": 0.999, "keyword_floor": None, "semantic_only_floor": None}
    assert given["runs"][0]["metrics"]["MRR@10"] == 0 and data["runs"][0]["metrics"]["MRR@10"] > 0
