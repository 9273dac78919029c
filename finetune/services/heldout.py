"""Scores on the dataset's held-out eval split: every eval query ranked by
cosine against every eval positive (the split's own little corpus), scored with
the portal's metric functions (search/evaluation/metrics.py, whose conventions
are those of sentence-transformers' InformationRetrievalEvaluator — the
evaluator that early stopping uses during training; a test checks they agree)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from finetune.services.batches import EvalData
from finetune.services.model_setup import prompts_of
from search.evaluation import metrics as m

DEPTH = 100
EARLY_STOPPING_METRIC = "MRR@10"


def ranking_scores(model, data: EvalData, *, batch_size: int = 64,
                   check: Callable[[], None] | None = None) -> dict:
    """{"metrics": mean metrics, "queries": n, "passages": n}."""
    if not data:
        return {"metrics": {}, "queries": 0, "passages": 0}
    prompts = prompts_of(model)
    ids = list(data.corpus)
    corpus = _encode(model, [data.corpus[c] for c in ids], prompts.passage, batch_size)
    if check:
        check()
    qids = list(data.queries)
    queries = _encode(model, [data.queries[q] for q in qids], prompts.query, batch_size)
    sims = queries @ corpus.T
    per_query = []
    for row, qid in enumerate(qids):
        # ties broken by corpus order, as the evaluator does (a stable sort of the scores)
        order = np.argsort(-sims[row], kind="stable")[:DEPTH]
        ranking = [ids[i] for i in order]
        per_query.append(m.query_metrics(ranking, {c: 1.0 for c in data.relevant[qid]}, DEPTH))
    return {"metrics": m.mean_metrics(per_query), "queries": len(qids), "passages": len(ids)}


def _encode(model, texts: list[str], prompt: str, batch_size: int) -> np.ndarray:
    vectors = model.encode([prompt + t for t in texts], batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def early_stopping_evaluator(model, data: EvalData, name: str = "eval"):
    """sentence-transformers' InformationRetrievalEvaluator over the eval split (MRR@10)."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    prompts = prompts_of(model)
    return InformationRetrievalEvaluator(
        data.queries, data.corpus, data.relevant, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 10],
        precision_recall_at_k=[10], map_at_k=[10], name=name, write_csv=False, show_progress_bar=False,
        query_prompt=prompts.query or None, corpus_prompt=prompts.passage or None, batch_size=64)


def evaluator_mrr(evaluator, model) -> float:
    scores = evaluator(model)
    return float(next(v for k, v in scores.items() if k.endswith("cosine_mrr@10")))
