"""Token windows: how a space whose model reads fewer tokens than a chunk holds
embeds that chunk whole (docs/decisions.md, "Embedding windows").

Chunks are cut to the active model's budget. A space whose model reads less (a
migration target, an A/B candidate) would have its model truncate every longer
chunk silently, so such a chunk is embedded as several overlapping windows that
each fit the space's model; search keeps the best window of each chunk. One chunk
set serves every space: keyword search, snippets, highlights and "more in this
document" do not depend on the model.
"""
from __future__ import annotations

from documents.services.chunking import embedding_text, fit_heading
from documents.services.tokens import TokenCounter, token_counter

OVERLAP = 32  # tokens shared by neighbouring windows: a sentence cut by one window is whole in the next


def window_spans(text: str, counter: TokenCounter, budget: int, overlap: int = OVERLAP) -> list[tuple[int, int]]:
    """(start, end) character ranges of `text`, each at most `budget` tokens, that
    together cover all of it; neighbours share about `overlap` tokens. Windows end
    and start where a word starts when they can (a word is not cut in two)."""
    budget = max(1, budget)
    if counter.count(text) <= budget:
        return [(0, len(text))]
    spans = counter.token_spans(text)
    n = len(spans)
    # token i starts a word: the first token, or whitespace before it
    starts_word = [i == 0 or spans[i][0] > spans[i - 1][1] or text[spans[i][0] - 1:spans[i][0]].isspace()
                   for i in range(n)]
    overlap = max(0, min(overlap, budget // 4))
    windows: list[tuple[int, int]] = []
    first = 0
    last = 0
    while True:
        # each window ends past the previous one's end (else it would add nothing)
        last = _window_end(text, spans, starts_word, counter, first, budget, floor=last + 1)
        begin = 0 if first == 0 else spans[first][0]
        end = len(text) if last == n else spans[last - 1][1]
        windows.append((begin, end))
        if last == n:
            return windows
        # the next window starts `overlap` tokens back, at a word start, always after this one's start
        nxt = max(first + 1, last - overlap)
        while nxt < last and not starts_word[nxt]:
            nxt += 1
        first = nxt


def _window_end(text, spans, starts_word, counter, first: int, budget: int, floor: int) -> int:
    """One past the last token of the longest window from token `first` that fits
    `budget` (counted again on the text itself: a cut may tokenize differently),
    and ends at token `floor` or later (the overlap is at most a quarter of the
    budget, so that much always fits)."""
    n = len(spans)
    floor = max(floor, first + 1)
    last = max(floor, min(n, first + budget))
    while True:
        if last < n:  # end before a word start when one is in reach
            cut = last
            while cut > floor and not starts_word[cut]:
                cut -= 1
            last = cut if starts_word[cut] else last
        end = len(text) if last == n else spans[last - 1][1]
        if last <= floor or counter.count(text[spans[first][0]:end]) <= budget:
            return last
        last -= 1


def passage_windows(text: str, counter: TokenCounter, budget: int, overlap: int = OVERLAP) -> list[str]:
    """`text` as windows of at most `budget` tokens covering all of it; a text that
    fits is one window equal to it."""
    return [text[a:b] for a, b in window_spans(text, counter, budget, overlap)]


def chunk_windows(space, text: str, heading_path: list[str]) -> list[str]:
    """What the space's model reads of one chunk: its embedding text when it fits
    the model, else windows of its text, each under the chunk's heading line (cut
    to fit the model, as the chunker does)."""
    counter = token_counter(space.model_path)
    room = counter.room()
    whole = embedding_text(text, heading_path)
    if counter.count(whole) <= room:
        return [whole]
    path, heading_tokens = fit_heading(heading_path, counter.count, room)
    return [embedding_text(window, path)
            for window in passage_windows(text, counter, max(8, room - heading_tokens))]


def needs_windows(space, chunk_ids) -> bool:
    """Whether any of these chunks is longer than the space's model reads (a cache of
    one vector per chunk cannot hold its vectors)."""
    from documents.models import Chunk

    counter = token_counter(space.model_path)
    room = counter.room()
    chunks = Chunk.objects.filter(pk__in=list(chunk_ids)).values_list("text", "heading_path")
    return any(counter.count(embedding_text(text, path)) > room for text, path in chunks.iterator())
