"""Loading embedding models: once per process and model folder, never per
request or per task. Query encoding in web processes uses one torch thread
(measured on 2 cores under load: 21 ms/query with 1 thread, 536 ms with 2).

Backend: a model folder's ONNX Runtime export (search.services.onnx_encoder) encodes
queries and passages when PORTAL_ENCODER_BACKEND allows it and the export passed its
fidelity check (cosine to PyTorch >= 0.99); anything wrong with it — missing, failed,
made from other weights, corrupt, an error while encoding — falls back to PyTorch with
a logged warning. ONNX sessions get as many threads as torch has at the time
(use_query_threads, encode_threads), one session per thread count."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_lock = threading.Lock()
_onnx_lock = threading.Lock()
log = logging.getLogger(__name__)


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
    """Drop the loaded models and ONNX sessions (tests; after a model folder was replaced
    or re-exported)."""
    with _lock:
        _models.clear()
    with _onnx_lock:
        _onnx.clear()
    backend_used.clear()


# (model folder, threads, backend setting, variant) -> its ONNX encoder, or None: PyTorch
_onnx: dict[tuple, object] = {}
backend_used: dict[str, str] = {}  # model folder -> what encoded its last texts: torch | onnx-fp32 | onnx-int8


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def onnx_encoder_for(model_path: str):
    """The folder's ONNX encoder this process uses, or None for PyTorch (decided once per
    folder, thread count and setting; the reason for PyTorch is logged)."""
    from django.conf import settings

    from search.services import onnx_encoder

    mode, preferred = settings.ENCODER_BACKEND, settings.ENCODER_ONNX_VARIANT
    if mode == "torch":
        return None
    key = (model_path, _threads(), mode, preferred)
    if key in _onnx:
        return _onnx[key]
    with _onnx_lock:
        if key not in _onnx:
            encoder, reasons = None, []
            for variant in dict.fromkeys((preferred, "fp32")):
                try:
                    encoder = onnx_encoder.load(model_path, variant, key[1])
                    break
                except onnx_encoder.OnnxUnavailable as exc:
                    reasons.append(exc)
            if encoder is None:
                text = "; ".join(exc.reason for exc in reasons)
                if mode == "onnx" or any(exc.code != "missing" for exc in reasons):
                    log.warning("ONNX encoder of %s not used, PyTorch encodes instead: %s", model_path, text)
                else:
                    log.info("no ONNX export of %s: PyTorch encodes", model_path)
            elif reasons:  # an int8 export never made (fp32 only) is no fault: info; a refused one warns
                log.log(logging.INFO if reasons[0].code == "missing" else logging.WARNING,
                        "ONNX %s of %s not used (%s): %s encodes", preferred, model_path, reasons[0].reason,
                        encoder.name)
            _onnx[key] = encoder
    return _onnx[key]


def forget_onnx(model_path: str) -> None:
    """Load the folder's ONNX export afresh at its next use (after a new export)."""
    with _onnx_lock:
        for key in [k for k in _onnx if k[0] == str(model_path)]:
            del _onnx[key]


def _onnx_failed(model_path: str, exc: Exception) -> None:
    log.warning("ONNX encoding of %s failed (%s: %s); PyTorch encodes from now on in this process",
                model_path, exc.__class__.__name__, exc)
    with _onnx_lock:
        for key in [k for k in _onnx if k[0] == model_path]:
            _onnx[key] = None


def _encode(model_path: str, texts: list[str], prefix: str, normalize: bool, batch_size: int) -> np.ndarray:
    encoder = onnx_encoder_for(model_path)
    if encoder is not None:
        try:
            vectors = encoder.encode([prefix + t for t in texts], batch_size, normalize)
            backend_used[model_path] = encoder.name
            return vectors
        except Exception as exc:  # noqa: BLE001 - never an error for the user: PyTorch answers
            _onnx_failed(model_path, exc)
    model = load_model(model_path)
    vectors = model.encode([prefix + t for t in texts], batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=normalize, show_progress_bar=False)
    backend_used[model_path] = "torch"
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
