"""A real fine-tuning run on a tiny model built on the fly: the package it writes
loads offline on its own, its numbers are the evaluation runner's, a resumed run
repeats no step and loses none, and the job's options reach the training."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from finetune.models import FineTuneJob, JobStatus
from finetune.services import batches, checkpoints, jobs, model_setup, pipeline, training
from search.evaluation import runner
from search.models import SpaceStatus
from search.services import embedding, encoders, spaces
from tests.finetune_job_helpers import guard_set, make_dataset, tiny_model_path  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.FINETUNE_PACKAGE_DIR = tmp_path / "var" / "models"
    settings.FINETUNE_PROGRESS_SECONDS = 0
    yield
    encoders.forget_models()


def test_a_training_run_writes_a_loadable_package_with_the_runner_s_numbers(tiny_model_path, guard_set, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    base = tmp_path / "base-copy"  # removed before the package is loaded: it must not need its base
    shutil.copytree(tiny_model_path, base)
    dataset = make_dataset()
    job = jobs.create_job(name="tiny-run", dataset=dataset, base_model_path=str(base), guard_sets=[guard_set],
                          queue=False, epochs=2, batch_size=4, learning_rate=5e-3, eval_every_steps=4,
                          early_stopping_patience=0, freeze_embeddings=False, max_length=32)
    assert pipeline.run_job(job.pk) == "succeeded", FineTuneJob.objects.get(pk=job.pk).error
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.finished_at and job.attempts == 1
    assert [e["status"] for e in job.history] == ["queued", "validating", "evaluating", "training", "evaluating",
                                                  "packaging", "succeeded"]
    package = Path(job.package_dir)
    assert package == Path(jobs.package_dir("tiny-run"))
    for name in ("modules.json", "training_args.json", "deployment_guide.md", "evaluation_results/performance_metrics.json",
                 "evaluation_results/comparison_report.html", "evaluation_results/comparison_report.pdf"):
        assert (package / name).is_file(), name
    assert not list(package.parent.glob(".tiny-run.partial-*")), "a partial package was left behind"
    assert not jobs.work_dir("tiny-run").exists(), "the work folder (checkpoints) was left behind"

    # training_args.json says how it was made
    args = json.loads((package / "training_args.json").read_text())
    assert args["base_model"] == str(base.resolve()) and args["seed"] == 42
    assert args["dataset"] == {"name": "pairs", "content_hash": "hash-pairs", "counts": dataset.counts,
                               "access_levels": []}
    assert args["hyper_parameters"]["learning_rate"] == 5e-3 and args["hyper_parameters"]["batch_size"] == 4
    assert args["steps"] == args["total_steps"] == 12 and args["stopped_early"] is False
    assert args["versions"]["sentence-transformers"] and args["versions"]["torch"]
    assert args["hardware"]["device"] == "cpu" and args["wall_time_seconds"] > 0

    shutil.rmtree(base)
    tuned = SentenceTransformer(str(package), device="cpu", local_files_only=True)
    assert tuned.max_seq_length == 64, "the package keeps the base's max length (training used 32)"

    # held-out numbers = sentence-transformers' evaluator on the same split
    perf = json.loads((package / "evaluation_results" / "performance_metrics.json").read_text())
    data = batches.load_eval(dataset)
    st = InformationRetrievalEvaluator(data.queries, data.corpus, data.relevant, mrr_at_k=[10], ndcg_at_k=[10],
                                       accuracy_at_k=[1, 10], name="x", write_csv=False,
                                       show_progress_bar=False)(tuned)
    assert perf["heldout"]["fine_tuned"]["MRR@10"] == pytest.approx(st["x_cosine_mrr@10"], abs=1e-6)
    assert perf["heldout"]["fine_tuned"]["nDCG@10"] == pytest.approx(st["x_cosine_ndcg@10"], abs=1e-6)
    assert perf["heldout"]["queries"] == 4 * 3 and perf["heldout"]["passages"] == 4
    for key in ("MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10", "Recall@100"):
        assert key in perf["heldout"]["base"] and key in perf["guard_sets"]["guard"]["fine_tuned"]

    # guard-set numbers = the runner's, for the registered package and for the base model
    space = jobs.register_package(job)
    assert space.status == SpaceStatus.READY and spaces.active_space() is None
    assert FineTuneJob.objects.get(pk=job.pk).registered_space == space
    embedding.backfill(space)
    run = runner.evaluate(guard_set, space, "vector", depth=100, measure=False)
    assert perf["guard_sets"]["guard"]["fine_tuned"] == pytest.approx(run.metrics)
    assert perf["guard_sets"]["guard"]["queries"] == run.query_count == 3

    # The base is evaluated as step 0. This tiny random model only got worse on the
    # held-out split, so the package holds the base's weights and says so.
    assert len(job.loss_curve) == 12 and [s for s, *_ in job.loss_curve] == list(range(1, 13))
    assert [s for s, _ in job.eval_curve] == [0, 4, 8, 12]
    assert job.eval_curve[0][1] == pytest.approx(perf["heldout"]["base"]["MRR@10"], abs=1e-6)
    assert max(v for _, v in job.eval_curve[1:]) < job.eval_curve[0][1]
    training_metrics = job.metrics["training"]
    assert training_metrics["improved_on_base"] is False and training_metrics["best_step"] == 0
    assert training_metrics["restored_best"] is True
    before = SentenceTransformer(tiny_model_path, device="cpu").encode(["nghỉ phép năm"])
    assert np.allclose(before, tuned.encode(["nghỉ phép năm"]), atol=1e-5)
    assert perf["heldout"]["fine_tuned"]["MRR@10"] == pytest.approx(perf["heldout"]["base"]["MRR@10"], abs=1e-6)
    assert training_metrics["grouped_by"] in ("query", "passage", "sum")
    assert training_metrics["padding_efficiency"] >= training_metrics["padding_efficiency_random"]
    assert training_metrics["omp_wait_policy"] == "PASSIVE" and training_metrics["torch_threads"] >= 1

    # the report is self-contained and shows the numbers
    html = (package / "evaluation_results" / "comparison_report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report fetches something"
    assert f"{perf['heldout']['fine_tuned']['MRR@10']:.4f}" in html and "data:image/png;base64," in html
    assert (package / "evaluation_results" / "comparison_report.pdf").read_bytes().startswith(b"%PDF")
    assert "manage.py finetune register tiny-run" in (package / "deployment_guide.md").read_text()


def test_the_base_model_numbers_are_the_runner_s_too(tiny_model_path, guard_set):
    job = jobs.create_job(name="base-numbers", dataset=make_dataset(), base_model_path=tiny_model_path,
                          guard_sets=[guard_set], queue=False, epochs=0.5, batch_size=4)
    assert pipeline.run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    space = spaces.create_space("base", tiny_model_path)
    embedding.backfill(space)
    run = runner.evaluate(guard_set, space, "vector", depth=100, measure=False)
    assert job.metrics["base"]["guard"]["guard"]["metrics"] == pytest.approx(run.metrics)
    assert not spaces.EmbeddingSpace.objects.filter(name__startswith=f"finetune-{job.pk}-").exists(), \
        "a temporary space was left behind"


class Killed(Exception):
    """Stands for the worker's death between two steps."""


