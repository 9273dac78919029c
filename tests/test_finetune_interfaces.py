"""Fine-tuning jobs through the admin (create form, refusal on the form, live
status, loss curve, actions), the API and `manage.py finetune`."""
from __future__ import annotations

import io
from pathlib import Path
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from finetune.models import FineTuneJob, JobStatus
from finetune.services import jobs
from tests import factories as f
from tests.finetune_job_helpers import make_dataset, tiny_model_path, trainer  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path / "var"
    settings.FINETUNE_PACKAGE_DIR = tmp_path / "var" / "models"
    settings.FINETUNE_PROGRESS_SECONDS = 0
    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda job: queued.append(job.pk) or True)
    return queued


@pytest.fixture
def admin_client():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # the messages checked below are the English ones
    client.force_login(f.user("root", is_superuser=True, is_staff=True))
    return client


def form_data(base, dataset, **extra):
    data = {"name": "from-admin", "base_model_path": base, "dataset": dataset.pk, "loss": "mnrl",
            "matryoshka_dims": "[]", "epochs": 1, "batch_size": 8, "mini_batch_size": 4, "learning_rate": 3e-5,
            "warmup_ratio": 0.1, "max_length": 64, "seed": 42, "freeze_embeddings": "on", "frozen_layers": 0, "tuned_share": 1.0, "lora_rank": 16,
            "early_stopping_patience": 2, "eval_every_steps": 50, "negative_margin": 0.05}
    return {**data, **extra}


def test_the_admin_creates_a_job_and_shows_a_refusal_on_the_form(admin_client, tiny_model_path, _var_in_tmp):
    dataset = make_dataset()
    response = admin_client.post("/admin/finetune/finetunejob/add/", form_data(tiny_model_path, dataset))
    assert response.status_code == 302, [(k, v) for k, v in response.context["adminform"].form.errors.items()]
    job = FineTuneJob.objects.get(name="from-admin")
    assert job.status == JobStatus.QUEUED and job.created_by.username == "root" and _var_in_tmp == [job.pk]

    again = admin_client.post("/admin/finetune/finetunejob/add/", form_data(tiny_model_path, dataset, name="second"))
    assert again.status_code == 200
    assert "already running: from-admin" in again.content.decode()
    assert FineTuneJob.objects.count() == 1

    bad = admin_client.post("/admin/finetune/finetunejob/add/", form_data(tiny_model_path, dataset, name="third",
                                                                          batch_size=1))
    assert bad.status_code == 200 and "batch_size must be between" in bad.content.decode()


def test_the_admin_shows_live_progress_and_the_loss_curve(admin_client, tiny_model_path):
    job = jobs.create_job(name="live", dataset=make_dataset(), base_model_path=tiny_model_path)
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=JobStatus.TRAINING, progress={"phase": "training", "step": 7, "total_steps": 20, "epoch": 0.7,
                                             "loss": 1.25, "learning_rate": 2e-5, "eta_seconds": 42,
                                             "seconds_per_step": 3.0},
        loss_curve=[[1, 2.0, 1e-5], [2, 1.8, 2e-5], [7, 1.25, 2e-5]], eval_curve=[[5, 0.41]])
    listing = admin_client.get("/admin/finetune/finetunejob/").content.decode()
    assert f'hx-get="/admin/finetune/finetunejob/{job.pk}/live/?compact=1"' in listing
    page = admin_client.get(f"/admin/finetune/finetunejob/{job.pk}/change/").content.decode()
    assert f'hx-get="/admin/finetune/finetunejob/{job.pk}/live/"' in page
    live = admin_client.get(f"/admin/finetune/finetunejob/{job.pk}/live/").content.decode()
    assert 'hx-trigger="every 2s"' in live and "7/20" in live and "<svg" in live and "<polyline" in live
    assert "42" in live  # the ETA
    compact = admin_client.get(f"/admin/finetune/finetunejob/{job.pk}/live/?compact=1").content.decode()
    assert "7/20" in compact and 'hx-trigger="every 3s"' in compact
    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    ended = admin_client.get(f"/admin/finetune/finetunejob/{job.pk}/live/").content.decode()
    assert "hx-trigger" not in ended, "an ended job's fragment still polls"


