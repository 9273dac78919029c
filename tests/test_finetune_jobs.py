"""Fine-tuning jobs as records: what creation refuses (a second job on the same
base above all), cancellation of a job nobody runs, registration, the recovery
sweep and the attempt limit."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from finetune.models import DatasetStatus, FineTuneJob, JobStatus
from finetune.services import jobs, pipeline, recovery
from finetune.services.liveness import JobLock
from search.services import spaces
from tests.finetune_job_helpers import make_dataset, tiny_model_path  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path):
    from django.utils import translation

    settings.VAR_DIR = tmp_path / "var"
    settings.FINETUNE_PACKAGE_DIR = tmp_path / "var" / "models"
    with translation.override("en"):  # the refusals below are matched in English
        yield


@pytest.fixture
def dataset(db):
    return make_dataset()


def job_on(base, dataset, name="first", **kw):
    return jobs.create_job(name=name, dataset=dataset, base_model_path=base, queue=False, **kw)


def test_a_second_job_on_the_same_base_is_refused_while_the_first_is_active(tiny_model_path, dataset):
    first = job_on(tiny_model_path, dataset)
    with pytest.raises(jobs.JobError, match="already running: first") as refused:
        job_on(tiny_model_path + "/", dataset, name="second")  # the same folder spelt differently
    assert refused.value.field == "base_space"
    space = spaces.create_space("base", tiny_model_path)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.create_job(name="third", dataset=dataset, base_space=space, queue=False)
    assert FineTuneJob.objects.count() == 1
    for status in (JobStatus.TRAINING, JobStatus.PACKAGING):
        FineTuneJob.objects.filter(pk=first.pk).update(status=status)
        with pytest.raises(jobs.JobError):
            job_on(tiny_model_path, dataset, name="second")
    FineTuneJob.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED)
    assert job_on(tiny_model_path, dataset, name="second").status == JobStatus.QUEUED


def test_the_database_constraint_is_what_refuses(tiny_model_path, dataset):
    """No check in Python could stop two requests at once; the constraint does."""
    first = job_on(tiny_model_path, dataset)
    with pytest.raises(IntegrityError, match="one_active_finetune_job_per_base"), transaction.atomic():
        FineTuneJob.objects.create(name="raw", dataset=dataset, base_model_path=first.base_model_path,
                                   base_key=first.base_key)


@pytest.mark.parametrize("options, field", [
    ({"batch_size": 1}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"learning_rate": 2.0}, "learning_rate"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"loss": "cosine"}, "loss"),
    ({"loss": "cached_mnrl", "batch_size": 8, "mini_batch_size": 16}, "mini_batch_size"),
    ({"matryoshka_dims": [16, 16]}, "matryoshka_dims"),
    ({"matryoshka_dims": ["a"]}, "matryoshka_dims"),
    ({"max_length": 4}, "max_length"),
])
def test_options_the_training_could_not_use_are_refused_naming_the_field(tiny_model_path, dataset, options, field):
    with pytest.raises(jobs.JobError) as refused:
        job_on(tiny_model_path, dataset, **options)
    assert refused.value.field == field
    assert not FineTuneJob.objects.exists()


def test_matryoshka_dimensions_beyond_the_space_s_are_refused(tiny_model_path, dataset):
    space = spaces.create_space("tiny", tiny_model_path)
    with pytest.raises(jobs.JobError, match="larger than the model's 32"):
        jobs.create_job(name="m", dataset=dataset, base_space=space, queue=False, matryoshka_dims=[64, 32])


def test_bases_datasets_and_names_that_cannot_work_are_refused(tiny_model_path, dataset, tmp_path):
    with pytest.raises(jobs.JobError, match="not a sentence-transformers model folder"):
        job_on(str(tmp_path), dataset)
    with pytest.raises(jobs.JobError, match="Choose a base"):
        jobs.create_job(name="x", dataset=dataset, queue=False)
    building = make_dataset("building", status=DatasetStatus.BUILDING)
    with pytest.raises(jobs.JobError, match="not ready") as refused:
        job_on(tiny_model_path, building)
    assert refused.value.field == "dataset"
    with pytest.raises(jobs.JobError, match="lower-case"):
        job_on(tiny_model_path, dataset, name="Bad Name")
    jobs.package_dir("taken").mkdir(parents=True)
    with pytest.raises(jobs.JobError, match="package folder"):
        job_on(tiny_model_path, dataset, name="taken")
    with pytest.raises(jobs.JobError, match="Unknown options"):
        job_on(tiny_model_path, dataset, nonsense=1)
    assert not FineTuneJob.objects.exists()


def test_refusals_are_in_the_request_s_language(tiny_model_path, dataset):
    from django.utils import translation

    job_on(tiny_model_path, dataset)
    with translation.override("vi"), pytest.raises(jobs.JobError, match="Đang có tác vụ tinh chỉnh"):
        job_on(tiny_model_path, dataset, name="second")


def test_a_job_nobody_runs_is_cancelled_at_once_and_an_ended_one_cannot_be(tiny_model_path, dataset,
                                                                            django_user_model):
    job = job_on(tiny_model_path, dataset)
    jobs.work_dir(job.name).mkdir(parents=True)
    jobs.request_cancel(job, by=django_user_model.objects.create(username="boss"))
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at and job.cancel_requested
    assert job.history[-1]["detail"] == "cancelled by boss"
    assert job.history[-1]["reason"] == "Cancelled before a worker started it"
    assert not jobs.work_dir(job.name).exists()
    with pytest.raises(jobs.JobError, match="has ended"):
        jobs.request_cancel(job)


def test_a_running_job_is_only_asked_to_stop(tiny_model_path, dataset):
    job = job_on(tiny_model_path, dataset)
    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.TRAINING)
    with JobLock(job.pk) as worker:  # a worker holds the job
        assert worker.try_acquire()
        jobs.request_cancel(job)
    job.refresh_from_db()
    assert job.status == JobStatus.TRAINING and job.cancel_requested
    assert job.status_message == "Cancel requested; stopping at the next step"


def test_a_job_that_was_not_a_success_cannot_be_registered(tiny_model_path, dataset):
    job = job_on(tiny_model_path, dataset)
    with pytest.raises(jobs.JobError, match="Only a succeeded job"):
        jobs.register_package(job)


def test_registration_refuses_a_taken_space_name_and_a_second_registration(tiny_model_path, dataset, tmp_path):
    import shutil

    job = job_on(tiny_model_path, dataset)
    package = jobs.package_dir(job.name)
    shutil.copytree(tiny_model_path, package)
    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, package_dir=str(package))
    spaces.create_space("first", tiny_model_path)
    with pytest.raises(jobs.JobError, match="exists already"):
        jobs.register_package(job)
    space = jobs.register_package(job, space_name="tuned")
    assert space.status == "ready" and space.model_card["fine_tuned_by_job"] == "first"
    with pytest.raises(jobs.JobError, match="registered already as space tuned"):
        jobs.register_package(job, space_name="other")


def test_the_sweep_queues_lost_jobs_and_leaves_the_rest(tiny_model_path, dataset, monkeypatch, settings):
    from portal import tasking

    sent = []
    monkeypatch.setattr(tasking, "send", lambda task, *args, **kw: sent.append(args[0]) or True)
    settings.FINETUNE_HEARTBEAT_SECONDS = 10
    old = timezone.now() - timedelta(seconds=60)
    datasets = [make_dataset(f"d{i}") for i in range(5)]
    bases = []
    for i in range(5):  # one base per job (one active job per base)
        base = jobs.work_dir(f"base{i}")
        import shutil

        shutil.copytree(tiny_model_path, base)
        bases.append(str(base))
    dead = job_on(bases[0], datasets[0], name="dead")           # its worker died: lock free, heartbeat old
    alive = job_on(bases[1], datasets[1], name="alive")         # lock held, heartbeat old but within the lease
    fresh = job_on(bases[2], datasets[2], name="fresh")         # lock free but heartbeat fresh (a restart)
    never = job_on(bases[3], datasets[3], name="never-sent")    # queued, never handed to the broker
    waiting = job_on(bases[4], datasets[4], name="waiting")     # queued a moment ago
    FineTuneJob.objects.filter(pk__in=[dead.pk, alive.pk]).update(status=JobStatus.TRAINING, heartbeat_at=old)
    FineTuneJob.objects.filter(pk=fresh.pk).update(status=JobStatus.TRAINING, heartbeat_at=timezone.now())
    FineTuneJob.objects.filter(pk=waiting.pk).update(queued_at=timezone.now())
    with JobLock(alive.pk) as lock:
        assert lock.try_acquire()
        assert recovery.recover_jobs() == sorted([dead.pk, never.pk])
        assert recovery.recover_jobs() == [], "queued twice"
    assert sorted(sent) == sorted([dead.pk, never.pk])


def test_a_job_whose_worker_died_too_often_fails_with_the_reason(tiny_model_path, dataset, settings):
    settings.FINETUNE_MAX_ATTEMPTS = 2
    job = job_on(tiny_model_path, dataset)
    FineTuneJob.objects.filter(pk=job.pk).update(attempts=2, status=JobStatus.TRAINING, status_message="training")
    assert pipeline.run_job(job.pk) == "gave up"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Gave up after 2 attempts") and "Last step: training" in job.error


def test_a_job_held_by_another_worker_is_left_alone(tiny_model_path, dataset):
    job = job_on(tiny_model_path, dataset)
    with JobLock(job.pk) as other:
        assert other.try_acquire()
        assert pipeline.run_job(job.pk) == "running on another worker"
    job.refresh_from_db()
    assert job.attempts == 0 and job.status == JobStatus.QUEUED


def test_jobs_run_on_the_finetune_queue_and_the_sweep_on_the_control_queue(settings):
    from tests.conftest import _purge_queue
    from finetune.tasks import recover_stale_finetune_jobs_task, run_finetune_job_task
    from portal import tasking

    _purge_queue()
    try:
        assert tasking.send(run_finetune_job_task, 1) and tasking.send(recover_stale_finetune_jobs_task)
        assert tasking.queue_length(settings.TASK_QUEUES["finetune"]) == 1
        assert tasking.queue_length(settings.CELERY_TASK_DEFAULT_QUEUE) == 1
    finally:
        _purge_queue()
    assert settings.CELERY_BEAT_SCHEDULE["recover-stale-finetune-jobs"]["task"] == recover_stale_finetune_jobs_task.name
    assert run_finetune_job_task.acks_late and run_finetune_job_task.reject_on_worker_lost
    run_script = (Path(__file__).resolve().parent.parent / "bin" / "run").read_text()
    assert '$QUEUE.finetune' in run_script, "no worker of bin/run takes fine-tuning jobs"


def test_an_outage_is_retried_as_the_same_attempt_and_a_bug_is_not_retried(monkeypatch, settings):
    from django.db import OperationalError

    from finetune.services import pipeline as pipeline_module
    from finetune.tasks import run_finetune_job_task

    settings.TASK_MAX_RETRIES = 3
    calls = []

    def database_down(job_id, **kwargs):
        calls.append(kwargs)
        raise OperationalError("connection to server on socket failed: No such file or directory")

    monkeypatch.setattr(pipeline_module, "run_job", database_down)
    assert run_finetune_job_task.apply(args=(7,)).get() == "gave up"  # eager: each retry runs at once
    assert calls == [{"after_outage": False}] + [{"after_outage": True}] * 3

    def bug(job_id, **kwargs):
        calls.append(kwargs)
        raise KeyError("bug")

    calls.clear()
    monkeypatch.setattr(pipeline_module, "run_job", bug)
    with pytest.raises(KeyError):
        run_finetune_job_task.apply(args=(7,)).get()
    assert len(calls) == 1


def test_a_retry_after_an_outage_does_not_count_an_attempt(tiny_model_path, dataset, monkeypatch):
    job = job_on(tiny_model_path, dataset)
    FineTuneJob.objects.filter(pk=job.pk).update(attempts=1, status=JobStatus.TRAINING)
    monkeypatch.setattr(pipeline, "_phases", lambda *a: None)
    pipeline.run_job(job.pk, after_outage=True)
    assert FineTuneJob.objects.get(pk=job.pk).attempts == 1
    pipeline.run_job(job.pk)
    assert FineTuneJob.objects.get(pk=job.pk).attempts == 2
