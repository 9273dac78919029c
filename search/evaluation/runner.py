"""The evaluation runner: one evaluation set against one space and mode.

Every item is searched through `search.services.results.run_search` (the
portal's own entry point, with the access filter of the evaluating user inside
the SQL, or every ready document when no user is named), its ranking scored at
chunk level (items naming chunks) or document level (items naming documents:
chunks are mapped to their documents, first occurrence kept), and its result
stored per query. Performance: query latency (p50/p95, query encoding
included, measured cold: the query-vector cache is emptied before each run, so
a mode never reuses vectors another mode encoded), encode throughput, model
load time, model and peak process memory.
"""
from __future__ import annotations

import gc
import logging
import resource
import time
from typing import Callable

from django.db import transaction
from django.utils import timezone

from documents.models import Chunk, Document, DocumentStatus
from portal.tasking import is_transient
from search.evaluation import metrics as m
from search.evaluation.models import EvaluationItem, EvaluationQueryResult, EvaluationRun, RunStatus
from search.models import EmbeddingSpace
from search.services import encoders
from search.services.filters import all_documents_scope, search_scope
from search.services.modes import get_mode, needs_space

log = logging.getLogger(__name__)

TOP_STORED = 10
TEXT_HEAD = 240
WARM_UP_QUERY = "warm-up query that no evaluation set asks"
Progress = Callable[[int, int], None]


def evaluation_scope(user):
    """What an evaluation may rank: what `user` may see, or every ready document."""
    return search_scope(user) if user is not None else all_documents_scope()


def check_modes(modes) -> None:
    """Refuse, before any work, a mode that could not run as asked (it would
    silently answer as another mode)."""
    from django.conf import settings

    for mode in modes:
        get_mode(mode)
        if mode == "rerank" and not settings.RERANK_MODEL:
            raise ValueError("mode rerank needs a cross-encoder: set PORTAL_RERANK_MODEL to its folder "
                             "(without one it would only repeat hybrid)")


def relevance(item: EvaluationItem) -> dict:
    """id → grade: chunk ids for chunk-level items, document codes otherwise."""
    ids = item.relevant_chunks or item.relevant_documents
    grades = item.grades or {}
    return {x: float(grades.get(str(x), 1)) for x in ids}


class ChunkInfo:
    """Chunk id → (document code, text head, document title), cached across queries."""

    def __init__(self):
        self._info: dict[int, tuple[str, str, str]] = {}

    def load(self, chunk_ids) -> None:
        missing = [c for c in chunk_ids if c not in self._info]
        for pk, code, text, title in Chunk.objects.filter(pk__in=missing).values_list(
                "pk", "document__code", "text", "document__title"):
            self._info[pk] = (code, " ".join(text.split())[:TEXT_HEAD], title)

    def code(self, chunk_id: int) -> str | None:
        return self._info.get(chunk_id, (None,))[0]

    def text(self, chunk_id: int) -> str:
        return self._info.get(chunk_id, ("", ""))[1]


def ranking_for(item: EvaluationItem, ranked: list[tuple[int, float]], info: ChunkInfo) -> list:
    if item.relevant_chunks:
        return [c for c, _ in ranked]
    info.load([c for c, _ in ranked])
    return list(dict.fromkeys(code for code in (info.code(c) for c, _ in ranked) if code))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_model(space: EmbeddingSpace, sample_texts: list[str]) -> dict:
    """Load time (a fresh load, not the process cache), parameter memory,
    passages/s over `sample_texts` with the cached model (as search uses it)."""
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    fresh = SentenceTransformer(space.model_path, device="cpu", local_files_only=True)
    load_s = time.perf_counter() - started
    params = sum(p.numel() * p.element_size() for p in fresh.parameters())
    del fresh
    gc.collect()
    encoders.load_model(space.model_path)
    out = {"model_load_s": round(load_s, 3), "model_memory_mb": round(params / 2**20, 1),
           "dimension": int(space.dimension)}
    if sample_texts:
        encoders.encode_passages(space, sample_texts[:4])  # warm-up
        started = time.perf_counter()
        encoders.encode_passages(space, sample_texts)
        out["encode_passages_per_s"] = round(len(sample_texts) / (time.perf_counter() - started), 2)
        out["encode_sample"] = len(sample_texts)
    return out