class StopAt:
    """A reporter that records nothing and 'dies' before step `at`."""

    def __init__(self, at: int | None = None):
        self.at, self.step = at, 0

    def check(self):
        self.step += 1
        if self.at is not None and self.step >= self.at:
            raise Killed

    def training(self, *, step, **kw):
        self.step = step

    def phase(self, *a, **kw):
        pass


def _train(job, work, reporter):
    model, names, _ = model_setup.load_for_training(job, "cpu")
    pairs = batches.load_train(job.dataset)
    plan = batches.plan(pairs, job.batch_size, job.seed, job.epochs)
    return training.train(job, model, names, pairs, plan, batches.load_eval(job.dataset), work, reporter), model


@pytest.mark.parametrize("options", [
    {},
    {"loss": "cached_mnrl", "mini_batch_size": 2, "matryoshka_dims": [32, 16]},
])
def test_a_resumed_run_repeats_no_step_and_continues_exactly(tiny_model_path, tmp_path, settings, options):
    """Killed after step 7 with its last checkpoint at step 6 (an evaluation): the
    successor starts at 7, and every loss equals the uninterrupted run's."""
    settings.FINETUNE_CHECKPOINT_SECONDS = 3600  # checkpoints at evaluations only
    job = jobs.create_job(name="resume", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False,
                          epochs=2, batch_size=4, learning_rate=5e-3, eval_every_steps=3, early_stopping_patience=0,
                          freeze_embeddings=False, **options)
    whole, whole_model = _train(job, tmp_path / "whole", StopAt())

    with pytest.raises(Killed):
        _train(job, tmp_path / "killed", StopAt(at=8))
    assert checkpoints.load(tmp_path / "killed")["step"] == 6
    resumed, resumed_model = _train(job, tmp_path / "killed", StopAt())
    assert resumed.resumed_from == 6
    assert [s for s, *_ in resumed.loss_curve] == list(range(1, 13)), "a step was repeated or lost"
    assert np.allclose([x[1] for x in resumed.loss_curve], [x[1] for x in whole.loss_curve], atol=1e-5)
    assert [s for s, _ in resumed.eval_curve] == [s for s, _ in whole.eval_curve] == [0, 3, 6, 9, 12]
    assert resumed.best_step == whole.best_step
    assert [v for _, v in resumed.eval_curve] == pytest.approx([v for _, v in whole.eval_curve], abs=1e-5)
    a = whole_model.encode(["thử nghiệm"], convert_to_numpy=True)
    b = resumed_model.encode(["thử nghiệm"], convert_to_numpy=True)
    assert np.allclose(a, b, atol=1e-5)


