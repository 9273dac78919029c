"""Calibrating a space's relevance floors (search.services.relevance) on an
evaluation set, so a search can say "nothing found".

Two samples are compared for each side:
- **answers**: for every evaluation query, how its relevant chunks score
  (vector: cosine similarity of the query to each relevant chunk; keyword:
  the phrase-aware coverage of the query by each relevant chunk);
- **probes**: queries no internal document answers — letter soup and everyday
  topics far from any company's documents (recipes, football, weather, lottery,
  song lyrics) — and the best score any chunk reaches for them.

A floor keeps the answers: at most `ANSWER_LOSS` (2%) of them may fall below
it. Within that it turns away as many probes as it can — it sits at the
answers' 2% quantile, not halfway down to the probes: off-topic questions a
company's users really type share more words with its documents than the
probes do (on the sample corpus, held-out ones reached a keyword coverage of
0.33 where the probes' 95% quantile was 0.30). The record says how many probes
still get results. The keyword floor is capped at `KEYWORD_FLOOR_CAP` (a hit
matching half of the query's weight phrase by phrase is a match, even if the
set's own answers all match more).

The **semantic-only floor** (hybrid: a passage found by meaning alone, with no
keyword hit above the keyword floor) compares with the **near misses**: for
each question, the nearest passage that is not its answer (of another document,
for document-level questions) — another procedure, another policy, which a
small model scores as close as the answer. It sits above what the near misses
reach for 95% of the questions (and never below the similarity floor); the
record says how many answers hybrid search still admits.
"""
from __future__ import annotations

import math
import random
from typing import Callable

import numpy as np
from django.db import connection
from django.utils import timezone

from search.models import EmbeddingSpace
from search.services import encoders, keyword_engine
from search.services.embedding import vector_literal
from search.services.filters import SearchScope
from search.services.relevance import GAP_RANK, keyword_coverage, vector_gap
from search.services.retrieval import vector_candidates

ANSWER_LOSS = 0.02
PROBE_REJECTION = 0.95
KEYWORD_FLOOR_CAP = 0.5

OFF_TOPIC = [
    "công thức nấu phở bò", "cách làm bánh flan", "lịch thi đấu bóng đá ngoại hạng Anh",
    "kết quả xổ số miền Bắc hôm nay", "dự báo thời tiết Hà Nội cuối tuần", "lời bài hát Nối vòng tay lớn",
    "phim hoạt hình cho trẻ em", "tử vi tuổi Tý năm nay", "cách nuôi mèo con", "mẹo chơi game liên quân",
    "giá vàng SJC hôm nay", "địa điểm du lịch Đà Lạt", "cách trồng hoa hồng trong chậu", "truyện cổ tích Tấm Cám",
    "how to bake sourdough bread", "premier league fixtures this weekend", "best pizza recipe",
    "lyrics of a famous love song", "horoscope for Leo", "how to train a puppy",
]
_LETTERS = "abcdeghiklmnopqrstuvxyzwfj"


def probe_queries(n_nonsense: int = 20, seed: int = 7) -> list[str]:
    """Off-topic queries and seeded letter soup ("zqxv kwpt")."""
    rng = random.Random(seed)
    soup = [" ".join("".join(rng.choice(_LETTERS) for _ in range(rng.randint(4, 8)))
                     for _ in range(rng.randint(1, 3))) for _ in range(n_nonsense)]
    return OFF_TOPIC + soup


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values), q)) if values else None


def choose_floor(answers: list[float], probes: list[float], *, cap: float | None = None) -> dict:
    """The highest floor that keeps 98% of the answers (module docstring): an
    answer's own score, rounded down; a set of under 50 answers loses none."""
    if not answers:
        return {"floor": None, "reason": "no answers to keep"}
    keep = sorted(answers)[math.floor(ANSWER_LOSS * len(answers) + 1e-9)]  # at most 2% of them lie below
    reject = _quantile(probes, PROBE_REJECTION) if probes else None
    floor = keep
    if cap is not None:
        floor = min(floor, cap)
    floor = math.floor(floor * 10_000) / 10_000
    return {"floor": floor, "answers": len(answers), "probes": len(probes),
            "answers_kept": round(float(np.mean(np.asarray(answers) >= floor)), 4),
            "probes_turned_away": round(float(np.mean(np.asarray(probes) < floor)), 4) if probes else None,
            "answer_quantile": round(keep, 4), "probe_quantile": round(reject, 4) if reject is not None else None}