def test_admin_actions_cancel_and_register(admin_client, tiny_model_path):
    job = jobs.create_job(name="act", dataset=make_dataset(), base_model_path=tiny_model_path)
    response = admin_client.post("/admin/finetune/finetunejob/", {"action": "register_packages",
                                                                   "_selected_action": [job.pk]}, follow=True)
    assert "Only a succeeded job" in response.content.decode()
    admin_client.post("/admin/finetune/finetunejob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert FineTuneJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_staff_without_the_model_permission_cannot_open_the_admin(tiny_model_path):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # the messages checked below are the English ones
    client.force_login(f.user("clerk", is_staff=True))
    assert client.get("/admin/finetune/finetunejob/").status_code == 403


@pytest.fixture
def api():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # the messages checked below are the English ones
    client.force_login(trainer("operator"))
    return client


def test_the_api_creates_lists_shows_and_cancels(api, tiny_model_path, _var_in_tmp):
    dataset = make_dataset()
    body = {"name": "from-api", "base_model_path": tiny_model_path, "dataset": dataset.name, "epochs": 2,
            "batch_size": 8, "loss": "cached_mnrl", "mini_batch_size": 4, "matryoshka_dims": [32, 16]}
    created = api.post("/api/v1/finetune/jobs/", json.dumps(body), content_type="application/json")
    assert created.status_code == 201, created.content
    job = created.json()
    assert job["status"] == "queued" and job["loss"] == "cached_mnrl" and job["matryoshka_dims"] == [32, 16]
    assert _var_in_tmp == [job["id"]]

    refused = api.post("/api/v1/finetune/jobs/", json.dumps({**body, "name": "second"}),
                       content_type="application/json")
    assert refused.status_code == 400 and "already running" in refused.json()["base_space"][0]
    bad = api.post("/api/v1/finetune/jobs/", json.dumps({**body, "name": "third", "dataset": "nope"}),
                   content_type="application/json")
    assert bad.status_code == 400 and "dataset" in bad.json()

    FineTuneJob.objects.filter(pk=job["id"]).update(
        status="training", progress={"step": 3, "total_steps": 10, "loss": 0.9}, loss_curve=[[1, 1.2, 1e-5]],
        validation={"errors": [], "warnings": [{"code": "dup", "message": "2 duplicates",
                                                "examples": ["a secret text"]}]})
    listed = api.get("/api/v1/finetune/jobs/").json()
    assert [j["name"] for j in listed["results"]] == ["from-api"] and "loss_curve" not in listed["results"][0]
    detail = api.get(f"/api/v1/finetune/jobs/{job['id']}/").json()
    assert detail["progress"]["step"] == 3 and detail["loss_curve"] == [[1, 1.2, 1e-5]]
    assert detail["validation"]["warnings"] == [{"code": "dup", "message": "2 duplicates"}], \
        "examples quote pair texts: superusers only"

    cancelled = api.post(f"/api/v1/finetune/jobs/{job['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/finetune/jobs/{job['id']}/cancel/").status_code == 409
    assert api.post(f"/api/v1/finetune/jobs/{job['id']}/register/").status_code == 400


def test_the_api_registers_a_succeeded_job_s_package_as_a_ready_space(api, tiny_model_path):
    import shutil

    job = jobs.create_job(name="done", dataset=make_dataset(), base_model_path=tiny_model_path)
    shutil.copytree(tiny_model_path, jobs.package_dir("done"))
    FineTuneJob.objects.filter(pk=job.pk).update(status="succeeded", package_dir=str(jobs.package_dir("done")))
    response = api.post(f"/api/v1/finetune/jobs/{job.pk}/register/", json.dumps({"space_name": "tuned"}),
                        content_type="application/json")
    assert response.status_code == 201 and response.json()["status"] == "ready"
    assert FineTuneJob.objects.get(pk=job.pk).registered_space.name == "tuned"


def test_the_command_runs_a_job_here_and_reports_registers_and_lists(tiny_model_path):
    dataset = make_dataset()
    out = io.StringIO()
    call_command("finetune", "run", "cli", "--dataset", dataset.name, "--base-model", tiny_model_path,
                 "--epochs", "0.5", "--batch-size", "4", "--sync", stdout=out)
    text = out.getvalue()
    assert "cli: succeeded" in text and "heldout_mrr@10: base" in text and "package:" in text
    out = io.StringIO()
    call_command("finetune", "register", "cli", stdout=out)
    assert "registered as space cli (status ready, not active)" in out.getvalue()
    out = io.StringIO()
    call_command("finetune", "list", stdout=out)
    assert "cli" in out.getvalue() and "succeeded" in out.getvalue()
    with pytest.raises(CommandError, match="has ended"):
        call_command("finetune", "cancel", "cli")
    with pytest.raises(CommandError, match="already running"):
        jobs.create_job(name="blocker", dataset=dataset, base_model_path=tiny_model_path)
        call_command("finetune", "run", "other", "--dataset", dataset.name, "--base-model", tiny_model_path)


def test_a_base_space_can_be_chosen_instead_of_a_folder_and_running_jobs_are_not_deleted(admin_client,
                                                                                          tiny_model_path):
    from search.services import spaces

    space = spaces.create_space("tiny", tiny_model_path)
    dataset = make_dataset()
    response = admin_client.post("/admin/finetune/finetunejob/add/",
                                 form_data("", dataset, base_space=space.pk, name="on-space"))
    assert response.status_code == 302
    job = FineTuneJob.objects.get(name="on-space")
    assert job.base_space == space and job.base_model_path == str(Path(tiny_model_path).resolve())
    admin_client.post("/admin/finetune/finetunejob/", {"action": "delete_selected", "_selected_action": [job.pk],
                                                       "post": "yes"})
    assert FineTuneJob.objects.filter(pk=job.pk).exists(), "a running job was deleted"
    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    admin_client.post("/admin/finetune/finetunejob/", {"action": "delete_selected", "_selected_action": [job.pk],
                                                       "post": "yes"})
    assert not FineTuneJob.objects.filter(pk=job.pk).exists()


def test_staff_without_the_job_permissions_are_refused_by_the_api(tiny_model_path):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(f.user("clerk", is_staff=True))
    response = client.get("/api/v1/finetune/jobs/")
    assert response.status_code == 403 and "permissions" in response.json()["detail"]
