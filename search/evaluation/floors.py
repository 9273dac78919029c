"""Calibrating a space's relevance floors (search.services.relevance) on an
evaluation set, so a search can say "nothing found".

Two samples are compared for each side:
- **answers**: for every evaluation query, how its relevant chunks score
  (vector: cosine similarity of the query to each relevant chunk; keyword:
  the phrase-aware coverage of the query by each relevant chunk);
- **probes**: queries no internal document answers — letter soup and everyday
  topics far from any company's documents (recipes, football, weather, lottery,
  song lyrics) — and the best score any chunk reaches for them.

A floor must keep the answers: at most `ANSWER_LOSS` (2%) of them may fall
below it. Within that, it is put midway between the level that turns away 95%
of the probes and the level that keeps 98% of the answers; when the two
overlap, the answers win and the record says how many probes still get
results. The keyword floor is capped at `KEYWORD_FLOOR_CAP` (a hit matching
half of the query's weight phrase by phrase is a match, even if the set's own
answers all match more).
"""
from __future__ import annotations

import random
from typing import Callable

import numpy as np
from django.db import connection
from django.utils import timezone

from search.models import EmbeddingSpace
from search.services import encoders, keyword_index
from search.services.embedding import vector_literal
from search.services.filters import SearchScope, all_documents_scope, search_scope
from search.services.relevance import keyword_coverage
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
    """The floor between the probes' and the answers' scores (module docstring)."""
    keep = _quantile(answers, ANSWER_LOSS)
    if keep is None:
        return {"floor": None, "reason": "no answers to keep"}
    reject = _quantile(probes, PROBE_REJECTION) if probes else None
    floor = (reject + keep) / 2 if reject is not None and reject < keep else keep
    if cap is not None:
        floor = min(floor, cap)
    floor = round(floor, 4)
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
        cur.execute(f"SELECT 1 - (embedding::vector({dim}) <=> %s::vector({dim})) FROM search_chunkembedding "
                    f"WHERE space_id = %s AND chunk_id = ANY(%s)", [qvec, space.pk, chunk_ids])
        return [float(s) for (s,) in cur.fetchall()]


def answer_scores(evaluation_set, space: EmbeddingSpace, progress: Callable | None = None) -> tuple[list, list]:
    """(similarities, coverages) of each usable item's best relevant chunk:
    the score that decides whether the item's answer is still a result."""
    items = [i for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]
    sims, covs = [], []
    for n, item in enumerate(items, start=1):
        ids = _relevant_chunk_ids(item)
        if ids:
            found = _similarities(space, item.query, ids)
            if found:
                sims.append(max(found))
            covered = keyword_coverage(item.query, ids)
            if covered:
                covs.append(max(covered.values()))
        if progress:
            progress(n, len(items))
    return sims, covs


def probe_scores(space: EmbeddingSpace, scope: SearchScope, probes: list[str]) -> tuple[list, list]:
    """(best similarity, best keyword coverage among the top keyword hits) per probe."""
    sims, covs = [], []
    for probe in probes:
        nearest = vector_candidates(space, probe, scope, 1)
        sims.append(nearest[0][1] if nearest else 0.0)
        hits = keyword_index.keyword_search(probe, scope.allowed_sql, scope.params, limit=20)
        covered = keyword_coverage(probe, [c for c, _ in hits])
        covs.append(max(covered.values(), default=0.0))
    return sims, covs


def calibrate_floors(evaluation_set, space: EmbeddingSpace, *, user=None, save: bool = True,
                     progress: Callable | None = None) -> dict:
    """Measure, choose and (unless save=False) store both floors on the space;
    returns the record (kept in `space.calibration["floors"]`)."""
    scope = search_scope(user) if user is not None else all_documents_scope()
    sims, covs = answer_scores(evaluation_set, space, progress)
    probes = probe_queries()
    probe_sims, probe_covs = probe_scores(space, scope, probes)
    record = {
        "set": evaluation_set.name, "calibrated_at": timezone.now().isoformat(), "source": "this portal",
        "vector": choose_floor(sims, probe_sims),
        "keyword": choose_floor(covs, probe_covs, cap=KEYWORD_FLOOR_CAP),
    }
    if save:
        calibration = dict(space.calibration or {}, floors=record)
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            similarity_floor=record["vector"]["floor"], keyword_floor=record["keyword"]["floor"],
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
    return "\n".join(lines)
