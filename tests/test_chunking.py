"""The chunker: token budget in the model's own tokens, heading boundaries,
overlap, exact offsets, Vietnamese diacritics intact."""
import unicodedata

import pytest
from django.utils import translation
from hypothesis import given, settings
from hypothesis import strategies as st

from documents.services.chunking import (
    ESTIMATE_WINDOW_CHARS,
    ESTIMATE_WINDOWS,
    TooManyChunks,
    chunk_sections,
    embedding_text,
    estimate_chunks,
)
from documents.services.extraction import Section, normalise
from documents.services.tokens import default_model_path, token_counter


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English (the msgids): the default interface
    language is Vietnamese, and its catalog translates them once the i18n work lands."""
    with translation.override("en"):
        yield


@pytest.fixture(scope="module")
def counter():
    return token_counter(str(default_model_path()))


def long_section(n=80, heading=("Chính sách nghỉ phép", "3. Quy định chung")):
    body = " ".join(f"Điều {i}: nhân viên được nghỉ phép năm có hưởng lương theo quy định của Bộ luật Lao động."
                    for i in range(n))
    return Section(list(heading), body)


def test_budget_never_exceeded_and_counts_are_exact(counter):
    content, chunks = chunk_sections([long_section()], counter.count, max_tokens=120, overlap=20)
    assert len(chunks) > 3
    for c in chunks:
        assert c.token_count == counter.count(embedding_text(c.text, c.heading_path))
        assert c.token_count <= 120


def test_budget_is_capped_by_model_max_sequence_length(counter):
    # all-MiniLM-L6-v2 reads 256 tokens; a configured 800 must not produce longer chunks
    assert counter.max_seq_length == 256
    budget = counter.budget(800)
    assert budget <= 256 - 2
    _, chunks = chunk_sections([long_section(200)], counter.count, max_tokens=budget, overlap=32)
    assert max(c.token_count for c in chunks) <= 254
    assert max(c.token_count for c in chunks) > 200  # and the room is actually used


def test_offsets_are_exact_slices_of_the_content(counter):
    sections = [Section(["Quy trình", "1. Mục đích"], "Ngắn gọn."), long_section(30)]
    content, chunks = chunk_sections(sections, counter.count, max_tokens=100, overlap=16)
    for c in chunks:
        assert content[c.char_start:c.char_end] == c.text


def test_chunks_never_straddle_headings(counter):
    sections = [Section(["A", "1. Mục đích"], "Câu một. Câu hai."), Section(["A", "2. Phạm vi"], "Câu ba.")]
    _, chunks = chunk_sections(sections, counter.count, max_tokens=200, overlap=10)
    assert [c.heading_path for c in chunks] == [["A", "1. Mục đích"], ["A", "2. Phạm vi"]]
    assert chunks[0].text == "Câu một. Câu hai."
    assert chunks[1].text == "Câu ba."


def test_consecutive_chunks_overlap_within_the_limit(counter):
    _, chunks = chunk_sections([long_section(60)], counter.count, max_tokens=120, overlap=30)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.char_start < prev.char_end, "no overlap"
        shared = prev.text[nxt.char_start - prev.char_start:]
        assert nxt.text.startswith(shared)
        assert counter.count(shared) <= 30


def test_zero_overlap_makes_disjoint_chunks(counter):
    _, chunks = chunk_sections([long_section(40)], counter.count, max_tokens=100, overlap=0)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.char_start >= prev.char_end


def test_a_sentence_longer_than_the_budget_is_split_by_words(counter):
    words = " ".join(["an toàn thông tin"] * 200)  # one sentence, no punctuation
    _, chunks = chunk_sections([Section([], words)], counter.count, max_tokens=64, overlap=8)
    assert len(chunks) > 5
    assert all(c.token_count <= 64 for c in chunks)
    assert all(not c.text.startswith(" ") and not c.text.endswith(" ") for c in chunks)


def test_vietnamese_diacritics_survive_and_are_nfc(counter):
    decomposed = unicodedata.normalize("NFD", "Quy định về bảo mật thông tin khách hàng: Đồng ý, Ưu tiên, Ỷ lại.")
    text = normalise(decomposed)
    assert text == unicodedata.normalize("NFC", decomposed)
    _, chunks = chunk_sections([Section(["Bảo mật"], text)], counter.count, max_tokens=64, overlap=8)
    joined = " ".join(c.text for c in chunks)
    for word in ("định", "bảo mật", "thông tin", "khách hàng", "Đồng ý", "Ưu tiên", "Ỷ lại"):
        assert word in joined
    assert all(unicodedata.is_normalized("NFC", c.text) for c in chunks)


def test_overlap_not_smaller_than_budget_is_refused(counter):
    with pytest.raises(ValueError):
        chunk_sections([long_section(3)], counter.count, max_tokens=50, overlap=50)


VIETNAMESE = st.text(st.sampled_from(list("aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợ"
                                          "ùủũúụừửữứựỳỷỹýỵAĂÂĐÊÔƠƯ0123456789 .,;:!?-/\n")), max_size=2000)


@settings(max_examples=60, deadline=None)
@given(text=VIETNAMESE | st.text(max_size=600))
def test_fast_counts_equal_the_tokenizers_own(counter, text):
    """The chunker counts with the Rust tokenizer directly (truncation and padding off):
    the same count as the transformers call, long texts included (MiniLM's
    tokenizer.json truncates at 128)."""
    expected = len(counter._tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
    assert counter.count(text) == expected


def test_a_long_text_is_counted_whole(counter):
    text = "Quy định về bảo mật thông tin khách hàng. " * 200
    assert counter.count(text) > 1000


@pytest.mark.parametrize("max_tokens", [120, 254])
def test_the_estimate_is_a_close_lower_bound(counter, max_tokens):
    """Never above the real count (a document under the limit is never refused on
    the estimate), and not far below it (packing whole sentences and the heading
    line leave room unused in each chunk)."""
    sections = [long_section(400), Section(["Phụ lục"], "Bảng kê. " * 300)]
    _, chunks = chunk_sections(sections, counter.count, max_tokens=max_tokens, overlap=0)
    estimate = estimate_chunks(sections, counter.count, max_tokens)
    assert 0.5 * len(chunks) <= estimate <= len(chunks), (estimate, len(chunks))


def test_a_document_clearly_over_the_chunk_limit_is_refused_before_chunking(counter):
    calls = []

    def counting(text):
        calls.append(len(text))
        return counter.count(text)

    huge = [long_section(3000)]  # ~ 300 kB
    with pytest.raises(TooManyChunks) as err:
        chunk_sections(huge, counting, max_tokens=120, overlap=20, max_chunks=100)
    assert err.value.estimate > 125 and "about" in str(err.value) and "PORTAL_INGEST_MAX_CHUNKS" in str(err.value)
    assert len(calls) <= ESTIMATE_WINDOWS and sum(calls) <= ESTIMATE_WINDOWS * ESTIMATE_WINDOW_CHARS


def test_a_document_just_over_the_limit_stops_at_the_first_chunk_past_it(counter):
    sections = [long_section(80)]
    _, chunks = chunk_sections(sections, counter.count, max_tokens=120, overlap=20)
    with pytest.raises(TooManyChunks) as err:
        chunk_sections(sections, counter.count, max_tokens=120, overlap=20, max_chunks=len(chunks) - 1)
    assert err.value.estimate is None and f"more than {len(chunks) - 1:,}" in str(err.value)
    _, again = chunk_sections(sections, counter.count, max_tokens=120, overlap=20, max_chunks=len(chunks))
    assert len(again) == len(chunks)