def test_early_stopping_keeps_the_best_evaluation_s_weights(tiny_model_path, tmp_path, settings):
    job = jobs.create_job(name="early", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False,
                          epochs=6, batch_size=4, learning_rate=0.05, eval_every_steps=2, early_stopping_patience=1,
                          freeze_embeddings=False)
    result, model = _train(job, tmp_path / "early", StopAt())
    assert result.stopped_early and result.steps_done < result.total_steps
    scores = [s for _, s in result.eval_curve]
    assert scores[-1] <= max(scores[:-1]) and result.best_score == pytest.approx(max(scores), abs=1e-6)
    from finetune.services import heldout

    best_step = max(result.eval_curve, key=lambda e: (e[1], -e[0]))[0]
    assert result.restored_best and result.best_step == best_step
    assert heldout.evaluator_mrr(heldout.early_stopping_evaluator(model, batches.load_eval(job.dataset)),
                                     model) == pytest.approx(result.best_score, abs=1e-6)


def test_frozen_embeddings_and_lora_train_only_what_they_say(tiny_model_path):
    job = jobs.create_job(name="frozen", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False)
    model, names, _ = model_setup.load_for_training(job, "cpu")
    assert not any("word_embeddings" in n for n in names) and any("encoder" in n for n in names)
    counts = model_setup.parameter_counts(model)
    assert counts["trainable_parameters"] < counts["parameters"] - 30000 * 32
    if not model_setup.peft_available():
        pytest.skip("peft is not installed")
    FineTuneJob.objects.filter(pk=job.pk).update(lora=True, lora_rank=4)
    job.refresh_from_db()
    model, names, _ = model_setup.load_for_training(job, "cpu")
    assert names and all("lora_" in n for n in names)
    model_setup.merge_lora(model)
    assert not any("lora_" in n for n, _ in model.named_parameters())


def test_a_lora_job_packages_a_plain_merged_model(tiny_model_path, tmp_path):
    pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    # No eval split: nothing to restore, so the package holds what the adapters learned.
    job = jobs.create_job(name="lora", dataset=make_dataset(eval_topics=0), base_model_path=tiny_model_path,
                          queue=False, epochs=1, batch_size=4, learning_rate=1e-2, lora=True, lora_rank=4)
    assert pipeline.run_job(job.pk) == "succeeded", FineTuneJob.objects.get(pk=job.pk).error
    job.refresh_from_db()
    package = Path(job.package_dir)
    assert not list(package.rglob("adapter_config.json")), "adapters left unmerged"
    tuned = SentenceTransformer(str(package), device="cpu", local_files_only=True)
    before = SentenceTransformer(tiny_model_path, device="cpu").encode(["công tác phí"])
    assert not np.allclose(before, tuned.encode(["công tác phí"]), atol=1e-5), "the adapters changed nothing"
    assert job.metrics["training"]["trainable_parameters"] < 20000


