"""A search that admits "nothing found": phrase matching, the relevance floors,
their calibration, snippets that show content, and the pages that say so."""
import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from documents.services.processing import process_document
from search.evaluation import floors
from search.evaluation.models import EvaluationSet
from search.services import embedding, keyword_index, spaces
from search.services.matching import QueryMatcher, is_vietnamese_syllable
from search.services.results import run_search
from search.services.snippets import Snippets, content_lines, is_control_line, make_snippet
from tests import factories as f

LEAVE = ("# Quy chế nghỉ phép năm\n\n## 1. Số ngày nghỉ\n\nNhân viên được nghỉ phép năm 12 ngày có hưởng lương. "
         "Quy trình nghỉ phép: gửi đơn cho quản lý trực tiếp trước 3 ngày làm việc.\n")
AUDIT = ("# Hướng dẫn giải trình\n\n## Giải trình chi phí\n\nMọi khoản chi phải có giải trình. Hành vi sử dụng "
         "tài sản trái phép bị xử lý theo quy định.\n")
VPN = ("# Hướng dẫn VPN\n\n## Cài đặt\n\nTải phần mềm VPN client và đăng nhập bằng tài khoản SSO.\n\n"
       "## Lỗi thường gặp\n\nNếu không kết nối được VPN, kiểm tra mạng và liên hệ IT helpdesk.\n")


# --- phrases ------------------------------------------------------------------

def marked(html: str) -> list[str]:
    import re

    return re.findall(r"<mark>(.*?)</mark>", html)


def test_phrases_are_highlighted_not_stray_syllables():
    text = ("Quy trình nghỉ phép áp dụng cho mọi người. Báo cáo giải trình số liệu; hành vi trái phép bị xử lý.")
    assert marked(make_snippet(text, "quy trình nghỉ phép")) == ["Quy trình nghỉ phép"]
    # a phrase matched: the query's other syllables are not marked alone ("Quy" of "Quy chế")
    assert marked(make_snippet("Quy chế này quy định chế độ nghỉ phép năm.", "quy trình nghỉ phép")) == [
        "nghỉ phép"]


def test_single_syllables_light_up_only_where_no_phrase_matches():
    # no phrase of the query anywhere: its syllables are all there is to show
    assert marked(make_snippet("Báo cáo giải trình và trình bày.", "quy trình")) == ["trình", "trình"]
    # an acronym is a word of its own: marked alone, beside the phrase
    assert marked(make_snippet("Cài đặt phần mềm VPN client trên máy.", "hướng dẫn cài đặt VPN")) == [
        "Cài đặt", "VPN"]


def test_a_syllable_that_forms_a_phrase_in_other_results_is_not_marked_alone():
    snippets = Snippets("quy trình nghỉ phép")
    assert marked(snippets.snippet("Bộ quy tắc ứng xử áp dụng cho mọi nhân viên.")) == ["quy"]  # nothing else known
    snippets.learn_compounds(["Quy trình mua sắm hàng hóa.", "Đơn xin nghỉ phép năm."])
    assert marked(snippets.snippet("Bộ quy tắc ứng xử áp dụng cho mọi nhân viên.")) == []


def test_accentless_query_marks_accented_phrase_and_accented_query_is_exact():
    assert marked(make_snippet("Đơn xin nghỉ phép năm.", "nghi phep")) == ["nghỉ phép"]
    assert marked(make_snippet("Anh ấy nghĩ phép cộng dễ.", "nghỉ phép")) == ["phép"]  # "nghĩ" is another word
    # a character whose lower case is longer ('İ') does not turn the exact match into a folded one
    assert marked(make_snippet("Chi nhánh İzmir: đơn xin nghỉ phép; nghĩ phép cộng.", "nghỉ phép")) == ["nghỉ phép"]


def test_vietnamese_syllables_are_told_from_acronyms_and_codes():
    assert all(is_vietnamese_syllable(t) for t in ("nghỉ", "phép", "quy", "trình", "giữa", "khuyến", "ngoài"))
    assert not any(is_vietnamese_syllable(t) for t in ("vpn", "sso", "kubernetes", "2024", "jira", "crm"))


def test_coverage_counts_phrases_and_discounts_stray_syllables():
    matcher = QueryMatcher("quy trình nghỉ phép")
    weights = {"quy": 1.0, "trình": 1.0, "nghỉ": 2.0, "phép": 2.0}
    phrase = matcher.matches("Quy trình nghỉ phép năm")
    stray = matcher.matches("Quy trình giải trình; nghỉ hưu; trái phép")
    assert matcher.coverage(phrase, weights, set()) == 1.0
    # "nghỉ" and "phép" found apart: half when no passage has them together, nothing when one does
    assert matcher.coverage(stray, weights, compounds=set()) == pytest.approx((2 + 0.5 * 4) / 6)
    assert matcher.coverage(stray, weights, compounds=phrase.phrase_positions) == pytest.approx(2 / 6)
    vpn = QueryMatcher("cài đặt VPN")
    found = vpn.matches("cài đặt xong thì mở VPN")
    assert vpn.coverage(found, {"cài": 1, "đặt": 1, "vpn": 3}, set()) == 1.0


