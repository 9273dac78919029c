"""A real fine-tuning run on a tiny model built on the fly: the package it writes
loads offline on its own, its metrics are the runner's, resuming repeats no step."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.models import FineTuneJob, JobStatus
from finetune.services import jobs, pipeline
from tests.finetune_helpers import guard_set, make_dataset, tiny_model_path  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.FINETUNE_PACKAGE_DIR = tmp_path / "var" / "models"
    settings.FINETUNE_PROGRESS_SECONDS = 0


def test_a_training_run_writes_a_loadable_package_with_the_runner_s_numbers(tiny_model_path, guard_set):
    dataset = make_dataset()
    job = jobs.create_job(name="tiny-run", dataset=dataset, base_model_path=tiny_model_path, guard_sets=[guard_set],
                          queue=False, epochs=2, batch_size=4, learning_rate=1e-3, eval_every_steps=3,
                          max_length=32)
    assert pipeline.run_job(job.pk) == "succeeded", FineTuneJob.objects.get(pk=job.pk).error
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    package = Path(job.package_dir)
    print(json.dumps(job.metrics, indent=1)[:3000])
    print(sorted(p.name for p in package.rglob("*")))