def sample_passages(n: int = 128) -> list[str]:
    from documents.services.chunking import embedding_text

    rows = Chunk.objects.filter(document__status=DocumentStatus.READY).order_by("pk") \
        .values_list("text", "heading_path")[:n]
    return [embedding_text(text, path) for text, path in rows]


def create_run(evaluation_set, space: EmbeddingSpace | None, mode: str, *, as_user=None, depth: int = 100,
               name: str = "", created_by=None) -> EvaluationRun:
    return EvaluationRun.objects.create(
        name=name, evaluation_set=evaluation_set, set_name=evaluation_set.name if evaluation_set else "",
        space=space, space_name=space.name if space else "", model_path=space.model_path if space else "",
        mode=mode, as_user=as_user, depth=depth, created_by=created_by)


def _progress(run: EvaluationRun, done: int, total: int, message: str) -> None:
    pct = int(100 * done / total) if total else 100
    EvaluationRun.objects.filter(pk=run.pk).update(progress=min(pct, 99), status_message=message[:200])


def execute(run: EvaluationRun, *, progress: Progress | None = None, performance: dict | None = None,
            measure: bool = True) -> EvaluationRun:
    """Run `run` (queued → running → done | failed); stores per-query results.
    `performance` adds measurements made elsewhere (e.g. a corpus backfill)."""
    from search.services.results import run_search

    run.status, run.started_at, run.error = RunStatus.RUNNING, timezone.now(), ""
    run.save(update_fields=["status", "started_at", "error"])
    try:
        space = run.space
        check_modes([run.mode])
        if needs_space(run.mode) and space is None:
            raise ValueError(f"mode {run.mode} needs a space")
        items = list(run.evaluation_set.items.order_by("pk"))
        usable = [i for i in items if i.relevant_chunks or i.relevant_documents]
        scope = evaluation_scope(run.as_user)
        perf = dict(performance or {})
        if measure and space is not None and needs_space(run.mode) and "model_load_s" not in perf:
            _progress(run, 0, 1, "measuring the model")
            perf = {**measure_model(space, sample_passages()), **perf}

        def ranked_for(query: str):
            result = run_search(run.as_user, query, run.mode, k=run.depth, space=space, scope=scope,
                                materialise=False)
            return result.ranked, result.notice

        # Warm-up: first-query costs (model on first use, plan caches) are not latency.
        # Then an empty query-vector cache: no query of the set was encoded before.
        ranked_for(WARM_UP_QUERY)
        encoders.clear_query_cache()
        info = ChunkInfo()
        results, per_query, latencies, notices = [], [], [], set()
        for n, item in enumerate(usable, start=1):
            started = time.perf_counter()
            ranked, notice = ranked_for(item.query)
            latency = (time.perf_counter() - started) * 1000
            notices.add(notice)
            ranked = ranked[:run.depth]
            rel = relevance(item)
            ranking = ranking_for(item, ranked, info)
            scores = m.query_metrics(ranking, rel, run.depth)
            per_query.append(scores)
            latencies.append(latency)
            results.append(_result(run, item, ranked, ranking, rel, scores, latency, info))
            if progress:
                progress(n, len(usable))
            if n % max(1, len(usable) // 50) == 0:
                _progress(run, n, len(usable), f"{n}/{len(usable)} queries")
        with transaction.atomic():
            run.results.all().delete()
            EvaluationQueryResult.objects.bulk_create(results, batch_size=500)
        perf.update({"latency_p50_ms": round(m.percentile(latencies, 50), 2),
                     "latency_p95_ms": round(m.percentile(latencies, 95), 2),
                     "latency_mean_ms": round(sum(latencies) / len(latencies), 2) if latencies else 0,
                     "peak_rss_mb": round(peak_rss_mb(), 1)})
        if notices - {""}:
            perf["notices"] = sorted(notices - {""})
        run.metrics = m.mean_metrics(per_query)
        run.performance = perf
        run.mrr_at_10 = run.metrics.get("MRR@10")
        run.hit_at_1 = run.metrics.get("Hit@1")
        run.query_count, run.skipped = len(usable), len(items) - len(usable)
        run.status, run.progress, run.finished_at = RunStatus.DONE, 100, timezone.now()
        run.status_message = f"{len(usable)} queries" + (f", {run.skipped} unresolved items skipped"
                                                          if run.skipped else "")
        run.save()
    except Exception as e:
        if is_transient(e):  # an outage: the task retries the run from the start
            log.warning("evaluation run %s interrupted by an outage: %s", run.pk, e)
            _mark(run, status=RunStatus.QUEUED, status_message=f"waiting to retry after {type(e).__name__}")
        else:
            log.exception("evaluation run %s failed", run.pk)
            _mark(run, status=RunStatus.FAILED, error=f"{type(e).__name__}: {e}", finished_at=timezone.now())
        raise
    return run


def _mark(run: EvaluationRun, **fields) -> None:
    """Record the run's state if the database can be reached (it may be the cause)."""
    for name, value in fields.items():
        setattr(run, name, value)
    try:
        EvaluationRun.objects.filter(pk=run.pk).update(**fields)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("evaluation run %s: could not record %s (%s)", run.pk, fields.get("status"), exc)


def _result(run, item, ranked, ranking, rel, scores, latency, info: ChunkInfo) -> EvaluationQueryResult:
    first = m.first_relevant_rank(ranking, rel)
    level = "chunk" if item.relevant_chunks else "document"
    shown = ranked[:TOP_STORED] if level == "chunk" else None
    info.load([c for c, _ in ranked[:TOP_STORED * 3]] + list(item.relevant_chunks[:1]))
    top = []
    if level == "chunk":
        for rank, (chunk_id, score) in enumerate(shown, start=1):
            top.append({"rank": rank, "id": chunk_id, "document": info.code(chunk_id), "score": round(score, 5),
                        "relevant": chunk_id in rel, "text": info.text(chunk_id)})
        expected = info.text(item.relevant_chunks[0])
    else:
        best: dict[str, tuple[int, float]] = {}
        for chunk_id, score in ranked:
            code = info.code(chunk_id)
            if code and code not in best:
                best[code] = (chunk_id, score)
            if len(best) >= TOP_STORED:
                break
        for rank, (code, (chunk_id, score)) in enumerate(best.items(), start=1):
            top.append({"rank": rank, "id": code, "document": code, "score": round(score, 5),
                        "relevant": code in rel, "text": info.text(chunk_id)})
        expected = "; ".join(f"{c}: {t}" for c, t in Document.objects.filter(
            code__in=item.relevant_documents[:3]).values_list("code", "title"))
    return EvaluationQueryResult(run=run, item=item, query=item.query, level=level, relevant=list(rel),
                                 first_relevant_rank=first, reciprocal_rank=scores["MRR@10"],
                                 ndcg_at_10=scores["nDCG@10"], latency_ms=round(latency, 2),
                                 expected=expected[:TEXT_HEAD * 2], top=top)


def record_external(summaries: list[dict], *, name: str, set_name: str, model_path: str, depth: int,
                    report_dir) -> None:
    """Keep runs made in a scratch database in the portal's evaluation history."""
    for s in summaries:
        EvaluationRun.objects.create(
            name=name, set_name=set_name, space_name=f"{s['space']} (scratch)", model_path=model_path,
            mode=s["mode"], depth=depth, status=RunStatus.DONE, progress=100, metrics=s["metrics"],
            performance=s["performance"], mrr_at_10=s["metrics"].get("MRR@10"), hit_at_1=s["metrics"].get("Hit@1"),
            query_count=s["queries"], report_dir=str(report_dir),
            status_message="external benchmark (scratch database)", finished_at=timezone.now())


def evaluate(evaluation_set, space, mode: str, **kw) -> EvaluationRun:
    """Create and execute one run (command line / tests)."""
    progress = kw.pop("progress", None)
    performance = kw.pop("performance", None)
    measure = kw.pop("measure", True)
    run = create_run(evaluation_set, space, mode, **kw)
    return execute(run, progress=progress, performance=performance, measure=measure)
