"""Keywords for a chunk.

Vietnamese words are mostly one or two syllables written with spaces between
syllables ("nghỉ phép", "an toàn thông tin"), so keywords are syllable n-grams
(1–3) that neither start nor end with a function word, scored by frequency,
length and (when given) rarity across the document's chunks. Acronyms and
product names written as in the text (VPN, SSO, AWS S3, Power BI) are kept as
written, since users search for them exactly like that.
"""
from __future__ import annotations

import math
import re
from collections import Counter

# Function words and very common words of internal documents (vi + en).
STOPWORDS = frozenset("""
và của các những là có được cho với trong theo để khi này đó tại từ về một các không đã sẽ đang
bị do nên thì mà như hoặc hay nếu vào ra lên trên dưới sau trước giữa bằng mỗi mọi cả cũng rất
nhiều ít hơn nhất phải cần có_thể việc người ngày năm tháng số lần điều khoản mục phần
đến đây ở vì nhưng tuy vẫn còn chỉ đều được_phép cùng qua đối với thể phải các_bộ nào gì ai
the a an of to in and or for on with by is are be as at from this that it its not no all any
each which will shall may must can if then than into per
""".split())

_TOKEN = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*", re.UNICODE)


def syllables(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _is_acronym(token: str) -> bool:
    letters = [c for c in token if c.isalpha()]
    return len(token) >= 2 and bool(letters) and sum(c.isupper() for c in letters) >= 2


def candidates(text: str, max_n: int = 3) -> Counter:
    counts: Counter = Counter()
    for line in re.split(r"[\n.;:!?()\[\]\"“”]+", text):
        tokens = syllables(line)
        lowered = [t.lower() for t in tokens]
        for i, tok in enumerate(tokens):
            if _is_acronym(tok):
                counts[tok] += 2
            for n in range(1, max_n + 1):
                gram = lowered[i:i + n]
                if len(gram) < n or gram[0] in STOPWORDS or gram[-1] in STOPWORDS:
                    continue
                if any(g.isdigit() for g in gram) or (n == 1 and len(gram[0]) < 3):
                    continue
                counts[" ".join(gram)] += 1
    return counts


def extract_keywords(text: str, *, limit: int = 8, document_frequency: Counter | None = None,
                     n_chunks: int = 1) -> list[str]:
    """Top keywords of one chunk. With `document_frequency` (how many of the
    document's `n_chunks` chunks contain each candidate) terms specific to this
    chunk rank above terms every chunk repeats."""
    scored = []
    for term, tf in candidates(text).items():
        n = term.count(" ") + 1
        idf = 1.0
        if document_frequency is not None:
            idf = math.log(1 + n_chunks / (1 + document_frequency.get(term, 0)))
        score = (1 + math.log(tf)) * (1 + 0.6 * (n - 1)) * idf
        scored.append((score, term))
    scored.sort(key=lambda st: (-st[0], st[1]))
    chosen: list[str] = []
    for _, term in scored:
        # skip a term contained in a longer one already chosen (or vice versa keep the longer)
        if any(term in c.lower() for c in chosen):
            continue
        chosen = [c for c in chosen if c.lower() not in term.lower()] + [term]
        if len(chosen) >= limit:
            break
    return chosen


def keywords_for_chunks(texts: list[str], limit: int = 8) -> list[list[str]]:
    df: Counter = Counter()
    for text in texts:
        df.update(set(candidates(text)))
    return [extract_keywords(t, limit=limit, document_frequency=df, n_chunks=len(texts)) for t in texts]
