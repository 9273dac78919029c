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

from documents.services.text import WORD_RUN, nfc

# Function words and very common words of internal documents (vi + en).
STOPWORDS = frozenset("""
và của các những là có được cho với trong theo để khi này đó tại từ về một các không đã sẽ đang
bị do nên thì mà như hoặc hay nếu vào ra lên trên dưới sau trước giữa bằng mỗi mọi cả cũng rất
nhiều ít hơn nhất phải cần có_thể việc người ngày năm tháng số lần điều khoản mục phần
đến đây ở vì nhưng tuy vẫn còn chỉ đều được_phép cùng qua đối với thể phải các_bộ nào gì ai
the a an of to in and or for on with by is are be as at from this that it its not no all any
each which will shall may must can if then than into per
""".split())

def syllables(text: str) -> list[str]:
    return WORD_RUN.findall(nfc(text))


def _is_acronym(token: str) -> bool:
    letters = [c for c in token if c.isalpha()]
    return len(token) >= 2 and bool(letters) and sum(c.isupper() for c in letters) >= 2


def candidates(text: str, max_n: int = 4) -> Counter:
    """Syllable n-grams (lower-cased) and acronyms (as written) with their counts."""
    counts: Counter = Counter()
    for line in re.split(r"[\n.;:!?()\[\]\"“”|,]+", text):
        tokens = syllables(line)
        lowered = [t.lower() for t in tokens]
        for i, tok in enumerate(tokens):
            if _is_acronym(tok):
                counts[tok] += 1
            for n in range(1, max_n + 1):
                gram = lowered[i:i + n]
                if len(gram) < n or gram[0] in STOPWORDS or gram[-1] in STOPWORDS:
                    continue
                if any(any(ch.isdigit() for ch in g) for g in gram) or (n == 1 and len(gram[0]) < 3):
                    continue
                counts[" ".join(gram)] += 1
    return counts


def _is_phrase(term: str, doc_counts: Counter) -> bool:
    """Multi-syllable candidates must recur in the document: a repeated n-gram is
    most likely a word or a term ("nghỉ phép", "an toàn thông tin"), a one-off
    n-gram most likely straddles two words."""
    n = term.count(" ") + 1
    return n == 1 or doc_counts[term] >= (2 if n == 2 else 3)


def keywords_for_chunks(texts: list[str], limit: int = 8) -> list[list[str]]:
    """Keywords of each chunk of one document: recurring terms, weighted by how
    specific they are to the chunk, longer terms preferred over their parts."""
    per_chunk = [candidates(t) for t in texts]
    doc_counts: Counter = Counter()
    df: Counter = Counter()
    for counts in per_chunk:
        doc_counts.update(counts)
        df.update(counts.keys())
    n_chunks = max(1, len(texts))
    # An n-gram that only ever occurs inside one longer n-gram is a fragment of it
    # ("bảo hiểm xã" of "bảo hiểm xã hội"): keep the longer one only.
    fragments = set()
    for gram, count in doc_counts.items():
        parts = gram.split(" ")
        if len(parts) > 1:
            for sub in (" ".join(parts[:-1]), " ".join(parts[1:])):
                if doc_counts.get(sub) == count:
                    fragments.add(sub)
    result = []
    for counts in per_chunk:
        scored = []
        for term, tf in counts.items():
            if term in fragments or not _is_phrase(term, doc_counts):
                continue
            n = term.count(" ") + 1
            if n == 1 and not _is_acronym(term) and len(term) < 4:
                continue
            idf = math.log(1 + n_chunks / df[term])
            bonus = 1.5 if _is_acronym(term) else 1 + 0.5 * (n - 1)
            scored.append(((1 + math.log(tf)) * bonus * idf, term))
        scored.sort(key=lambda st: (-st[0], st[1]))
        chosen: list[str] = []
        for _, term in scored:
            low = term.lower()
            if any(low in c.lower().split(" ") or f" {low} " in f" {c.lower()} " for c in chosen):
                continue  # part of a longer term already chosen
            chosen.append(term)
            if len(chosen) >= limit:
                break
        result.append(chosen)
    return result


def extract_keywords(text: str, limit: int = 8) -> list[str]:
    """Keywords of a single text (no document context)."""
    return keywords_for_chunks([text], limit=limit)[0]
