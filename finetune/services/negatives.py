"""Hard-negative mining with the current model.

For each train pair without a negative: the passages the model ranks highest
for its query, among the dataset's own train positives (never an eval passage:
that would train on the held-out side), less

- every positive of the same query (queries compared by `near_key`),
- passages of the pair's own document (`doc_key`: chunks of one document
  overlap and often answer the same question), and
- candidates scoring within `margin` of the positive's score (cosine) or above
  it: likely unlabelled positives, i.e. false negatives.

The best remaining candidate among the top `depth` is the negative; a pair with
none keeps no negative (counted). This is sentence-transformers'
`util.mine_hard_negatives` with `absolute_margin`, `num_negatives=1` and
`sampling_strategy="top"`, written out here: that function needs the `datasets`
package, reports no progress, and cannot exclude a pair's own document.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
from django.db import transaction

from finetune.models import Split, TrainingDataset, TrainingPair
from finetune.services.texts import near_key

ENCODE_BATCH = 256  # texts per progress step


def _encode(model, texts: list[str], prompt: str, done: int, total: int, progress) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = [prompt + t for t in texts[start:start + ENCODE_BATCH]]
        parts.append(model.encode(batch, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                                  show_progress_bar=False).astype(np.float32))
        if progress:
            progress(done + start + len(batch), total)
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def load_model(model_path: str):
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(str(model_path), device=device, local_files_only=True)


def mine_hard_negatives(dataset: TrainingDataset, model_path: str, *, margin: float = 0.05,
                        progress: Callable[[int, int], None] | None = None, depth: int = 50) -> int:
    """Fill `negative` of the dataset's train pairs that have none with a passage
    the model ranks high for the query but that is not the positive (skipping
    candidates within `margin` of the positive's score). Returns pairs changed."""
    from finetune.services.datasets import summarise

    train = list(TrainingPair.objects.filter(dataset=dataset, split=Split.TRAIN).order_by("pk"))
    targets = [p for p in train if not p.negative]
    if not targets:
        return 0
    corpus: list[str] = []
    index: dict[str, int] = {}
    documents: dict[int, set[str]] = defaultdict(set)
    positives_of: dict[str, set[int]] = defaultdict(set)
    for pair in train:
        key = near_key(pair.positive)
        if key not in index:
            index[key] = len(corpus)
            corpus.append(pair.positive)
        documents[index[key]].add(pair.doc_key)
        positives_of[near_key(pair.query)].add(index[key])
    queries = list(dict.fromkeys(p.query for p in targets))
    query_index = {q: i for i, q in enumerate(queries)}

    model = load_model(model_path)
    prompts = getattr(model, "prompts", {}) or {}
    total = len(corpus) + len(queries)
    passages = _encode(model, corpus, prompts.get("document") or prompts.get("passage", ""), 0, total, progress)
    asked = _encode(model, queries, prompts.get("query", ""), len(corpus), total, progress)
    del model

    changed, without = [], 0
    k = min(len(corpus), depth + 1)
    for start in range(0, len(queries), 1024):
        scores = asked[start:start + 1024] @ passages.T
        top = np.argsort(-scores, axis=1)[:, :k]
        for pair in targets:
            row = query_index[pair.query] - start
            if not 0 <= row < len(scores):
                continue
            positive = index[near_key(pair.positive)]
            ceiling = float(scores[row, positive]) - margin
            excluded = positives_of[near_key(pair.query)]
            for candidate in top[row]:
                score = float(scores[row, candidate])
                if candidate in excluded or pair.doc_key in documents[candidate] or score > ceiling:
                    continue
                pair.negative, pair.negative_score = corpus[candidate], round(score, 6)
                changed.append(pair)
                break
            else:
                without += 1
    with transaction.atomic():
        TrainingPair.objects.bulk_update(changed, ["negative", "negative_score"], batch_size=1000)
        dataset.refresh_from_db()
        dataset.sources = [*dataset.sources, {"source": "mined", "model": str(model_path), "margin": margin,
                                              "depth": depth, "pairs": len(changed), "without_candidate": without}]
        summarise(dataset)
        dataset.save(update_fields=["sources", "counts", "access_levels", "content_hash"])
    return len(changed)
