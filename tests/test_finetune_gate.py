"""The base is the score to beat: it is evaluated as step 0, a run that never
beats it ships the base's weights, and a package worse than its base beyond the
margin is registered only when forced with a reason (service, API, admin,
command). Also: the CPU speed levers the job's loop uses (length-grouped
batches, fused AdamW, bf16) keep what the loss needs."""
from __future__ import annotations

import json
import shutil
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from finetune.models import FineTuneJob, JobStatus
from finetune.services import batches, cpu_speed, jobs, model_setup, training
from search.services import encoders
from tests import factories as f
from tests.finetune_job_helpers import make_dataset, tiny_model_path, trainer  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.FINETUNE_PACKAGE_DIR = tmp_path / "var" / "models"
    settings.FINETUNE_PROGRESS_SECONDS = 0
    settings.FINETUNE_CHECKPOINT_SECONDS = 3600
    from django.utils import translation

    with translation.override("en"):  # the refusals below are matched in English
        yield
    encoders.forget_models()


class Quiet:
    def check(self):
        pass

    def training(self, **kw):
        pass

    def phase(self, *a, **kw):
        pass


def _run(job, work, scores, monkeypatch):
    """Train with the held-out evaluation replaced by a script of scores (step 0 first)."""
    script = iter(scores)
    monkeypatch.setattr(training, "evaluator_mrr", lambda evaluator, model: next(script))
    model, names, _ = model_setup.load_for_training(job, "cpu")
    pairs = batches.load_train(job.dataset)
    plan = batches.plan(pairs, job.batch_size, job.seed, job.epochs)
    return training.train(job, model, names, pairs, plan, batches.load_eval(job.dataset), work, Quiet()), model


def _encode(model):
    return model.encode(["nghỉ phép năm", "quy trình tuyển dụng"], convert_to_numpy=True)


