"""How a document is chunked.

1. The extracted sections are laid out as one text (`render_content`): each
   section's heading line, then its body. Chunk offsets point into that text,
   and chunk text is always an exact slice of it.
2. Each section is chunked on its own, so a chunk never straddles two headings.
   Its body is cut into units — paragraphs; a paragraph over budget into
   sentences; a sentence over budget into runs of words — and units are packed
   greedily up to the token budget.
3. The budget counts what the model will read: the heading path line that is
   embedded with the chunk plus the chunk text, in the embedding model's own
   tokens (see tokens.py), never more than the model's max sequence length. A
   heading line that would leave the text less than a quarter of the budget is
   shortened (`fit_heading`).
4. Consecutive chunks of one section overlap by up to `overlap` tokens of whole
   sentences (or words, when a single sentence is longer than the overlap).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from django.utils.translation import gettext as _

from documents.services.extraction import Section

CountTokens = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")
_WORD = re.compile(r"\S+")


@dataclass
class ChunkDraft:
    text: str
    heading_path: list[str]
    char_start: int
    char_end: int
    token_count: int


def heading_line(heading_path: list[str]) -> str:
    """The context embedded with a chunk, e.g. 'Chính sách nghỉ phép > 2. Phạm vi'."""
    return " > ".join(heading_path)


def embedding_text(text: str, heading_path: list[str]) -> str:
    """What the embedding model reads for a chunk (the budget is counted on this)."""
    line = heading_line(heading_path)
    return f"{line}\n{text}" if line else text


def render_content(sections: list[Section]) -> tuple[str, list[tuple[Section, int]]]:
    """One text for the document, and where each section's body starts in it."""
    parts: list[str] = []
    placed: list[tuple[Section, int]] = []
    offset = 0
    last_path: list[str] = []
    for section in sections:
        block = ""
        if section.heading_path and section.heading_path != last_path:
            block = section.heading_path[-1] + "\n"
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(block)
        offset += len(block)
        placed.append((section, offset))
        parts.append(section.text)
        offset += len(section.text)
        last_path = section.heading_path
    return "".join(parts), placed


@dataclass
class _Unit:
    start: int  # offsets relative to the section body
    end: int
    tokens: int


def _spans(pattern: re.Pattern, text: str, base: int) -> list[tuple[int, int]]:
    """Split text[...] into spans separated by `pattern` matches (separators dropped)."""
    spans, pos = [], 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            spans.append((base + pos, base + match.start()))
        pos = match.end()
    if pos < len(text):
        spans.append((base + pos, base + len(text)))
    return spans


def _word_runs(body: str, start: int, end: int, count: CountTokens, budget: int) -> list[_Unit]:
    """Cut an over-long sentence into runs of whole words that fit the budget."""
    words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(body[start:end])]

    counted: dict[int, int] = {}  # j → tokens of words[i:j] for the current i

    def fits(i: int, j: int) -> bool:  # words[i:j] within the budget
        counted[j] = count(body[words[i][0]:words[j - 1][1]])
        return counted[j] <= budget

    units: list[_Unit] = []
    i, guess = 0, 1
    while i < len(words):
        # The most words from i that fit. Every word is at least one token, so more
        # than `budget` words never fit: searching further made each probe tokenise
        # the rest of the sentence (quadratic on a text without sentence ends: 444 s
        # for 1 MB, docs/benchmarks.md). Runs of one sentence are alike in length,
        # so the search gallops from the previous run's length (2-4 probes, not 8).
        cap = min(len(words), i + budget)
        lo = i + 1  # words[i:lo] is taken even when one word alone is over budget
        hi = min(cap, i + guess)
        step = 1
        if fits(i, hi):  # gallop up from the guess
            lo = hi
            while lo < cap:
                probe = min(cap, lo + step)
                if not fits(i, probe):
                    hi = probe - 1
                    break
                lo, step = probe, step * 2
            else:
                hi = lo
        else:  # gallop down from the guess
            hi -= 1
            while hi > lo:
                probe = max(lo, hi - step)
                if fits(i, probe):
                    lo = probe
                    break
                hi, step = probe - 1, step * 2
        while lo < hi:  # the largest j in [lo, hi] with fits(i, j)
            mid = (lo + hi + 1) // 2
            if fits(i, mid):
                lo = mid
            else:
                hi = mid - 1
        j = lo
        piece_start, piece_end = words[i][0], words[j - 1][1]
        tokens = counted[j] if j in counted else count(body[piece_start:piece_end])
        units.append(_Unit(piece_start, piece_end, tokens))
        guess, i = j - i, j
        counted.clear()
    return units