def _relevant_chunk_ids(item) -> list[int]:
    from documents.models import Chunk

    if item.relevant_chunks:
        return list(item.relevant_chunks)
    return list(Chunk.objects.filter(document__code__in=item.relevant_documents).values_list("pk", flat=True))


def _similarities(space: EmbeddingSpace, query: str, chunk_ids: list[int]) -> list[float]:
    dim = int(space.dimension)
    qvec = vector_literal(encoders.encode_query(space, query))
    with connection.cursor() as cur:
        # a chunk's similarity is its best window's (as search ranks it: retrieval.vector_candidates)
        cur.execute(f"SELECT max(1 - (embedding::vector({dim}) <=> %s::vector({dim}))) FROM search_chunkembedding "
                    f"WHERE space_id = %s AND chunk_id = ANY(%s) GROUP BY chunk_id", [qvec, space.pk, chunk_ids])
        return [float(s) for (s,) in cur.fetchall()]


def _usable(evaluation_set) -> list:
    return [i for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]


def answer_scores(evaluation_set, space: EmbeddingSpace, progress: Callable | None = None) -> list[tuple]:
    """Per usable item, (similarity, coverage) of its best relevant chunk: the
    scores that decide whether the item's answer is still a result."""
    items = _usable(evaluation_set)
    out = []
    for n, item in enumerate(items, start=1):
        ids = _relevant_chunk_ids(item)
        sims = _similarities(space, item.query, ids) if ids else []
        covered = keyword_coverage(item.query, ids) if ids else {}
        out.append((max(sims) if sims else None, max(covered.values()) if covered else None))
        if progress:
            progress(n, len(items))
    return out


def near_miss_similarities(evaluation_set, space: EmbeddingSpace, scope: SearchScope, depth: int = 30) -> list:
    """Per usable item, the similarity of the nearest chunk that is NOT relevant
    to it (for document-level items: of another document): how close a wrong
    passage on the same subject comes."""
    from documents.models import Chunk

    out = []
    for item in _usable(evaluation_set):
        nearest = vector_candidates(space, item.query, scope, depth)
        if item.relevant_chunks:
            wrong = [s for c, s in nearest if c not in set(item.relevant_chunks)]
        else:
            code_of = dict(Chunk.objects.filter(pk__in=[c for c, _ in nearest]).values_list("pk", "document__code"))
            wrong = [s for c, s in nearest if code_of.get(c) not in set(item.relevant_documents)]
        if wrong:
            out.append(wrong[0])
    return out


def probe_scores(space: EmbeddingSpace, scope: SearchScope, probes: list[str]) -> tuple[list, list, list]:
    """(best similarity, best keyword coverage among the top keyword hits, how far
    the best neighbour stands out from the GAP_RANK-th) per probe."""
    sims, covs, gaps = [], [], []
    for probe in probes:
        nearest = vector_candidates(space, probe, scope, GAP_RANK)
        sims.append(nearest[0][1] if nearest else 0.0)
        gaps.append(vector_gap(nearest))
        hits = keyword_engine.keyword_search(probe, scope, limit=20)
        covered = keyword_coverage(probe, [c for c, _ in hits])
        covs.append(max(covered.values(), default=0.0))
    return sims, covs, gaps


def choose_gap_floor(probe_gaps: list[float], query_gaps: list[float], semantic_only_floor) -> dict:
    """The clear-winner gap: above how far ANY probe's best neighbour stands out (an
    off-topic query's neighbours sit in a flat band), so that a query with a clear
    winner is spared the semantic-only floor. Not a 95% quantile as for the other
    floors: held-out off-topic questions reach the probes' upper gaps (on the
    sample corpus 0.0276 against a 95% quantile of 0.0244 and a maximum of 0.0277),
    and this floor alone would let them through. Reports the share of the set's
    questions that have one."""
    if semantic_only_floor is None or not probe_gaps:
        return {"floor": None, "reason": "no semantic-only floor" if semantic_only_floor is None else "no probes"}
    floor = math.ceil((max(probe_gaps) + 1e-6) * 10_000) / 10_000
    return {"floor": floor, "probes": len(probe_gaps),
            "probes_with_clear_winner": round(float(np.mean(np.asarray(probe_gaps) >= floor)), 4),
            "questions_with_clear_winner": round(float(np.mean(np.asarray(query_gaps) >= floor)), 4)
            if query_gaps else None}


