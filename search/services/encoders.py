"""Loading embedding models: once per process and model folder, never per
request or per task. Query encoding in web processes uses one torch thread
(measured on 2 cores under load: 21 ms/query with 1 thread, 536 ms with 2)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_lock = threading.Lock()


@dataclass(frozen=True)
class ModelInfo:
    dimension: int
    max_seq_length: int
    query_prefix: str
    passage_prefix: str
    normalize: bool


def describe_model(model_path: str) -> ModelInfo:
    """Read dimension, max length, prompts and normalisation from the folder
    (the dimension by loading the model: never typed in by hand)."""
    model = load_model(model_path)
    dim = model.get_embedding_dimension()
    prompts = getattr(model, "prompts", {}) or {}
    normalize = any(type(m).__name__ == "Normalize" for m in model)
    return ModelInfo(int(dim), int(model.max_seq_length or 512), prompts.get("query", ""),
                     prompts.get("document") or prompts.get("passage", ""), normalize)


_models: dict[str, object] = {}
MAX_MODELS = 4


def load_model(model_path: str):
    """The model of a folder, loaded once per process: concurrent first callers
    (a request during the start-up warm-up) wait for the one load."""
    model = _models.get(model_path)
    if model is not None:
        return model
    from sentence_transformers import SentenceTransformer

    with _lock:
        if model_path not in _models:
            if len(_models) >= MAX_MODELS:
                _models.pop(next(iter(_models)))
            _models[model_path] = SentenceTransformer(str(Path(model_path)), device="cpu", local_files_only=True)
        return _models[model_path]


def forget_models() -> None:
    """Drop the loaded models (tests; after a model folder was replaced)."""
    with _lock:
        _models.clear()


def _encode(model_path: str, texts: list[str], prefix: str, normalize: bool, batch_size: int) -> np.ndarray:
    model = load_model(model_path)
    vectors = model.encode([prefix + t for t in texts], batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=normalize, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def encode_passages(space, texts: list[str], batch_size: int = 32) -> np.ndarray:
    return _encode(space.model_path, texts, space.passage_prefix, space.normalize, batch_size)


def encode_query(space, text: str) -> np.ndarray:
    return _encoded_query(space.model_path, space.query_prefix, space.normalize, text).copy()


@lru_cache(maxsize=512)
def _encoded_query(model_path: str, prefix: str, normalize: bool, text: str) -> np.ndarray:
    """Recent queries' vectors: the next page of a search, a refined filter or
    the A/B twin of a query do not encode again."""
    return _encode(model_path, [text], prefix, normalize, 1)[0]


def clear_query_cache() -> None:
    """Forget encoded queries (an evaluation measures each mode cold)."""
    _encoded_query.cache_clear()


def warm_up(spaces) -> None:
    """Load the models of `spaces` and encode once, so a new web process's first
    search does not pay the model load (1–2 s, far more under load)."""
    for space in spaces:
        _encode(space.model_path, ["warm-up"], space.query_prefix, space.normalize, 1)


def use_query_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


@contextmanager
def encode_threads(n: int):
    """Torch's threads for the block (0: leave as is), restored after: a bulk backfill
    can leave a core to the searches of the same machine (PORTAL_MIGRATION_ENCODE_THREADS)."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
