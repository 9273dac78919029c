"""The validation report run before training (counts, duplicates, lengths,
conflicts, language mix, leakage). PLACEHOLDER until the datasets work lands:
only counts; the contract below is what the job pipeline calls."""
from __future__ import annotations

from finetune.models import TrainingDataset


def validate_dataset(dataset: TrainingDataset, model_path: str | None = None, max_length: int = 512) -> dict:
    """{"errors": [{"code", "message", "examples"}], "warnings": [...], "stats": {...}}.
    Errors stop a job; warnings are shown."""
    pairs = dataset.pairs.all()
    stats = {"pairs": pairs.count(), "train": pairs.filter(split="train").count(),
             "eval": pairs.filter(split="eval").count()}
    errors = [] if stats["train"] else [{"code": "empty", "message": "The dataset has no training pairs.",
                                         "examples": []}]
    return {"errors": errors, "warnings": [], "stats": stats}
