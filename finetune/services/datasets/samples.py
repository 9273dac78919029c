"""A dataset of synthetic queries for the sample corpus (documents/samples,
loaded by `manage.py load_samples`): what the offline generator alone gives,
for measuring it (train on it, evaluate on a guard set it never saw — pass that
set in `exclude_eval_sets` so none of its queries can slip in)."""
from __future__ import annotations

import json
from pathlib import Path

from django.utils.translation import gettext as _

import documents
from documents.models import Document, DocumentStatus
from finetune.services.datasets.build import DatasetRefused, DatasetSpec, build_dataset

MANIFEST = Path(documents.__file__).resolve().parent / "samples" / "manifest.json"


def sample_codes() -> list[str]:
    return [entry["code"] for entry in json.loads(MANIFEST.read_text(encoding="utf-8"))["documents"]]


def build_sample_dataset(name: str, user, *, generator: str = "offline", per_chunk: int = 3, eval_share: float = 0.1,
                         seed: int = 42, exclude_eval_sets: list[str] | None = None, progress=None):
    codes = sample_codes()
    ready = set(Document.objects.filter(code__in=codes, status=DocumentStatus.READY).values_list("code", flat=True))
    missing = sorted(set(codes) - ready)
    if missing:
        shown = ", ".join(missing[:5]) + ("…" if len(missing) > 5 else "")
        raise DatasetRefused([_("%(n)d sample documents are not loaded and ready (%(codes)s): run manage.py "
                                "load_samples first.") % {"n": len(missing), "codes": shown}])
    spec = DatasetSpec(synthetic=generator, synthetic_codes=codes, per_chunk=per_chunk, eval_share=eval_share,
                       seed=seed, exclude_eval_sets=list(exclude_eval_sets or []),
                       description=f"{generator} synthetic queries for the {len(codes)} sample documents")
    return build_dataset(name, spec, user, progress=progress)
