"""Whether the passages a question found are evidence enough to ANSWER it.

The search's relevance floors (search.services.relevance) decide whether a
passage is a result: a search may show a passage on the question's subject.
An answer needs more: a near miss — "which month is the health check-up?"
against "a check-up once a year", "the regional minimum wage of region II"
against the figure for region I — shares most of its words with a passage
that does not answer it, and the floors, calibrated against off-topic probes,
let it through. The space's `answer_floor` (calibrated by
answers.services.answer_calibration on an evaluation set and questions it
cannot answer; empty: the floors alone decide) asks of the best source one of:

- **content coverage**: the share of the question's weight it covers, phrase
  by phrase — the keyword floor's measure (search.services.matching: rare
  syllables weigh more) — with the question's own words weighing nothing
  ("bao nhiêu", "có … không", "là gì", "mấy": an employee's question has them,
  a passage never answers with them) — at least the answer floor; or
- **similarity**: a cosine to the question at least the space's semantic-only
  floor (the bar a passage found by meaning alone must clear in hybrid search,
  above the nearest wrong passage for 95% of the calibration questions): a
  paraphrase with few shared words is still answered when its passage is that
  close.

Below both, the answer is "not found" and no model is asked. The search
results themselves never change.
"""
from __future__ import annotations

from dataclasses import dataclass

from documents.services.text import fold
from search.models import EmbeddingSpace
from search.services.matching import QueryMatcher, exact_syllables
from search.services.relevance import chunk_similarities, keyword_coverage, query_weights

# How a question asks, not what it asks about: weighed nothing. Phrases are
# matched on the question's syllables (folded when it was typed without
# diacritics); single syllables only where they cannot be a content word.
QUESTION_PHRASES = ("bao nhiêu", "bao lâu", "bao giờ", "như thế nào", "thế nào", "làm sao", "làm thế nào",
                    "tại sao", "vì sao", "khi nào", "ở đâu", "là gì", "hay không", "có không", "có phải")
QUESTION_WORDS = {"gì", "nào", "mấy", "ai", "đâu", "không", "ko", "có", "là", "được", "thì", "ạ", "nhỉ", "vậy",
                  "hả", "chưa", "nhé", "k"}
# Typed without diacritics a syllable stands for all its accented forms: "may" is also
# "máy" (máy tính), "co" also "cổ" (cổ phiếu), "dau" also "đầu" (đầu tư): kept.
QUESTION_WORDS_FOLDED = {"gi", "nao", "ai", "khong", "ko", "duoc", "la", "k", "nhi", "vay", "nhe"}


@dataclass(frozen=True)
class Support:
    coverage: float  # the best source's content coverage of the question (0–1)
    similarity: float | None  # the best source's cosine to the question (None: no vector)

    def answers(self, answer_floor: float | None, similarity_bar: float | None) -> bool:
        """The rule (module docstring); an empty answer floor answers always."""
        if answer_floor is None:
            return True
        if self.coverage >= answer_floor:
            return True
        return similarity_bar is not None and self.similarity is not None and self.similarity >= similarity_bar


def question_word_positions(tokens: list[str]) -> set[int]:
    """Positions of the question's syllables that ask rather than say (lower-cased tokens)."""
    accented = any(exact_syllables(tokens))
    seq = tokens if accented else [fold(t) for t in tokens]
    found = set()
    for phrase in QUESTION_PHRASES:
        words = phrase.split() if accented else fold(phrase).split()
        for i in range(len(seq) - len(words) + 1):
            if seq[i:i + len(words)] == words:
                found.update(range(i, i + len(words)))
    single = QUESTION_WORDS if accented else QUESTION_WORDS_FOLDED
    return found | {i for i, t in enumerate(seq) if t in single}


def content_weights(question: str) -> dict[str, float]:
    """The keyword floor's weights (idf per distinct syllable), question words at 0.
    A question made of question words only keeps its weights (nothing else to weigh)."""
    weights = query_weights(question)
    tokens = QueryMatcher(question).tokens
    positions = question_word_positions(tokens)
    asking = {tokens[i] for i in positions}
    # a syllable that both asks and says ("có" in "có không" and "có hiệu lực") is weighed as content
    saying = {t for i, t in enumerate(tokens) if i not in positions}
    content = {t: (0.0 if t in asking - saying else w) for t, w in weights.items()}
    return content if any(content.values()) else weights


def measure(space: EmbeddingSpace | None, question: str, chunk_ids: list[int]) -> Support | None:
    """The best of the sources `chunk_ids` on each measure; None without sources."""
    if not chunk_ids:
        return None
    covered = keyword_coverage(question, chunk_ids, weights=content_weights(question))
    similar = chunk_similarities(space, question, chunk_ids) if space is not None else {}
    return Support(coverage=round(max(covered.values(), default=0.0), 4),
                   similarity=round(max(similar.values()), 4) if similar else None)