# --- snippets -------------------------------------------------------------------

CONTROL = ("Công ty Cổ phần Công nghệ Sao Việt (SVTech)\n"
           "Hướng dẫn cài đặt VPN\n=====================\n"
           "Mã tài liệu: IT_GUIDE_2024_001 | Phiên bản: 1.3 | Ngày hiệu lực: 17/06/2024\n")


def test_a_title_glued_to_its_underline_and_control_fields_is_not_content():
    # plain-text extraction joins "Title\n=====\nCompany Mã tài liệu: … | …" into one line
    glued = ("Quy trình mua sắm hàng hóa ===================================== Công ty Cổ phần Sao Việt "
             "Mã tài liệu: FIN_PROC_2025_002 | Phiên bản: 1.0 | Ngày hiệu lực: 02/01/2025")
    assert [glued[x.start:x.end] for x in content_lines(glued)] == [
        "Quy trình mua sắm hàng hóa", "Công ty Cổ phần Sao Việt"]
    assert content_lines(glued, masthead=True) == []
    prose = "Cài đặt bản cập nhật: phiên bản 2.0 yêu cầu khởi động lại máy sau khi cài đặt xong."
    assert len(content_lines(prose)) == 1  # a label word inside a sentence is not a control field


def test_control_lines_and_separators_are_not_content():
    assert is_control_line("Mã tài liệu: IT_GUIDE_2024_001 | Phiên bản: 1.3 | Phân loại: Nội bộ")
    assert is_control_line("Document code: X-1 | Version: 2") and is_control_line("==========")
    assert is_control_line("Trang 3/12") and not is_control_line("Bước 3: mở VPN client và đăng nhập.")
    assert content_lines(CONTROL, masthead=True) == []  # the masthead of a document's first chunk
    assert [CONTROL[x.start:x.end] for x in content_lines(CONTROL)] == [
        "Công ty Cổ phần Công nghệ Sao Việt (SVTech)", "Hướng dẫn cài đặt VPN"]


def test_snippet_window_is_the_best_matching_content():
    filler = " ".join(["Nội dung chung về quản trị hệ thống của công ty."] * 12)
    text = (CONTROL + filler + "\nĐể cài đặt VPN client, tải bộ cài từ cổng nội bộ và đăng nhập bằng SSO. "
            + filler)
    html = make_snippet(text, "hướng dẫn cài đặt VPN")
    assert "Mã tài liệu" not in html and "=====" not in html
    assert "<mark>cài đặt VPN</mark> client" in html and html.startswith("… ")


def test_a_masthead_chunk_gives_way_to_the_next_passage(db, minilm_path):
    doc = f.document(1, status="pending", text=(
        "Công ty Cổ phần Công nghệ Sao Việt\n\n# Hướng dẫn VPN\n\nMã tài liệu: IT_1 | Phiên bản: 1.0\n\n"
        "## 1. Cài đặt\n\nTải VPN client từ cổng nội bộ và đăng nhập bằng tài khoản SSO của bạn.\n"))
    assert process_document(doc.pk) == "ready"
    keyword_index.rebuild()
    root = f.user("root", is_superuser=True)
    hit = run_search(root, "hướng dẫn VPN", "keyword").hits[0]
    assert "Mã tài liệu" not in hit.snippet and "Tải <mark>VPN</mark> client" in hit.snippet
    # the premise: the best-ranked passage has no content of its own; the snippet came from the next one
    assert not Snippets("VPN").has_content(hit.chunk.text, masthead=hit.chunk.ordinal == 0)


# --- floors -------------------------------------------------------------------

def ready(level, text, departments=("HR",)):
    doc = f.document(level, text=text, departments=departments, status="pending")
    assert process_document(doc.pk) == "ready"
    return doc