def query_gaps(evaluation_set, space: EmbeddingSpace, scope: SearchScope) -> list[float]:
    return [vector_gap(vector_candidates(space, item.query, scope, GAP_RANK)) for item in _usable(evaluation_set)]


def choose_semantic_only(near_misses: list[float], answers: list[tuple], similarity_floor, keyword_floor) -> dict:
    """The bar for a hybrid result found by meaning alone: above what the nearest
    wrong passage reaches for 95% of the questions, and never below the
    similarity floor. Reports how many answers hybrid search still admits (by
    keyword evidence or by that bar)."""
    if not near_misses or similarity_floor is None:
        return {"floor": None, "reason": "no near misses measured" if similarity_floor is not None
                else "no similarity floor"}
    floor = round(max(similarity_floor, float(np.quantile(np.asarray(near_misses), PROBE_REJECTION))), 4)
    admitted = [(sim is not None and sim >= floor) or (cov is not None and keyword_floor is not None
                                                       and cov >= keyword_floor)
                for sim, cov in answers]
    return {"floor": floor, "near_misses": len(near_misses),
            "near_miss_quantile": round(float(np.quantile(np.asarray(near_misses), PROBE_REJECTION)), 4),
            "answers_admitted_by_hybrid": round(float(np.mean(admitted)), 4) if admitted else None,
            "answers_by_meaning_alone": round(float(np.mean([s is not None and s >= floor for s, _ in answers])), 4)}


def calibrate_floors(evaluation_set, space: EmbeddingSpace, *, user=None, save: bool = True,
                     progress: Callable | None = None) -> dict:
    """Measure, choose and (unless save=False) store the floors on the space;
    returns the record (kept in `space.calibration["floors"]`)."""
    from search.evaluation.runner import evaluation_scope

    scope = evaluation_scope(user)
    answers = answer_scores(evaluation_set, space, progress)
    probe_sims, probe_covs, probe_gaps = probe_scores(space, scope, probe_queries())
    vector = choose_floor([s for s, _ in answers if s is not None], probe_sims)
    keyword = choose_floor([c for _, c in answers if c is not None], probe_covs, cap=KEYWORD_FLOOR_CAP)
    record = {
        "set": evaluation_set.name, "calibrated_at": timezone.now().isoformat(), "source": "this portal",
        "vector": vector, "keyword": keyword,
        "semantic_only": choose_semantic_only(near_miss_similarities(evaluation_set, space, scope), answers,
                                              vector["floor"], keyword["floor"]),
    }
    record["vector_gap"] = choose_gap_floor(probe_gaps, query_gaps(evaluation_set, space, scope),
                                            record["semantic_only"]["floor"])
    if save:
        calibration = dict(space.calibration or {}, floors=record)
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            similarity_floor=vector["floor"], keyword_floor=keyword["floor"],
            semantic_only_floor=record["semantic_only"]["floor"], vector_gap_floor=record["vector_gap"]["floor"],
            calibration=calibration)
        space.refresh_from_db()
    return record


def floors_table(record: dict) -> str:
    lines = [f"relevance floors calibrated on {record['set']}"]
    for side, label in (("vector", "similarity floor"), ("keyword", "keyword floor (coverage)")):
        r = record[side]
        if r.get("floor") is None:
            lines.append(f"  {label}: none ({r.get('reason')})")
            continue
        lines.append(f"  {label}: {r['floor']:.4f} — keeps {r['answers_kept']:.1%} of {r['answers']} answers, "
                     f"turns away {r['probes_turned_away']:.1%} of {r['probes']} probes "
                     f"(answers' 2% quantile {r['answer_quantile']}, probes' 95% quantile {r['probe_quantile']})")
    so = record.get("semantic_only") or {}
    if so.get("floor") is not None:
        lines.append(f"  semantic-only floor (hybrid, no keyword evidence): {so['floor']:.4f} — above the nearest wrong "
                     f"passage for 95% of {so['near_misses']} questions; hybrid still admits "
                     f"{so['answers_admitted_by_hybrid']:.1%} of the answers")
    gap = record.get("vector_gap") or {}
    if gap.get("floor") is not None:
        lines.append(f"  clear-winner gap (lifts the semantic-only floor): {gap['floor']:.4f} — above 95% of "
                     f"{gap['probes']} probes; {gap['questions_with_clear_winner']:.1%} of the questions have one")
    return "\n".join(lines)
