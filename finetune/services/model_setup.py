"""The model a job trains: loaded from the base folder, on CUDA when present,
with the word-embedding matrix frozen and/or LoRA adapters as the job asks,
and the loss it trains with. The same set-up is applied again on resume, so a
checkpoint only has to hold what training changes."""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_training_threads() -> dict:
    """All available cores for training on CPU (web processes use one; the worker's pool
    may have set fewer), one inter-op thread; what was set, with the OpenMP wait policy
    (settings.py makes it PASSIVE before torch loads), goes into the job's metrics."""
    from django.conf import settings

    from finetune.services.cpu_speed import configure_threads

    threads = configure_threads(settings.FINETUNE_TORCH_THREADS or None, 1)
    return {"torch_threads": threads["intra_op"], "interop_threads": threads["inter_op"],
            "omp_wait_policy": threads["omp_wait_policy"]}


@dataclass
class Prompts:
    query: str
    passage: str


def prompts_of(model) -> Prompts:
    """The prefixes the portal's space would use with this model (search.services.encoders)."""
    prompts = getattr(model, "prompts", {}) or {}
    return Prompts(prompts.get("query", "") or "", prompts.get("document") or prompts.get("passage", "") or "")


def transformer_of(model):
    """The Hugging Face model inside the first (Transformer) module."""
    first = model[0]
    # sentence-transformers 6 keeps it in `model` (`auto_model` is a read-only alias); older ones in `auto_model`
    return first.model if "model" in first._modules else first.auto_model


def load_for_training(job, device: str):
    """(model, trainable parameter names, base max_seq_length)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(job.seed)
    model = SentenceTransformer(job.base_model_path, device=device, local_files_only=True)
    base_max = int(model.max_seq_length or job.max_length)
    model.max_seq_length = min(job.max_length, base_max)
    inner = transformer_of(model)
    if job.lora:
        if not peft_available():
            raise RuntimeError("LoRA needs the peft package, which is not installed")
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=job.lora_rank, lora_alpha=2 * job.lora_rank, lora_dropout=0.1,
                            target_modules="all-linear")
        wrapped = get_peft_model(inner, config)  # freezes everything but the adapters
        _set_transformer(model, wrapped)
        model.to(device)
    else:
        if job.freeze_embeddings or job.frozen_layers:
            # e5-small: 250k × 384 of its 118M parameters, and twice that in AdamW state.
            inner.get_input_embeddings().weight.requires_grad_(False)
        if job.frozen_layers:
            freeze_lower_layers(inner, job.frozen_layers)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return model, names, base_max


def transformer_layers(inner):
    """The stack of transformer blocks (BERT / XLM-R `encoder.layer`, others `layers`)."""
    import torch

    for name, module in inner.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "h", "block"):
            return module
    raise ValueError("the model has no list of transformer layers to freeze")


def freeze_lower_layers(inner, count: int) -> None:
    """No gradient for the embeddings block and the lowest `count` layers: the
    backward pass ends at the first trainable layer, which is where the time goes."""
    layers = transformer_layers(inner)
    if count >= len(layers):
        raise ValueError(f"frozen_layers is {count} but the model has {len(layers)} layers: at least one must train")
    embeddings = inner.get_input_embeddings()
    for name, module in inner.named_modules():
        if name.split(".")[-1] == "embeddings" or module is embeddings:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    for layer in list(layers)[:count]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


def _set_transformer(model, inner) -> None:
    first = model[0]
    if "model" in first._modules:
        first.model = inner
    else:
        first.auto_model = inner


def merge_lora(model) -> None:
    """Fold the adapters into the weights: the package is a plain model."""
    inner = transformer_of(model)
    if hasattr(inner, "merge_and_unload"):
        _set_transformer(model, inner.merge_and_unload())


def keep_share_of_tuning(model, base_path: str, share: float) -> int:
    """WiSE-FT (Wortsman et al., 2022): every weight moved from the base's only
    `share` of the way to the fine-tuned value (base + share × (tuned − base)).
    A model trained on one domain forgets some of what its base knew; the
    weight-space mix between them keeps more of it for part of the gain.
    Returns how many tensors changed (share 1: none)."""
    import torch
    from sentence_transformers import SentenceTransformer

    if share >= 1:
        return 0
    base = SentenceTransformer(base_path, device="cpu", local_files_only=True).state_dict()
    changed = 0
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in base or base[name].shape != tensor.shape:
                raise RuntimeError(f"the base has no weight {name!r} of shape {tuple(tensor.shape)}: "
                                   "the fine-tuned model cannot be mixed with it")
            if not tensor.is_floating_point():
                continue
            start = base[name].to(tensor.device, tensor.dtype)
            if torch.equal(start, tensor):
                continue  # frozen: nothing to mix
            tensor.copy_(torch.lerp(start, tensor, share))
            changed += 1
    return changed


def trainable_state(model, names: list[str]) -> dict:
    params = dict(model.named_parameters())
    return {n: params[n].detach().to("cpu").clone() for n in names}


def load_trainable_state(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    missing = set(state) - set(params)
    if missing:
        raise RuntimeError(f"checkpoint holds parameters the model lacks: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def build_loss(job, model):
    from sentence_transformers import losses

    from finetune.models import Loss

    if job.loss == Loss.CACHED_MNRL:
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=job.mini_batch_size,
                                                         show_progress_bar=False)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    if job.matryoshka_dims:
        dims = sorted({int(d) for d in job.matryoshka_dims}, reverse=True)
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def parameter_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": int(total), "trainable_parameters": int(trainable)}


def is_saved_model(folder: Path) -> bool:
    return (folder / "modules.json").exists()


def save_model(model, folder: Path) -> None:
    """Save to a temporary sibling and rename: a folder that exists is complete."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
