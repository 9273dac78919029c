"""Fine-tuning jobs on real Celery workers: a cancel stops the training for real,
and a job whose worker is killed mid-training is taken over by another worker
and resumes from its last checkpoint — no step repeated in the record, none lost."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from finetune.models import FineTuneJob, JobStatus
from finetune.services import checkpoints, jobs
from tests.conftest import wait_until
from tests.finetune_job_helpers import make_dataset, tiny_model_path  # noqa: F401 - fixtures

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fast(settings, tmp_path):
    """Worker settings for a test: beats every second, progress as it happens."""
    packages = tmp_path / "packages"
    settings.FINETUNE_PACKAGE_DIR = packages
    env = {"PORTAL_FINETUNE_HEARTBEAT_SECONDS": 1, "PORTAL_FINETUNE_PROGRESS_SECONDS": 0.2,
           "PORTAL_FINETUNE_PACKAGE_DIR": packages, "PORTAL_TASK_RETRY_MAX_DELAY": 2,
           "PORTAL_FINETUNE_TORCH_THREADS": 1}
    names = []
    yield env, names
    for name in names:
        shutil.rmtree(jobs.work_dir(name), ignore_errors=True)


def job_row(job) -> FineTuneJob:
    return FineTuneJob.objects.get(pk=job.pk)


def test_cancel_stops_the_training_for_real_and_removes_its_work(start_worker, tiny_model_path, fast):
    env, names = fast
    worker = start_worker(**env)
    names.append("to-cancel")
    job = jobs.create_job(name="to-cancel", dataset=make_dataset(repeats=5), base_model_path=tiny_model_path,
                          epochs=100, batch_size=4, eval_every_steps=10**5)
    wait_until(lambda: (job_row(job).progress or {}).get("step", 0) >= 3 and job_row(job).status == "training",
               180, 0.1, message="training to start")
    jobs.request_cancel(job)
    ended = wait_until(lambda: job_row(job).status == JobStatus.CANCELLED and job_row(job), 30, 0.1,
                       message="the job to stop")
    stopped_at = ended.progress["step"]
    assert stopped_at < ended.progress["total_steps"]
    assert "training stopped" in ended.history[-1]["reason"] and ended.finished_at
    wait_until(lambda: "succeeded in" in worker.log() and "'cancelled'" in worker.log(), 10, 0.2,
               message="the task to end")
    time.sleep(2)
    assert job_row(job).progress["step"] == stopped_at, "training went on after the cancel"
    assert not jobs.work_dir(job.name).exists(), "checkpoints were left behind"
    assert not jobs.package_dir(job.name).exists()


def test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker(start_worker, tiny_model_path, fast):
    env, names = fast
    env = {**env, "PORTAL_FINETUNE_CHECKPOINT_SECONDS": 2}
    names.append("survivor")
    first = start_worker(**env)
    job = jobs.create_job(name="survivor", dataset=make_dataset(repeats=5), base_model_path=tiny_model_path,
                          epochs=30, batch_size=4, eval_every_steps=10**5, learning_rate=1e-3)
    work = jobs.work_dir(job.name)

    def saved_step() -> int:
        saved = checkpoints.load(work) if work.exists() else None
        return saved["step"] if saved else -1

    wait_until(lambda: saved_step() >= 3, 240, 0.1, message="a checkpoint")
    wait_until(lambda: job_row(job).progress.get("step", 0) > saved_step(), 30, 0.05,
               message="a step after the checkpoint")
    first.kill()
    killed = job_row(job)
    saved = saved_step()
    assert killed.status == JobStatus.TRAINING, "killed after training was done"
    total = killed.progress["total_steps"]
    assert killed.progress["step"] < total

    start_worker(**env)  # its start-up sweep finds the job (lock gone, heartbeat stale)
    done = wait_until(lambda: job_row(job).status not in ("queued", "validating", "evaluating", "training",
                                                          "packaging") and job_row(job), 400, 0.5,
                      message="the other worker to finish the job")
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2
    assert done.metrics["training"]["resumed_from"] == saved > 0
    assert [s for s, *_ in done.loss_curve] == list(range(1, total + 1)), "a step was repeated or lost"
    assert Path(done.package_dir, "modules.json").exists()
