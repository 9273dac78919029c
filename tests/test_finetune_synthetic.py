"""Synthetic queries: the offline generator (headings, titles, keywords, first
sentences; Vietnamese-aware) and the chat-endpoint generator against a stub
server on loopback (never the internet)."""
import time

import pytest

from finetune.models import DatasetStatus
from finetune.services.datasets import DatasetRefused, DatasetSpec, build_dataset
from finetune.services.datasets.synthetic import ChatError, ChatGenerator, OfflineGenerator, SourceChunk
from finetune.services.datasets.synthetic.offline import strip_numbering
from tests import factories as f
from tests.finetune_helpers import ChatStub, completion, meta_doc, metadata


@pytest.fixture(autouse=True)
def _english():
    """Messages are compared in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield


TITLE = "Quy chế nghỉ phép năm"


def chunk(text, heading_path=(), ordinal=1, first=True, keywords=(), doc_key="doc:1", title=TITLE):
    return SourceChunk(text=text, passage=text, title=title, doc_key=doc_key, access_level=1,
                       heading_path=list(heading_path), keywords=list(keywords), ordinal=ordinal,
                       first_of_section=first)


@pytest.mark.parametrize("heading,expected", [
    ("4.1 Số ngày phép được hưởng", "Số ngày phép được hưởng"),
    ("Điều 5. Thời giờ làm việc", "Thời giờ làm việc"),
    ("Chương II: Quy định chung", "Quy định chung"),
    ("III. Trách nhiệm", "Trách nhiệm"),
    ("a) Nghỉ kết hôn", "Nghỉ kết hôn"),
    ("2024 kế hoạch", "kế hoạch"),
    ("Số ngày phép", "Số ngày phép"),
])
def test_heading_numbers_are_dropped(heading, expected):
    assert strip_numbering(heading) == expected


def test_offline_queries_from_heading_sentence_keywords_and_unaccented():
    queries = OfflineGenerator().generate(chunk(
        "Người lao động làm việc đủ 12 tháng được nghỉ hằng năm 12 ngày làm việc, hưởng nguyên lương theo luật.",
        [TITLE, "4.1 Số ngày phép được hưởng"], keywords=["phép năm", "nguyên lương", "ngày làm việc"]), 5)
    assert queries == [
        ("số ngày phép được hưởng", "heading"),
        ("quy chế nghỉ phép năm", "title"),
        ("người lao động làm việc đủ 12 tháng được nghỉ hằng năm", "sentence"),  # 12 words
        ("so ngay phep duoc huong", "unaccented"),
        ("nguyên lương", "keywords"),  # "phép năm" and "ngày làm việc" are said already
    ]


def test_a_generic_heading_is_completed_with_the_title_and_acronyms_keep_their_case():
    gen = OfflineGenerator()
    assert gen.generate(chunk("Quy chế này quy định chế độ nghỉ phép năm cho nhân viên.", [TITLE, "1. Mục đích"]),
                        1) == [("mục đích quy chế nghỉ phép năm", "heading")]
    assert gen.generate(chunk("Cài đặt ứng dụng trên máy tính của công ty.", ["VPN cho nhân viên mới"],
                              doc_key="doc:2"), 1) == [("VPN cho nhân viên mới", "heading")]


def test_document_control_lines_and_the_masthead_never_give_a_query():
    gen = OfflineGenerator()
    only_control = chunk("Công ty Cổ phần Công nghệ Sao Việt\nMã tài liệu: HR_01 | Phiên bản: 2.1 | Ngày hiệu lực: "
                         "01/03/2024\n==========", [TITLE], ordinal=0)
    assert not gen.has_content(only_control) and gen.generate(only_control) == []
    mixed = chunk("Công ty Cổ phần Công nghệ Sao Việt\nMã tài liệu: HR_01 | Phiên bản: 2.1\n"
                  "Quy chế này áp dụng cho toàn bộ người lao động.", [TITLE, "Phạm vi"], ordinal=0,
                  first=False)
    queries = dict((kind, q) for q, kind in gen.generate(mixed, 5))
    assert queries["sentence"] == "quy chế này áp dụng cho toàn bộ người lao động"
    assert all("Mã tài liệu" not in q and "Sao Việt" not in q for q in queries.values())


def test_heading_query_for_the_first_chunk_of_a_section_only_and_title_once_per_document():
    gen = OfflineGenerator()
    text = "Nhân viên gửi đơn nghỉ phép qua hệ thống HRM trước ít nhất ba ngày làm việc."
    first = dict((k, q) for q, k in gen.generate(chunk(text, [TITLE, "Đăng ký nghỉ phép"], first=True), 5))
    second = dict((k, q) for q, k in gen.generate(chunk(text, [TITLE, "Đăng ký nghỉ phép"], first=False), 5))
    assert first["heading"] == "đăng ký nghỉ phép" and "heading" not in second
    assert "title" in first and "title" not in second
    other = dict((k, q) for q, k in gen.generate(chunk(text, ["Khác"], doc_key="doc:2", title="Sổ tay"), 5))
    assert other["title"] == "sổ tay"


# --- the chat endpoint ---------------------------------------------------------------

def generator(stub, **kw):
    return ChatGenerator(stub.url, "tiny-chat", kw.pop("api_key", "sk-test"), timeout=kw.pop("timeout", 2),
                         retries=kw.pop("retries", 2), backoff=0.01, **kw)


def test_chat_generator_sends_the_chunk_and_parses_one_query_per_line():
    answer = completion("1. nghỉ phép năm được mấy ngày?\n- nghi phep nam\n\n\"thâm niên cộng phép\"\n"
                        "nghỉ phép năm được mấy ngày?\n" + "x" * 400)
    with ChatStub([(200, answer, 0)]) as stub:
        queries = generator(stub).generate(chunk("Người lao động được nghỉ 12 ngày.", [TITLE, "4.1 Số ngày"]), 3)
    assert queries == [("nghỉ phép năm được mấy ngày?", "llm"), ("nghi phep nam", "llm"),
                       ("thâm niên cộng phép", "llm")]
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "tiny-chat"
    user_message = request["body"]["messages"][-1]["content"]
    assert "Người lao động được nghỉ 12 ngày." in user_message and TITLE in user_message and "Write 3" in user_message


def test_chat_generator_retries_an_overloaded_server_then_succeeds():
    with ChatStub([(503, {"error": "busy"}, 0), (429, {"error": "slow down"}, 0), (200, completion("q1"), 0)]) as stub:
        assert generator(stub).generate(chunk("text"), 1) == [("q1", "llm")]
    assert len(stub.requests) == 3


def test_chat_generator_gives_up_after_its_retries_with_a_clear_error():
    with ChatStub([(502, {"error": "bad gateway"}, 0)]) as stub:
        with pytest.raises(ChatError, match=r"did not answer after 3 tries \(last: HTTP 502"):
            generator(stub).generate(chunk("text"))
    assert len(stub.requests) == 3


def test_chat_generator_does_not_retry_a_refusal_and_never_shows_the_key():
    with ChatStub([(401, {"error": "invalid key"}, 0)]) as stub:
        with pytest.raises(ChatError) as error:
            generator(stub, api_key="sk-secret-123").generate(chunk("text"))
    assert "refused the request (HTTP 401" in str(error.value) and "sk-secret-123" not in str(error.value)
    assert len(stub.requests) == 1


def test_chat_generator_times_out():
    with ChatStub([(200, completion("late"), 1.5)]) as stub:
        started = time.monotonic()
        with pytest.raises(ChatError, match="did not answer after 2 tries"):
            generator(stub, timeout=0.3, retries=1).generate(chunk("text"))
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("answer,message", [
    (b"<html>oops</html>", "did not answer with JSON"),
    ({"choices": []}, "without a chat completion"),
    ({"choices": [{"message": {"content": None}}]}, "with no text"),
])
def test_chat_generator_rejects_answers_that_are_not_chat_completions(answer, message):
    with ChatStub([(200, answer, 0)]) as stub:
        with pytest.raises(ChatError, match=message):
            generator(stub).generate(chunk("text"))


def test_a_refused_connection_is_an_outage_error():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    gen = ChatGenerator(f"http://127.0.0.1:{port}/v1", "m", "", timeout=1, retries=1, backoff=0.01)
    with pytest.raises(ChatError, match="did not answer after 2 tries"):
        gen.generate(chunk("text"))


@pytest.mark.django_db
def test_http_synthetic_needs_a_configured_endpoint(settings):
    settings.CHAT_URL = None
    with pytest.raises(DatasetRefused, match="No chat endpoint is configured"):
        build_dataset("s", DatasetSpec(synthetic="http", synthetic_from=("metadata",),
                                       metadata=metadata(meta_doc("A", 1, "x"))))


@pytest.mark.django_db
def test_a_dataset_of_chat_queries_for_metadata_chunks(settings):
    settings.CHAT_URL, settings.CHAT_MODEL, settings.CHAT_API_KEY = None, "tiny-chat", ""
    settings.CHAT_RETRIES, settings.CHAT_TIMEOUT = 0, 5
    meta = metadata(*[meta_doc(f"D{i}", i % 4, f"Đoạn văn số {i} nói về quy định {i}.") for i in range(12)])

    def answer(body):
        passage = body["messages"][-1]["content"].split("Passage:\n")[1].split("\n")[0]
        return completion(f"câu hỏi về {passage}\ncau hoi ve {passage}")

    with ChatStub([(200, answer, 0)]) as stub:
        settings.CHAT_URL = stub.url
        dataset = build_dataset("chat", DatasetSpec(synthetic="http", synthetic_from=("metadata",), metadata=meta,
                                                    per_chunk=2, eval_share=0.25))
    assert dataset.status in (DatasetStatus.READY, DatasetStatus.INVALID), dataset.error
    assert dataset.counts["pairs"] == 24 and dataset.counts["eval"]["documents"] == 3
    assert {p.query_type for p in dataset.pairs.all()} == {"llm"}
    assert dataset.access_levels == [0, 1, 2, 3]
    source = dataset.sources[-1]
    assert source["generator"] == "http" and source["model"] == "tiny-chat" and source["url"].endswith("/chat/completions")


@pytest.mark.django_db
def test_a_chat_outage_during_a_build_fails_it_with_the_reason_and_no_pairs(settings):
    settings.CHAT_MODEL, settings.CHAT_RETRIES = "m", 0
    with ChatStub([(200, completion("q"), 0), (500, {"error": "down"}, 0)]) as stub:
        settings.CHAT_URL = stub.url
        dataset = build_dataset("down", DatasetSpec(synthetic="http", synthetic_from=("metadata",),
                                                    metadata=metadata(meta_doc("A", 1, "x", "y", "z"))))
    assert dataset.status == DatasetStatus.FAILED and "HTTP 500" in dataset.error
    assert not dataset.pairs.exists()


@pytest.mark.django_db
def test_offline_synthetic_dataset_from_portal_chunks():
    from documents.services.processing import process_document

    text = ("# Quy chế nghỉ phép\n\nMã tài liệu: HR_01 | Phiên bản: 2.1\n\n## 1. Mục đích\n\nQuy chế quy định chế độ "
            "nghỉ phép năm cho người lao động.\n\n## 2. Số ngày phép\n\nNgười lao động được nghỉ 12 ngày mỗi năm.\n")
    docs = [f.document(1, text=text.replace("nghỉ", f"nghỉ loại {i}").replace("phép", f"phép {i}")) for i in range(5)]
    for doc in docs:
        type(doc).objects.filter(pk=doc.pk).update(status="pending")
        process_document(doc.pk)
    user = f.user("builder", clearance=1)
    dataset = build_dataset("offline", DatasetSpec(synthetic="offline", eval_share=0.2), user)
    pairs = list(dataset.pairs.all())
    assert {p.doc_key for p in pairs} == {f"doc:{d.pk}" for d in docs}
    assert all(p.chunk_id and p.access_level == 1 and p.domain == "policy" for p in pairs)
    assert {"heading", "sentence", "unaccented", "title"} <= {p.query_type for p in pairs}
    assert not any("Mã tài liệu" in p.query for p in pairs)
    assert dataset.counts["eval"]["documents"] == 1
    assert dataset.sources[0]["as_user"] == "builder" and dataset.sources[0]["from"] == "portal"
