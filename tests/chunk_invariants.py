"""What every chunking must satisfy, checked by the property tests over random
documents (tests/test_chunking_properties.py) and over the 32 samples
(tests/test_samples.py)."""
from __future__ import annotations

import re

from documents.services.chunking import embedding_text, heading_line, render_content

WORD = re.compile(r"\S+")


def check_chunks(sections, content, chunks, count, *, max_tokens: int, overlap: int) -> None:
    """Raise AssertionError naming the first invariant that does not hold:

    1. content is the sections laid out by render_content;
    2. each chunk is an exact slice of the content at its offsets;
    3. each lies inside one section's body and carries that section's heading path
       (shortened only when the full line would leave the text under a quarter of
       the budget) — it never crosses a heading — and chunks come in document order;
    4. each is within the token budget (what the model reads: heading line + text),
       its token count exact; only a single word longer than the budget may exceed it;
    5. consecutive chunks of a section overlap by at most `overlap` tokens (none when 0);
    6. every word of every section body is inside some chunk (nothing dropped).
    """
    expected, placed = render_content(sections)
    assert content == expected, "content is not the rendered sections"
    bodies = [(base, base + len(section.text), section.heading_path) for section, base in placed]
    previous = None
    for i, chunk in enumerate(chunks):
        assert content[chunk.char_start:chunk.char_end] == chunk.text, f"chunk {i} is not the slice at its offsets"
        assert chunk.text and chunk.text == chunk.text.strip(), f"chunk {i} is empty or has loose whitespace"
        owner = [b for b in bodies if b[0] <= chunk.char_start and chunk.char_end <= b[1]]
        assert owner, f"chunk {i} crosses a heading (or leaves its section)"
        full = owner[0][2]
        if chunk.heading_path != full:  # shortened only when the full line leaves the text under a quarter
            assert count(heading_line(full) + "\n") > max_tokens * 3 // 4, f"chunk {i}: wrong heading path"
            assert count(heading_line(chunk.heading_path) + "\n") <= max(max_tokens // 2, 8) or \
                len(chunk.heading_path) == 1 and len(chunk.heading_path[0].split()) <= 2, \
                f"chunk {i}: heading line not shortened enough"
        assert chunk.token_count == count(embedding_text(chunk.text, chunk.heading_path)), \
            f"chunk {i}: token count is not exact"
        assert chunk.token_count <= max_tokens or len(WORD.findall(chunk.text)) == 1, \
            f"chunk {i}: {chunk.token_count} tokens over the budget of {max_tokens}"
        if previous is not None:
            assert chunk.char_start > previous.char_start, f"chunk {i} is out of order"
            if chunk.char_start < previous.char_end:
                assert owner[0][0] <= previous.char_start, f"chunk {i} overlaps a chunk of another section"
                shared = content[chunk.char_start:previous.char_end]
                assert overlap > 0, f"chunk {i} overlaps its predecessor although overlap is 0"
                assert count(shared) <= overlap, f"chunk {i}: overlap of {count(shared)} tokens > {overlap}"
        previous = chunk
    covered = sorted((c.char_start, c.char_end) for c in chunks)
    for base, end, _ in bodies:
        for match in WORD.finditer(content, base, end):
            start, stop = match.span()
            assert any(s <= start and stop <= e for s, e in covered), \
                f"word {match.group()!r} at {start} is in no chunk"
