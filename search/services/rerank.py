"""Optional cross-encoder re-ranking (RERANK_MODEL: a local cross-encoder folder)."""
from __future__ import annotations

import threading
from functools import lru_cache

from django.conf import settings

_lock = threading.Lock()


@lru_cache(maxsize=2)
def _model(path: str):
    from sentence_transformers import CrossEncoder

    with _lock:
        return CrossEncoder(path, device="cpu", local_files_only=True)


def rerank(query: str, candidates: list[tuple[int, str]]) -> list[tuple[int, float]]:
    if not candidates:
        return []
    model = _model(str(settings.RERANK_MODEL))
    scores = model.predict([(query, text) for _, text in candidates], show_progress_bar=False)
    ranked = sorted(zip((c for c, _ in candidates), (float(s) for s in scores)), key=lambda cs: -cs[1])
    return ranked