def test_a_tuned_share_packages_the_weights_that_share_of_the_way_from_the_base(tiny_model_path):
    """WiSE-FT: the same run (same seed) with tuned_share 0.5 packages, weight by
    weight, the midpoint of the base and the fully fine-tuned package."""
    from sentence_transformers import SentenceTransformer

    packages = {}
    for share in (1.0, 0.5):
        name = f"share-{int(share * 100)}"
        # No eval split: nothing restored, the weights are what the steps made.
        job = jobs.create_job(name=name, dataset=make_dataset(name, eval_topics=0), base_model_path=tiny_model_path,
                              queue=False, epochs=1, batch_size=4, learning_rate=1e-2, freeze_embeddings=False,
                              tuned_share=share)
        assert pipeline.run_job(job.pk) == "succeeded", FineTuneJob.objects.get(pk=job.pk).error
        job.refresh_from_db()
        packages[share] = Path(job.package_dir)
        args = json.loads((packages[share] / "training_args.json").read_text())
        assert args["hyper_parameters"]["tuned_share"] == share
        assert (job.metrics["training"]["interpolated_tensors"] > 0) == (share < 1)

    def weights(path):
        return SentenceTransformer(str(path), device="cpu", local_files_only=True).state_dict()

    base, full, half = weights(tiny_model_path), weights(packages[1.0]), weights(packages[0.5])
    moved = [n for n in base if base[n].is_floating_point() and not np.allclose(base[n], full[n], atol=1e-7)]
    assert moved, "the run trained nothing"
    for n in base:
        if base[n].is_floating_point():
            assert np.allclose(half[n], (base[n] + full[n]) / 2, atol=1e-5), n


def test_a_tuned_share_outside_its_range_is_refused(tiny_model_path):
    dataset = make_dataset()
    for share in (0, 1.5, float("nan")):
        with pytest.raises(jobs.JobError) as refused:
            jobs.create_job(name="bad-share", dataset=dataset, base_model_path=tiny_model_path, queue=False,
                            tuned_share=share)
        assert refused.value.field == "tuned_share"


def test_validation_errors_stop_the_job_with_the_message_and_warnings_are_kept(tiny_model_path, monkeypatch):
    from finetune.services import validation

    job = jobs.create_job(name="invalid", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False)
    monkeypatch.setattr(validation, "validate_dataset", lambda *a, **k: {
        "errors": [{"code": "leakage", "message": "3 eval queries are also train queries.", "examples": []}],
        "warnings": [{"code": "language", "message": "5% English.", "examples": []}], "stats": {}})
    assert pipeline.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "3 eval queries are also train queries." in job.error
    assert job.validation["warnings"][0]["code"] == "language" and job.metrics.get("training") is None
    assert not jobs.work_dir("invalid").exists()


def test_a_bug_fails_the_job_with_the_reason_and_leaves_nothing_behind(tiny_model_path, guard_set, monkeypatch):
    job = jobs.create_job(name="broken", dataset=make_dataset(), base_model_path=tiny_model_path, queue=False,
                          guard_sets=[guard_set], epochs=0.5, batch_size=4)

    def broken(*args, **kwargs):
        raise RuntimeError("the package writer broke")

    monkeypatch.setattr("finetune.services.package.write_package", broken)
    assert pipeline.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error == "RuntimeError: the package writer broke"
    assert not jobs.package_dir("broken").exists() and not jobs.work_dir("broken").exists()
    assert not spaces.EmbeddingSpace.objects.exists()
    # the base is free again
    jobs.create_job(name="again", dataset=job.dataset, base_model_path=tiny_model_path, queue=False)
