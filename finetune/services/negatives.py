"""Hard-negative mining with the current model. PLACEHOLDER until the datasets
work lands; the contract below is what the job pipeline calls."""
from __future__ import annotations

from typing import Callable

from finetune.models import TrainingDataset


def mine_hard_negatives(dataset: TrainingDataset, model_path: str, *, margin: float = 0.05,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Fill `negative` of the dataset's train pairs that have none with a passage
    the model ranks high for the query but that is not the positive (skipping
    candidates within `margin` of the positive's score). Returns pairs changed."""
    raise NotImplementedError("hard-negative mining is not built yet")