def _more_words_than(body: str, start: int, end: int, n: int) -> bool:
    """Whether body[start:end] has more than n words: then it is over an n-token
    budget without being tokenised (tokenising a 10 MB paragraph whole took 2 GB)."""
    for seen, _ in enumerate(_WORD.finditer(body, start, end), start=1):
        if seen > n:
            return True
    return False


def _units(body: str, count: CountTokens, budget: int) -> list[_Unit]:
    units: list[_Unit] = []
    for p_start, p_end in _spans(re.compile(r"\n+"), body, 0):
        if not _more_words_than(body, p_start, p_end, budget):
            tokens = count(body[p_start:p_end])
            if tokens <= budget:
                units.append(_Unit(p_start, p_end, tokens))
                continue
        for s_start, s_end in _spans(_SENTENCE_END, body[p_start:p_end], p_start):
            if not _more_words_than(body, s_start, s_end, budget):
                tokens = count(body[s_start:s_end])
                if tokens <= budget:
                    units.append(_Unit(s_start, s_end, tokens))
                    continue
            units.extend(_word_runs(body, s_start, s_end, count, budget))
    return units


def _carry(body: str, units: list[_Unit], first: int, last: int, overlap: int,
           count: CountTokens) -> int | None:
    """Char offset where the next chunk begins so that it repeats at most
    `overlap` tokens from the end of this one (whole units, else trailing words)."""
    if overlap <= 0:
        return None
    k, carried = last, 0
    while k > first and carried + units[k].tokens <= overlap:
        carried += units[k].tokens
        k -= 1
    if k < last:
        return units[k + 1].start
    unit = units[last]
    words = list(_WORD.finditer(body[unit.start:unit.end]))
    # The longest tail of whole words (not the whole unit) within `overlap` tokens:
    # binary search over where it starts, at most `overlap` words back (a word is at
    # least one token). Only a start whose tail was counted within the limit is kept.
    lo, hi, best = max(1, len(words) - overlap), len(words), None
    while lo < hi:
        mid = (lo + hi) // 2
        begin = unit.start + words[mid].start()
        if count(body[begin:unit.end]) <= overlap:
            best, hi = begin, mid
        else:
            lo = mid + 1
    return best


def fit_heading(path: list[str], count: CountTokens, max_tokens: int) -> tuple[list[str], int]:
    """The heading path embedded with a section's chunks and the tokens of its line,
    shortened when it would leave the text less than a quarter of the budget (a
    path of long headings, a small model): outer headings are dropped first, then
    the last heading's tail words (marked "…"), until the line takes at most half
    the budget. Without this the heading line alone could fill the budget and every
    chunk would exceed it."""
    def line_tokens(p: list[str]) -> int:
        return count(heading_line(p) + "\n") if p else 0

    tokens = line_tokens(path)
    if tokens <= max_tokens * 3 // 4:
        return list(path), tokens
    half = max_tokens // 2
    path = list(path)
    while len(path) > 1 and line_tokens(path) > half:
        path.pop(0)
    words = path[-1].split()
    while len(words) > 1 and count(" ".join(words) + " …\n") > half:
        words.pop()
    if words != path[-1].split():
        path[-1] = " ".join(words) + " …"
    return path, line_tokens(path)


