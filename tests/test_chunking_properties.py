"""Item 16: the chunker's invariants (tests/chunk_invariants.py) over random
documents — headings, paragraphs, sentences, sentences longer than the budget,
Vietnamese text — chunked with the real tokenizer at random budgets and overlaps."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documents.services.chunking import chunk_sections
from documents.services.extraction import Section
from documents.services.tokens import default_model_path, token_counter
from tests.chunk_invariants import check_chunks

SYLLABLES = ["nghỉ", "phép", "năm", "quy", "định", "nhân", "viên", "được", "hưởng", "lương", "theo", "Bộ", "luật",
             "Lao", "động", "VPN", "SAP", "13/2023/NĐ-CP", "3.2", "100.000", "đồng", "(RPO)", "e-mail", "công",
             "ty", "Sao", "Việt", "bảo", "mật", "thông", "tin", "khách", "hàng", "Đà", "Nẵng", "ưu", "tiên"]
word = st.sampled_from(SYLLABLES) | st.text(st.characters(categories=("L", "N")), min_size=1, max_size=6)
sentence = st.builds(lambda words, end: " ".join(words) + end, st.lists(word, min_size=1, max_size=40),
                     st.sampled_from([".", "?", "!", ";", ":", "", ","]))
paragraph = st.builds(" ".join, st.lists(sentence, min_size=1, max_size=8))
long_sentence = st.builds(" ".join, st.lists(word, min_size=80, max_size=400))  # no sentence end at all
body = st.builds("\n".join, st.lists(paragraph | long_sentence, min_size=1, max_size=6))
heading = st.builds(" ".join, st.lists(word, min_size=1, max_size=6))
section = st.builds(Section, st.lists(heading, max_size=3), body)


@pytest.fixture(scope="module")
def counter():
    return token_counter(str(default_model_path()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections=st.lists(section, min_size=1, max_size=5), max_tokens=st.integers(40, 254),
       overlap_share=st.floats(0, 0.45))
def test_chunker_invariants_on_random_documents(counter, sections, max_tokens, overlap_share):
    overlap = int(max_tokens * overlap_share)
    content, chunks = chunk_sections(sections, counter.count, max_tokens=max_tokens, overlap=overlap)
    check_chunks(sections, content, chunks, counter.count, max_tokens=max_tokens, overlap=overlap)


def test_a_section_of_many_pieces_keeps_its_last_piece(counter):
    """The bug the issue describes (dropping the last piece of a section with more
    than two pieces) on one plain example, so the failure reads clearly."""
    text = " ".join(f"Câu số {i} của điều khoản về nghỉ phép năm." for i in range(60))
    sections = [Section(["Quy chế", "4. Nghỉ phép"], text)]
    content, chunks = chunk_sections(sections, counter.count, max_tokens=60, overlap=10)
    assert len(chunks) > 3
    check_chunks(sections, content, chunks, counter.count, max_tokens=60, overlap=10)
    assert chunks[-1].text.endswith("Câu số 59 của điều khoản về nghỉ phép năm.")
