"""The offline answer: the sentences of the sources that best match the
question, quoted as written, each with its source's number.

A sentence's score is the share of the question's weight it matches, phrase
by phrase — the same measure as the keyword floor (search.services.matching:
"quy trình nghỉ phép" is matched by "quy trình" and "nghỉ phép", not by a stray
"trình" and "phép"; syllables weighted by their rarity in the corpus) — plus a
little for the section and document it sits in, so of two equal sentences the
one under the question's heading wins; a short heading-like line counts half
(it repeats the question's words without answering them). Document-control
lines ("Mã tài liệu: … | Phiên bản: …"), separators and a document's masthead
are never quoted (search.services.snippets.content_lines). Sentences repeated
by the overlap between consecutive chunks are quoted once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from documents.services.chunking import heading_line
from documents.services.text import fold
from search.services.matching import QueryMatcher
from search.services.relevance import query_weights
from search.services.snippets import content_lines

MAX_QUOTES = 3
MAX_PER_SOURCE = 2
MAX_QUOTE_CHARS = 400
MIN_WORDS = 3  # shorter pieces are labels and list stubs, not statements
CONTEXT_WEIGHT = 0.2
# A short line without a sentence end is heading-like ("2. Quy trình nghỉ phép"): it
# repeats the question's words without answering it, so it counts half (as in snippets).
HEADING_LIKE_WORDS = 8
HEADING_LIKE_WEIGHT = 0.5

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_ENDS_SENTENCE = re.compile(r"[.!?…:;)]\s*$")
_LIST_MARK = re.compile(r"^(?:[-*•+]|\d{1,2}[.)])\s+")


@dataclass
class Quote:
    source: object  # answers.services.evidence.Source
    text: str
    score: float
    position: int  # order in its chunk


def sentences(text: str, *, masthead: bool = False) -> list[str]:
    """The content sentences of a chunk, list markers dropped."""
    out = []
    for line in content_lines(text, masthead=masthead):
        for piece in _SENTENCE_END.split(text[line.start:line.end]):
            piece = _LIST_MARK.sub("", piece.strip())
            if len(piece.split()) >= MIN_WORDS:
                out.append(_shortened(piece))
    return out


def _shortened(sentence: str) -> str:
    if len(sentence) <= MAX_QUOTE_CHARS:
        return sentence
    return sentence[:MAX_QUOTE_CHARS].rsplit(" ", 1)[0] + " …"


def best_quotes(question: str, sources: list) -> list[Quote]:
    """At most MAX_QUOTES sentences, best first; when no sentence shares a word
    with the question (the passages passed the floors by meaning), the first
    sentence of the best source that has one."""
    matcher, weights = QueryMatcher(question), query_weights(question)
    candidates = []
    for source in sources:
        context = matcher.matches(f"{source.document.title}\n{heading_line(source.chunk.heading_path)}")
        for position, sentence in enumerate(sentences(source.chunk.text, masthead=source.chunk.ordinal == 0)):
            candidates.append((source, position, sentence, matcher.matches(sentence), context))
    if not candidates:  # only headings, labels or a masthead: the best passage as it stands
        return [Quote(sources[0], _shortened(" ".join(sources[0].chunk.text.split())), 0.0, 0)] if sources else []
    compounds = set().union(*(found.phrase_positions for _, _, _, found, _ in candidates))
    scored = []
    for source, position, sentence, found, context in candidates:
        own = matcher.coverage(found, weights, compounds)
        if len(sentence.split()) < HEADING_LIKE_WORDS and not _ENDS_SENTENCE.search(sentence):
            own *= HEADING_LIKE_WEIGHT
        if own > 0:
            score = own + CONTEXT_WEIGHT * matcher.coverage(context, weights, compounds)
            scored.append(Quote(source, sentence, round(score, 4), position))
    scored.sort(key=lambda q: (-q.score, q.source.number, q.position))
    chosen, seen, per_source = [], set(), {}
    for quote in scored:
        key = " ".join(fold(quote.text).split())
        if key in seen or per_source.get(quote.source.number, 0) >= MAX_PER_SOURCE:
            continue
        seen.add(key)
        per_source[quote.source.number] = per_source.get(quote.source.number, 0) + 1
        chosen.append(quote)
        if len(chosen) == MAX_QUOTES:
            break
    if not chosen:
        first = next(((s, p, t) for s, p, t, _, _ in candidates), None)
        chosen = [Quote(first[0], first[2], 0.0, first[1])] if first else []
    return chosen


def extracted_text(quotes: list[Quote], numbers: dict[int, int]) -> str:
    """The quotes, one a line, each followed by its citation's number
    (`numbers`: source number → citation number). Built here rather than
    renumbered from the text: a quoted sentence may hold a "[2]" of its own."""
    return "\n".join(f"{q.text} [{numbers[q.source.number]}]" for q in quotes)
