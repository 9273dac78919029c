"""Base and fine-tuned model on the portal's own evaluation sets (the guard
sets, never trained on), through the same runner as `manage.py evaluate`.

A model folder that is not a space is evaluated the way `evaluate --compare`
does it (search/evaluation/compare.py): a temporary space over every ready
chunk, embedded, evaluated, then dropped. Both models are evaluated that way,
in vector mode and without floors — the base space's calibrated floors would
cut its results and not the candidate's, so the numbers compare the models.
The runs stay in the evaluation history under the job's name.
"""
from __future__ import annotations

import logging
from typing import Callable

from finetune.models import JobStep
from search.evaluation import compare, runner
from search.models import EmbeddingSpace
from search.services import embedding, encoders, spaces

log = logging.getLogger(__name__)

MODE = "vector"
DEPTH = 100


def temporary_space_name(job, label: str) -> str:
    return f"finetune-{job.pk}-{label}"[:64]


def drop_temporary_spaces(job) -> None:
    """Remove what a killed or cancelled run left behind."""
    for space in EmbeddingSpace.objects.filter(name__startswith=f"finetune-{job.pk}-"):
        compare.discard(space)


def evaluate_on_sets(job, model_path: str, label: str, sets, *, check: Callable[[], None] = lambda: None,
                     progress: Callable[[str, int, int], None] | None = None) -> dict:
    """{set name: {"metrics", "queries", "skipped", "run_id"}} for `model_path` on each set."""
    sets = list(sets)
    if not sets:
        return {}
    name = temporary_space_name(job, label)
    for leftover in EmbeddingSpace.objects.filter(name=name):
        compare.discard(leftover)
    space = spaces.create_space(name, model_path)
    try:
        def embedded(done: int, total: int) -> None:
            check()
            if progress:
                progress(JobStep.EMBEDDING_GUARD, done, total)

        embedding.backfill(space, progress=embedded)
        out = {}
        for n, evaluation_set in enumerate(sets, start=1):
            check()
            if progress:
                progress(JobStep.GUARD_SET, n - 1, len(sets))
            run = runner.evaluate(evaluation_set, space, MODE, depth=DEPTH, name=f"finetune-{job.name}",
                                  measure=False, created_by=job.created_by,
                                  progress=lambda done, total: check())
            run.space_name = f"{job.name} ({label})"
            run.save(update_fields=["space_name"])
            out[evaluation_set.name] = {"metrics": run.metrics, "queries": run.query_count,
                                        "skipped": run.skipped, "run_id": run.pk, "mode": MODE}
        return out
    finally:
        compare.discard(space)
        encoders.forget_models()  # the temporary model is not kept in this worker's memory
