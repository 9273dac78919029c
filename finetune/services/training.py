"""The training run of a job: sentence-transformers model and losses
(MultipleNegativesRankingLoss, its cached variant, optionally inside
MatryoshkaLoss), AdamW with linear warmup and decay, gradient clipping at 1.0,
early stopping on the eval split's MRR@10 (the base is evaluated as step 0,
so a run that never beats it ends with the base's weights and says so),
checkpoints and live progress. On CPU: fused AdamW and, where the CPU has
native bfloat16, the forward pass in bf16 (docs/decisions.md, speed on CPU).

A loop of our own rather than SentenceTransformerTrainer: the trainer needs the
`datasets` package (pyarrow, pandas: ~100 MB more in every installation) and
its data order on resume is the data loader's. Here the batch plan is a pure
function of the seed (finetune/services/batches.py), a cancel is checked
before every step, and a checkpoint holds exactly what a successor needs
(finetune/services/checkpoints.py): a resumed run repeats no step and skips
none, with the losses an uninterrupted run would have had (tested).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from finetune.services import checkpoints, cpu_speed
from finetune.services.batches import EvalData, Plan, TrainPair
from finetune.services.heldout import early_stopping_evaluator, evaluator_mrr
from finetune.services.model_setup import (build_loss, load_trainable_state, prompts_of, trainable_state)

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.01


@dataclass
class TrainResult:
    total_steps: int
    steps_done: int = 0
    stopped_early: bool = False
    resumed_from: int = 0
    best_step: int | None = None
    best_score: float | None = None
    restored_best: bool = False
    improved: bool | None = None  # None: no eval split, so nothing to compare with the base
    bf16: bool = False
    train_seconds: float = 0.0
    loss_curve: list = field(default_factory=list)
    eval_curve: list = field(default_factory=list)


def _features(model, texts: list[str], device):
    features = model.preprocess(texts)
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}


def _forward_loss(model, loss_fn, features, bf16: bool):
    """The loss of one batch. In bf16 only the encoder runs in bfloat16: the
    similarities, their scale and the softmax of MNRL stay in float32."""
    from sentence_transformers import losses

    if not bf16:
        return loss_fn(features, None)
    with cpu_speed.cpu_autocast(True):
        if type(loss_fn) is not losses.MultipleNegativesRankingLoss:  # cached / Matryoshka: their own passes
            return loss_fn(features, None).float()
        embeddings = [model(f)["sentence_embedding"] for f in features]
    return loss_fn.compute_loss_from_embeddings([e.float() for e in embeddings], None)


def _optimizer(params, lr: float):
    import torch

    try:  # one fused kernel for all tensors instead of a loop over them (CPU and CUDA)
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)


def _columns(pairs: list[TrainPair], batch: list[int], prompts) -> list[list[str]]:
    chosen = [pairs[i] for i in batch]
    columns = [[prompts.query + p.query for p in chosen], [prompts.passage + p.positive for p in chosen]]
    if chosen[0].negative:  # a batch is all with or all without a negative (batches.py)
        columns.append([prompts.passage + p.negative for p in chosen])
    return columns


def train(job, model, names: list[str], pairs: list[TrainPair], plan: Plan, eval_data: EvalData, work: Path,
          reporter) -> TrainResult:
    import torch
    from transformers import get_linear_schedule_with_warmup

    device = model.device
    total = plan.total_steps
    params = [p for n, p in model.named_parameters() if n in set(names)]
    optimizer = _optimizer(params, job.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(job.warmup_ratio * total), total)
    loss_fn = build_loss(job, model)
    prompts = prompts_of(model)
    evaluator = early_stopping_evaluator(model, eval_data) if eval_data else None
    result = TrainResult(total_steps=total)
    result.bf16 = bool(job.bf16 and device.type == "cpu" and cpu_speed.bf16_supported())
    bad_evals, best_score, best_step, start, spent = 0, None, None, 0, 0.0

    saved = checkpoints.load(work)
    if saved is not None:
        load_trainable_state(model, saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        checkpoints.restore_rng(saved["rng"])
        start, spent = saved["step"], saved["train_seconds"]
        result.loss_curve, result.eval_curve = list(saved["loss_curve"]), list(saved["eval_curve"])
        best_score, best_step, bad_evals = saved["best_score"], saved["best_step"], saved["bad_evals"]
        result.resumed_from = start
        log.info("fine-tuning job %s: resuming at step %d of %d", job.pk, start, total)
    else:
        torch.manual_seed(job.seed)
        if evaluator is not None:  # the base is the score to beat
            model.eval()
            best_score, best_step = evaluator_mrr(evaluator, model), 0
            result.eval_curve.append([0, round(best_score, 6)])
            checkpoints.save_best(work, 0, best_score, trainable_state(model, names))

    def save_checkpoint(step: int) -> None:
        checkpoints.save(work, {"step": step, "weights": trainable_state(model, names),
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "loss_curve": result.loss_curve, "eval_curve": result.eval_curve,
                                "best_score": best_score, "best_step": best_step, "bad_evals": bad_evals,
                                "train_seconds": spent})

    reporter.training(step=start, total=total, epoch=start / max(1, plan.steps_per_epoch), loss=None,
                      lr=scheduler.get_last_lr()[0], loss_curve=result.loss_curve, eval_curve=result.eval_curve,
                      force=True, resumed_from=start)
    last_checkpoint = time.monotonic()
    step = start
    model.train()
    for step in range(start + 1, total + 1):
        reporter.check()
        began = time.monotonic()
        features = [_features(model, column, device) for column in _columns(pairs, plan.batches[step - 1], prompts)]
        loss = _forward_loss(model, loss_fn, features, result.bf16)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        spent += time.monotonic() - began
        lr = scheduler.get_last_lr()[0]
        result.loss_curve.append([step, round(float(loss.detach()), 6), lr])
        stop = False
        evaluated = evaluator is not None and (step % job.eval_every_steps == 0 or step == total)
        if evaluated:
            model.eval()
            score = evaluator_mrr(evaluator, model)
            model.train()
            result.eval_curve.append([step, round(score, 6)])
            if best_score is None or score > best_score:
                best_score, best_step, bad_evals = score, step, 0
                checkpoints.save_best(work, step, score, trainable_state(model, names))
            else:
                bad_evals += 1
                stop = job.early_stopping_patience > 0 and bad_evals >= job.early_stopping_patience
        if evaluated or stop or step == total or \
                time.monotonic() - last_checkpoint >= settings.FINETUNE_CHECKPOINT_SECONDS:
            save_checkpoint(step)
            last_checkpoint = time.monotonic()
        reporter.training(step=step, total=total, epoch=step / max(1, plan.steps_per_epoch),
                          loss=result.loss_curve[-1][1], lr=lr, loss_curve=result.loss_curve,
                          eval_curve=result.eval_curve, force=evaluated or step == total or stop,
                          resumed_from=start, best_step=best_step, best_score=best_score)
        if stop:
            result.stopped_early = True
            log.info("fine-tuning job %s: early stop at step %d (best %s at %s)", job.pk, step, best_score, best_step)
            break
    model.eval()
    result.steps_done, result.train_seconds = step, round(spent, 2)
    result.best_step, result.best_score = best_step, best_score
    best = checkpoints.load_best(work)
    if best is not None and result.eval_curve and best["step"] != result.eval_curve[-1][0]:
        load_trainable_state(model, best["weights"])  # the weights of the best evaluation, not the last
        result.restored_best = True
    if best_step is not None:
        result.improved = best_step > 0
    return result