@pytest.fixture
def corpus(db, minilm_path):
    docs = {"leave": ready(1, LEAVE), "audit": ready(0, AUDIT, ("FIN",)), "vpn": ready(0, VPN, ("IT",))}
    keyword_index.rebuild()
    space = spaces.create_space("floors", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    return docs


def codes(result):
    return [h.document.code for h in result.hits]


def test_without_floors_every_search_lists_documents(corpus):
    root = f.user("root", is_superuser=True)
    assert run_search(root, "zzzxqv", "vector").total_documents == 3  # nearest neighbours, however unrelated


def test_floors_turn_nonsense_and_off_topic_into_nothing_found(corpus):
    space = spaces.active_space()
    space.similarity_floor, space.keyword_floor = 0.99, 0.5
    space.save()
    root = f.user("root", is_superuser=True)
    for query in ("zzzxqv", "công thức nấu phở bò", "lịch thi đấu bóng đá"):
        for mode in ("vector", "keyword", "hybrid"):
            assert run_search(root, query, mode).total_documents == 0, (query, mode)
    # a keyword hit that covers the query is still a result in hybrid and keyword modes
    assert codes(run_search(root, "quy trình nghỉ phép", "hybrid"))[:1] == [corpus["leave"].code]
    assert codes(run_search(root, "quy trình nghỉ phép", "keyword")) == [corpus["leave"].code]  # not AUDIT
    assert run_search(root, "quy trình nghỉ phép", "vector").total_documents == 0  # nothing that similar


def test_a_vector_neighbour_above_the_floor_is_a_result(corpus):
    space = spaces.active_space()
    root = f.user("root", is_superuser=True)
    best = run_search(root, "VPN client", "vector").ranked[0]
    space.similarity_floor, space.keyword_floor = best[1] - 1e-6, 1.0
    space.save()
    assert run_search(root, "VPN client", "vector").ranked == [best]
    hybrid = run_search(root, "VPN client", "hybrid")
    assert codes(hybrid) == [corpus["vpn"].code]


def test_a_query_with_a_clear_winner_is_spared_the_semantic_only_floor(corpus):
    """No keyword evidence at all and a semantic-only floor nothing reaches: the
    neighbours are results only when the query's best one stands out from the rest
    by the space's clear-winner gap — in search and in the calibration alike."""
    from search.evaluation import calibration
    from search.services import relevance

    space = spaces.active_space()
    root = f.user("root", is_superuser=True)
    neighbours = run_search(root, "VPN client", "vector").ranked  # no floors yet: every chunk, best first
    gap = relevance.vector_gap(neighbours)
    assert gap > 0
    space.similarity_floor, space.keyword_floor, space.semantic_only_floor = -1.0, 1.01, 0.9999
    for gap_floor, found in ((gap - 1e-6, True), (gap + 1e-6, False), (None, False)):
        space.vector_gap_floor = gap_floor
        space.save()
        hybrid = run_search(root, "VPN client", "hybrid")
        assert (hybrid.total_documents > 0) == found, gap_floor
        row = (None, neighbours, [], {})
        vector, _ = calibration.floored(row, (-1.0, 1.01, 0.9999, gap_floor))
        assert bool(vector) == found
    assert codes(run_search(root, "VPN client", "hybrid")) == [] and space.vector_gap_floor is None


def test_the_only_answer_hidden_from_the_user_means_nothing_found_and_a_sign_in_hint(corpus):
    space = spaces.active_space()
    space.similarity_floor, space.keyword_floor = 0.99, 0.5
    space.save()
    assert run_search(AnonymousUser(), "quy trình nghỉ phép", "hybrid").total_documents == 0
    page = Client().get("/search/", {"q": "quy trình nghỉ phép"}).content.decode()
    assert 'class="card empty"' in page and "/login/" in page
    found = Client().get("/search/", {"q": "VPN client", "mode": "keyword"}).content.decode()
    assert 'class="card result"' in found and 'class="muted signin-hint"' in found  # results, and the hint
    signed_in = Client()
    signed_in.force_login(f.user("lan", departments=["HR"]))
    page = signed_in.get("/search/", {"q": "quy trình nghỉ phép"}).content.decode()
    assert 'class="card result"' in page and 'class="card empty"' not in page


def test_floor_choice_keeps_answers_and_turns_probes_away():
    chosen = floors.choose_floor([0.86, 0.87, 0.9, 0.91] * 25, [0.80, 0.82, 0.83] * 10)
    assert chosen["floor"] == 0.86 and chosen["answers_kept"] == 1.0 and chosen["probes_turned_away"] == 1.0
    overlapping = floors.choose_floor([0.80, 0.85, 0.9] * 34, [0.84, 0.86] * 10)
    assert overlapping["floor"] <= 0.80 + 1e-9 and overlapping["answers_kept"] >= 0.98  # answers win
    assert floors.choose_floor([0.9] * 50, [0.1] * 5, cap=0.5)["floor"] == 0.5
    assert floors.choose_floor([], [0.5])["floor"] is None


def test_calibrated_floors_keep_the_sets_answers(corpus):
    from search.evaluation import sets

    s = sets.import_records("floors-set", [
        {"query": "quy trình nghỉ phép", "doc_id": corpus["leave"].code, "_line": 1},
        {"query": "giải trình chi phí", "doc_id": corpus["audit"].code, "_line": 2},
        {"query": "cài đặt VPN client", "doc_id": corpus["vpn"].code, "_line": 3}])
    space = spaces.active_space()
    record = floors.calibrate_floors(EvaluationSet.objects.get(pk=s.pk), space)
    space.refresh_from_db()
    assert space.similarity_floor == record["vector"]["floor"] and space.keyword_floor == record["keyword"]["floor"]
    assert space.vector_gap_floor == record["vector_gap"]["floor"] is not None  # above most probes' gaps
    assert record["vector_gap"]["probes_with_clear_winner"] <= 0.1
    assert record["vector"]["answers_kept"] == 1.0 and record["keyword"]["answers_kept"] == 1.0
    assert space.calibration["floors"]["set"] == "floors-set"
    root = f.user("root", is_superuser=True)
    for item in s.items.all():
        assert codes(run_search(root, item.query, "hybrid"))[:1] == item.relevant_documents
    assert "keeps" in floors.floors_table(record)
