"""Keyword search quality and latency on UIT-ViCoV19QA (research use only; read
from ../shared, never copied into the repository).

    .venv/bin/python bench/keyword_vicov19qa.py [--grid] [--database bench_keyword]

Corpus = every unique answer of train+val+test, one ready public Document with
one Chunk each, in a scratch database on the embedded server (created and
migrated here; its documents are replaced on every run). Queries = the test
questions; relevant = the question's answer. Indexed with keyword_index.rebuild(),
searched with keyword_search() under the anonymous user's access rule.
Reference: BM25Okapi as in rank_bm25 (k1 1.5, b 0.75, idf floor 0.25·mean idf),
re-implemented in numpy, over lower-cased whitespace syllables and, stronger,
over punctuation-free syllables (\w+). The gate: ours ≥ 0.95 × reference MRR@10.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parents[2] / "shared/datasets/vicov19qa"
sys.path.insert(0, str(ROOT))

import _record  # noqa: E402  (bench/, the script's folder, is on sys.path)


def load() -> tuple[list[str], list[tuple[str, int]]]:
    """(every unique answer, [(test question, its answer's index)]), read with the
    portal's one loader (search.evaluation.corpus)."""
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([DATA])
    return data.passages, [(q, relevant[0]) for q, relevant in data.questions("test")]


class BM25Okapi:
    """rank_bm25.BM25Okapi, same formulas, numpy."""

    def __init__(self, corpus: list[list[str]], k1=1.5, b=0.75, epsilon=0.25):
        self.k1, self.b = k1, b
        self.lengths = np.array([len(d) for d in corpus], dtype=float)
        self.avgdl = self.lengths.mean()
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        tmp: dict[str, list] = {}
        for i, doc in enumerate(corpus):
            for w, tf in Counter(doc).items():
                tmp.setdefault(w, []).append((i, tf))
        n = len(corpus)
        self.idf = {}
        for w, post in tmp.items():
            self.postings[w] = (np.array([p[0] for p in post]), np.array([p[1] for p in post], dtype=float))
            self.idf[w] = math.log(n - len(post) + 0.5) - math.log(len(post) + 0.5)
        eps = epsilon * (sum(self.idf.values()) / len(self.idf))
        self.idf = {w: (eps if v < 0 else v) for w, v in self.idf.items()}
        self.n = n

    def scores(self, query: list[str]) -> np.ndarray:
        out = np.zeros(self.n)
        for q in query:
            if q not in self.postings:
                continue
            docs, tf = self.postings[q]
            dl = self.lengths[docs]
            out[docs] += self.idf[q] * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * dl / self.avgdl))
        return out


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {"MRR@10": sum(1 / r for r in ranks if r and r <= 10) / n,
            "Hit@1": sum(1 for r in ranks if r == 1) / n,
            "Hit@10": sum(1 for r in ranks if r and r <= 10) / n}


def fmt(m: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in m.items())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def setup_database(name: str):
    os.environ["PORTAL_DATABASE_NAME"] = name
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
    import django
    from django.conf import settings

    django.setup()
    from portal import embedded

    embedded.start_configured(settings)  # settings start nothing; a benchmark is an entry point
    with embedded._connect(Path(settings.DATABASES["default"]["HOST"])) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_corpus(answers: list[str]) -> dict[int, int]:
    """Replace the scratch database's documents; return chunk id → answer index."""
    from django.db import connection

    from documents.models import Chunk, Document

    with connection.cursor() as cur:
        cur.execute("TRUNCATE documents_document, search_keywordterm, search_keywordstats CASCADE")
    docs = Document.objects.bulk_create([
        Document(code=f"VICOV_{i}", title=f"vicov19qa answer {i}", access_level=0, status="ready",
                 source_file=f"bench/vicov_{i}.txt", original_filename=f"vicov_{i}.txt", file_size=len(a),
                 checksum=hashlib.sha256(a.encode()).hexdigest(), content=a)
        for i, a in enumerate(answers)], batch_size=1000)
    chunks = Chunk.objects.bulk_create([
        Chunk(document=d, ordinal=0, text=a, token_count=len(a.split()), heading_path=[], char_start=0,
              char_end=len(a)) for d, a in zip(docs, answers)], batch_size=1000)
    return {c.pk: i for i, c in enumerate(chunks)}


def run_ours(queries, chunk_answer, sql, params, exact=None) -> tuple[list, list[float]]:
    from search.services.keyword_index import keyword_search

    ranks, times = [], []
    for question, rel in queries:
        t = time.perf_counter()
        hits = keyword_search(question, sql, params, limit=10, exact=exact)
        times.append(time.perf_counter() - t)
        found = [chunk_answer[c] for c, _ in hits]
        ranks.append(found.index(rel) + 1 if rel in found else None)
    return ranks, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="bench_keyword")
    parser.add_argument("--grid", action="store_true", help="also try query-weight settings")
    args = parser.parse_args()
    run = _record.start()

    answers, queries = load()
    print(f"corpus {len(answers)} unique answers, {len(queries)} test questions ({DATA})")

    ref = BM25Okapi([a.lower().split() for a in answers])
    ref_ranks = []
    for question, rel in queries:
        s = ref.scores(question.lower().split())
        order = np.argsort(-s, kind="stable")[:10]
        ref_ranks.append(int(np.where(order == rel)[0][0]) + 1 if rel in order else None)
    ref_m = metrics(ref_ranks)
    words = re.compile(r"\w+")  # the same BM25Okapi over punctuation-free syllables (a stronger reference)
    ref2 = BM25Okapi([words.findall(a.lower()) for a in answers])
    ref2_ranks = []
    for question, rel in queries:
        order = np.argsort(-ref2.scores(words.findall(question.lower())), kind="stable")[:10]
        ref2_ranks.append(int(np.where(order == rel)[0][0]) + 1 if rel in order else None)
    ref2_m = metrics(ref2_ranks)

    setup_database(args.database)
    from django.contrib.auth.models import AnonymousUser

    from documents.models import Document
    from documents.selectors import visible_documents
    from search.services import keyword_index as ki
    from documents.services.text import fold

    chunk_answer = build_corpus(answers)
    t = time.perf_counter()
    written = ki.rebuild()
    print(f"rebuild: {written} postings in {time.perf_counter() - t:.1f}s")
    sql, params = visible_documents(AnonymousUser(), Document.objects.filter(status="ready")) \
        .order_by().values("id").query.sql_with_params()
    params = list(params)

    run_ours(queries[:20], chunk_answer, sql, params)  # warm up
    ranks, times = run_ours(queries, chunk_answer, sql, params)
    ours = metrics(ranks)
    folded = [(fold(q), rel) for q, rel in queries]
    f_ranks, f_times = run_ours(folded, chunk_answer, sql, params)
    two_ranks, two_times = run_ours(queries, chunk_answer, sql, params, exact=False)
    ex_ranks, ex_times = run_ours(queries, chunk_answer, sql, params, exact=True)
    print(f"reference BM25Okapi      {fmt(ref_m)}   (whitespace syllables, as rank_bm25 is usually fed)")
    print(f"reference, \\w+ syllables {fmt(ref2_m)}")
    print(f"ours (questions)         {fmt(ours)}   ratio {ours['MRR@10'] / ref_m['MRR@10']:.3f} / "
          f"{ours['MRR@10'] / ref2_m['MRR@10']:.3f}  "
          f"p50 {pct(times, 50):.1f} ms  p95 {pct(times, 95):.1f} ms")
    print(f"ours, forced two-phase   {fmt(metrics(two_ranks))}   p50 {pct(two_times, 50):.1f} ms  "
          f"p95 {pct(two_times, 95):.1f} ms")
    print(f"ours, forced exact       {fmt(metrics(ex_ranks))}   p50 {pct(ex_times, 50):.1f} ms  "
          f"p95 {pct(ex_times, 95):.1f} ms")
    print(f"ours, accent-less input  {fmt(metrics(f_ranks))}   p50 {pct(f_times, 50):.1f} ms  "
          f"p95 {pct(f_times, 95):.1f} ms")

    rng = random.Random(13)
    short = []
    for q, _ in queries:
        toks = q.split()
        n = rng.choice((2, 3))
        if len(toks) >= n:
            i = rng.randrange(len(toks) - n + 1)
            short.append(" ".join(toks[i:i + n]))
    lat = []
    for q in short:
        t = time.perf_counter()
        ki.keyword_search(q, sql, params, limit=10)
        lat.append(time.perf_counter() - t)
    print(f"short 2–3 word queries ({len(short)}): p50 {pct(lat, 50):.1f} ms  p95 {pct(lat, 95):.1f} ms")
    short_latency = {"count": len(short), "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1)}
    lat, samples = [], []
    for q in short[:100]:
        t = time.perf_counter()
        s = ki.suggest(fold(q), sql, params)
        lat.append(time.perf_counter() - t)
        samples.append((fold(q), s, q))
    ok = sum(1 for _, s, q in samples if s and s.lower() == q.lower())
    print(f"suggest() on 100 folded short queries: exact original recovered {ok}/100, "
          f"p50 {pct(lat, 50):.1f} ms  p95 {pct(lat, 95):.1f} ms")
    for f, s, q in samples[:5]:
        print(f"   {f!r} → {s!r}   (original {q!r})")
    result = {
        "corpus_answers": len(answers), "test_questions": len(queries), "database": args.database,
        "reference_bm25okapi_whitespace": ref_m, "reference_bm25okapi_words": ref2_m,
        "ours": {**ours, "p50_ms": round(pct(times, 50), 1), "p95_ms": round(pct(times, 95), 1)},
        "ours_forced_two_phase": {**metrics(two_ranks), "p50_ms": round(pct(two_times, 50), 1),
                                  "p95_ms": round(pct(two_times, 95), 1)},
        "ours_forced_exact": {**metrics(ex_ranks), "p50_ms": round(pct(ex_times, 50), 1),
                              "p95_ms": round(pct(ex_times, 95), 1)},
        "ours_accentless_input": {**metrics(f_ranks), "p50_ms": round(pct(f_times, 50), 1),
                                  "p95_ms": round(pct(f_times, 95), 1)},
        "short_queries": short_latency,
        "suggest": {"recovered_of_100": ok, "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1)},
    }

    if args.grid:
        saved = (ki.EXACT_WEIGHT, ki.FOLD_WEIGHT, ki.ACCENTLESS_EXACT_WEIGHT, ki.ACCENTLESS_FOLD_WEIGHT)
        for fw in (0.0, 0.15, 0.3, 0.5, 0.7, 1.0):
            ki.EXACT_WEIGHT, ki.FOLD_WEIGHT = 1.0, fw
            print(f"  grid accented: exact 1.0 fold {fw:.2f}: {fmt(metrics(run_ours(queries, chunk_answer, sql, params)[0]))}")
        ki.EXACT_WEIGHT, ki.FOLD_WEIGHT = saved[:2]
        for ew in (0.0, 0.3, 0.5, 1.0):
            ki.ACCENTLESS_EXACT_WEIGHT, ki.ACCENTLESS_FOLD_WEIGHT = ew, 1.0
            print(f"  grid accent-less: exact {ew:.2f} fold 1.0: "
                  f"{fmt(metrics(run_ours(folded, chunk_answer, sql, params)[0]))}")
        ki.ACCENTLESS_EXACT_WEIGHT, ki.ACCENTLESS_FOLD_WEIGHT = saved[2:]
    _record.save("keyword-vicov19qa", result, run)


if __name__ == "__main__":
    main()