def test_a_run_that_beats_the_base_keeps_its_best_weights(tiny_model_path, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    job = jobs.create_job(name="better", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False,
                          epochs=2, batch_size=4, learning_rate=5e-3, eval_every_steps=4, early_stopping_patience=0,
                          freeze_embeddings=False)
    result, model = _run(job, tmp_path / "w", [0.5, 0.7, 0.6, 0.65], monkeypatch)
    assert [s for s, _ in result.eval_curve] == [0, 4, 8, 12]
    assert result.best_step == 4 and result.improved is True and result.restored_best
    base = SentenceTransformer(tiny_model_path, device="cpu")
    assert not np.allclose(_encode(base), _encode(model), atol=1e-4), "the trained weights were not kept"


def test_a_run_that_never_beats_the_base_ends_with_the_base_s_weights(tiny_model_path, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    job = jobs.create_job(name="worse", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False,
                          epochs=2, batch_size=4, learning_rate=5e-3, eval_every_steps=4, early_stopping_patience=2,
                          freeze_embeddings=False)
    result, model = _run(job, tmp_path / "w", [0.8, 0.7, 0.6, 0.9], monkeypatch)
    assert result.stopped_early and result.steps_done == 8, "two evaluations without beating the base stop it"
    assert result.best_step == 0 and result.improved is False and result.restored_best
    base = SentenceTransformer(tiny_model_path, device="cpu")
    assert np.allclose(_encode(base), _encode(model), atol=1e-5)


# ------------------------------------------------------------ the registration gate

def _succeeded(name, tiny_model_path, summary):
    job = jobs.create_job(name=name, dataset=make_dataset(), base_model_path=tiny_model_path, queue=False)
    shutil.copytree(tiny_model_path, jobs.package_dir(name))
    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, package_dir=str(jobs.package_dir(name)),
                                                 metrics={"summary": summary})
    job.refresh_from_db()
    return job


WORSE = {"heldout_mrr@10": [0.40, 0.52], "samples-guard_mrr@10": [0.565, 0.449]}


def test_a_model_worse_than_its_base_is_refused_unless_forced_with_a_reason(tiny_model_path, settings):
    settings.FINETUNE_REGRESSION_MARGIN = 0.01
    job = _succeeded("worse-pkg", tiny_model_path, WORSE)
    assert [w["set"] for w in jobs.regressions(job)] == ["samples-guard"]
    with pytest.raises(jobs.JobError, match=r"worse than its base by more than 1% on: samples-guard MRR@10 "
                                            r"0\.565 → 0\.449 \(-20\.5%\)") as refused:
        jobs.register_package(job)
    assert refused.value.field == "force"
    with pytest.raises(jobs.JobError, match="needs a reason"):
        jobs.register_package(job, force=True, reason="  ")
    assert not FineTuneJob.objects.get(pk=job.pk).registered_space_id
    space = jobs.register_package(job, force=True, reason="the guard set is out of date",
                                  by=f.user("boss", is_staff=True))
    forced = space.model_card["registered_despite_regression"]
    assert forced["reason"] == "the guard set is out of date" and forced["by"] == "boss"
    assert forced["regressions"][0]["set"] == "samples-guard"
    last = FineTuneJob.objects.get(pk=job.pk).history[-1]
    assert "the guard set is out of date" in last["detail"] and "boss" in last["detail"]


def test_within_the_margin_is_not_a_regression(tiny_model_path, settings):
    settings.FINETUNE_REGRESSION_MARGIN = 0.01
    job = _succeeded("close", tiny_model_path, {"heldout_mrr@10": [0.5, 0.6], "guard_mrr@10": [0.5650, 0.5600]})
    assert jobs.regressions(job) == []
    assert "registered_despite_regression" not in jobs.register_package(job).model_card
    settings.FINETUNE_REGRESSION_MARGIN = 0.005
    assert [w["set"] for w in jobs.regressions(job)] == ["guard"]


def test_the_api_refuses_then_registers_with_force_and_reason(tiny_model_path):
    job = _succeeded("api-worse", tiny_model_path, WORSE)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(trainer("operator"))
    url = f"/api/v1/finetune/jobs/{job.pk}/register/"
    refused = client.post(url, json.dumps({}), content_type="application/json")
    assert refused.status_code == 400 and "samples-guard" in refused.json()["force"][0]
    no_reason = client.post(url, json.dumps({"force": True}), content_type="application/json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    done = client.post(url, json.dumps({"force": True, "reason": "A/B will decide"}), content_type="application/json")
    assert done.status_code == 201, done.content
    assert FineTuneJob.objects.get(pk=job.pk).registered_space.model_card[
        "registered_despite_regression"]["by"] == "operator"


def test_the_admin_asks_for_a_reason_before_registering_a_worse_model(admin_client, tiny_model_path):
    job = _succeeded("admin-worse", tiny_model_path, WORSE)
    page = admin_client.post("/admin/finetune/finetunejob/", {"action": "register_packages",
                                                               "_selected_action": [job.pk]})
    text = page.content.decode()
    assert page.status_code == 200 and "samples-guard" in text and 'name="reason"' in text
    assert not FineTuneJob.objects.get(pk=job.pk).registered_space_id
    admin_client.post("/admin/finetune/finetunejob/", {"action": "register_packages", "_selected_action": [job.pk],
                                                       "confirm": "force", "reason": ""})
    assert not FineTuneJob.objects.get(pk=job.pk).registered_space_id, "registered without a reason"
    admin_client.post("/admin/finetune/finetunejob/", {"action": "register_packages", "_selected_action": [job.pk],
                                                       "confirm": "force", "reason": "trial on 10%"})
    space = FineTuneJob.objects.get(pk=job.pk).registered_space
    assert space.model_card["registered_despite_regression"]["reason"] == "trial on 10%"


def test_the_command_refuses_then_registers_with_force_and_reason(tiny_model_path):
    _succeeded("cli-worse", tiny_model_path, WORSE)
    with pytest.raises(CommandError, match="worse than its base"):
        call_command("finetune", "register", "cli-worse", stdout=StringIO())
    out = StringIO()
    call_command("finetune", "register", "cli-worse", "--force", "--reason", "known gap", stdout=out)
    assert "registered as space cli-worse" in out.getvalue()


# ------------------------------------------------------------ speed levers in the loop

def test_length_grouped_plans_pad_less_and_keep_every_batch_free_of_duplicates(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_model_path, device="cpu")
    pairs = [batches.TrainPair(f"câu hỏi {i} " + "dài " * (i % 13), f"đoạn {i} " + "văn " * ((7 * i) % 29))
             for i in range(95)]  # with the repeat below: 96 = 12 batches of 8
    pairs += [batches.TrainPair("câu hỏi 3 " + "dài " * 3, "một đoạn khác")]  # a repeated query
    grouping = batches.grouping_lengths(model.tokenizer, pairs, model_setup.prompts_of(model), 64, 8, seed=1)
    assert grouping.padding_efficiency > grouping.padding_efficiency_random
    plan = batches.plan(pairs, 8, 1, 2, grouping.lengths)
    assert plan.total_steps == 2 * plan.steps_per_epoch
    assert plan.batches == batches.plan(pairs, 8, 1, 2, grouping.lengths).batches, "the plan must be reproducible"
    for epoch in (0, 1):
        seen = [i for b, e in zip(plan.batches, plan.epochs) if e == epoch for i in b]
        assert sorted(seen) == list(range(len(pairs)))
    for batch in plan.batches:
        assert len({pairs[i].query for i in batch}) == len(batch)
        assert len({pairs[i].positive for i in batch}) == len(batch)


def test_the_optimizer_is_fused_and_bf16_keeps_the_loss_in_float32(tiny_model_path):
    import torch
    from sentence_transformers import losses

    job = jobs.create_job(name="speed", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False)
    model, names, _ = model_setup.load_for_training(job, "cpu")
    params = [p for n, p in model.named_parameters() if n in set(names)]
    assert training._optimizer(params, 1e-4).defaults.get("fused") is True
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    pairs = batches.load_train(job.dataset)[:4]
    features = [training._features(model, column, model.device)
                for column in training._columns(pairs, list(range(4)), model_setup.prompts_of(model))]
    model.eval()
    plain = training._forward_loss(model, loss_fn, features, bf16=False)
    low = training._forward_loss(model, loss_fn, features, bf16=True)
    assert low.dtype == torch.float32
    if cpu_speed.bf16_supported():
        assert float(low) == pytest.approx(float(plain), rel=0.05)
    else:
        assert float(low) == pytest.approx(float(plain), abs=1e-6)


def test_frozen_lower_layers_train_only_the_layers_above(tiny_model_path):
    job = jobs.create_job(name="frozen-layers", dataset=make_dataset(), base_model_path=tiny_model_path,
                          queue=False, frozen_layers=1, freeze_embeddings=False)
    model, names, _ = model_setup.load_for_training(job, "cpu")
    assert names and all(".layer.1." in n or "pooler" in n for n in names), names
    assert not any("embeddings" in n or ".layer.0." in n for n in names)
    with pytest.raises(jobs.JobError, match="has 2 layers") as refused:
        jobs.create_job(name="all-frozen", dataset=make_dataset("other"), base_model_path=tiny_model_path,
                        queue=False, frozen_layers=2)
    assert refused.value.field == "frozen_layers"