class TooManyChunks(Exception):
    """The document needs more chunks than one document may have; the message is shown to people."""

    def __init__(self, limit: int, estimate: int | None = None):
        self.limit, self.estimate = limit, estimate
        if estimate is not None:
            need = _("it would need about %(n)s passages") % {"n": f"{estimate:,}"}
        else:
            need = _("it needs more than %(n)s passages") % {"n": f"{limit:,}"}
        super().__init__(_("The document is too long to index: %(need)s, over the limit of %(limit)s per "
                           "document (PORTAL_INGEST_MAX_CHUNKS). Split it into smaller documents, or ask an "
                           "administrator to raise the limit.") % {"need": need, "limit": f"{limit:,}"})


ESTIMATE_WINDOWS, ESTIMATE_WINDOW_CHARS = 16, 2000
ESTIMATE_MARGIN = 1.25  # fail on the estimate only when clearly over: sampling is not exact


def estimate_chunks(sections: list[Section], count: CountTokens, max_tokens: int) -> int:
    """About how many chunks the sections make, from their length and the tokens per
    character of a few windows spread over the text (milliseconds, where chunking a
    10 MB text takes a minute): every token of the text lands in a chunk of at most
    `max_tokens` tokens, so this is about the fewest chunks it can need."""
    text = "\n".join(s.text for s in sections)
    if not text:
        return 0
    step = max(len(text) // ESTIMATE_WINDOWS, 1)
    windows = [text[i:i + ESTIMATE_WINDOW_CHARS] for i in range(0, len(text), step)][:ESTIMATE_WINDOWS]
    sampled = sum(len(w) for w in windows)
    tokens_per_char = sum(count(w) for w in windows) / max(sampled, 1)
    return int(len(text) * tokens_per_char / max_tokens)


def chunk_sections(sections: list[Section], count: CountTokens, *, max_tokens: int,
                   overlap: int, max_chunks: int | None = None) -> tuple[str, list[ChunkDraft]]:
    """Chunk a document: returns (content, chunks). See the module docstring.

    With `max_chunks`, a document that needs more raises TooManyChunks: at once
    when the estimate is clearly over, else as soon as the chunk past the limit
    is made (never chunking and embedding a huge text to the end)."""
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than the chunk budget")
    if max_chunks is not None:
        estimate = estimate_chunks(sections, count, max_tokens)
        if estimate > max_chunks * ESTIMATE_MARGIN:
            raise TooManyChunks(max_chunks, estimate)
    content, placed = render_content(sections)
    drafts: list[ChunkDraft] = []
    for section, base in placed:
        body = section.text
        path, heading_tokens = fit_heading(section.heading_path, count, max_tokens)
        budget = max(8, max_tokens - heading_tokens)
        units = _units(body, count, budget)
        pos, carry_begin = 0, None
        while pos < len(units):
            carry_tokens = count(body[carry_begin:units[pos].start]) if carry_begin is not None else 0
            if carry_tokens + units[pos].tokens > budget:
                carry_begin, carry_tokens = None, 0
            begin = units[pos].start if carry_begin is None else carry_begin
            total, last = carry_tokens + units[pos].tokens, pos
            while last + 1 < len(units) and total + units[last + 1].tokens <= budget:
                last += 1
                total += units[last].tokens
            text = body[begin:units[last].end]
            exact = count(embedding_text(text, path))
            while exact > max_tokens and (last > pos or begin != units[pos].start):
                # token counts are not quite additive: give back a unit, then the carry
                if last > pos:
                    last -= 1
                else:
                    begin = units[pos].start
                text = body[begin:units[last].end]
                exact = count(embedding_text(text, path))
            drafts.append(ChunkDraft(text=text, heading_path=list(path), char_start=base + begin,
                                     char_end=base + units[last].end, token_count=exact))
            if max_chunks is not None and len(drafts) > max_chunks:
                raise TooManyChunks(max_chunks)
            carry_begin = _carry(body, units, pos, last, overlap, count)
            pos = last + 1
    return content, drafts
