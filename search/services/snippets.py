"""Snippets with the matched terms highlighted, accent-insensitively: a user
who typed "nghi phep" sees "nghỉ phép" marked."""
from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from documents.services.text import SYLLABLE, fold, fold_same_length


def match_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    folded = fold_same_length(text)
    wanted = {fold(t) for t in terms if t.strip()}
    return [(m.start(), m.end()) for m in SYLLABLE.finditer(folded) if m.group() in wanted]


def make_snippet(text: str, terms: list[str], width: int = 280) -> SafeString:
    spans = match_spans(text, terms)
    start = 0
    if spans and len(text) > width:
        # the window with the most matches
        best = max(range(len(spans)), key=lambda i: sum(1 for s, _ in spans if spans[i][0] <= s < spans[i][0] + width))
        start = max(0, spans[best][0] - width // 5)
        space = text.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 30 else start
    end = min(len(text), start + width)
    out, pos = [], start
    for s, e in spans:
        if s < start or e > end:
            continue
        out.append(escape(text[pos:s]))
        out.append(f"<mark>{escape(text[s:e])}</mark>")
        pos = e
    out.append(escape(text[pos:end]))
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(text) else ""
    return mark_safe(prefix + "".join(out).replace("\n", " ") + suffix)
