"""What makes fine-tuning fast on a CPU (measured in bench/finetune_speed.py,
figures in docs/benchmarks.md "Fine-tuning speed on CPU"): fewer padded tokens
per step (length-grouped batches, a max length that fits the data), no optimizer
work on the 250k-row word-embedding matrix, and one intra-op thread per core.
Plain functions, no Django: the training loop picks what it needs."""
from __future__ import annotations

import contextlib
import math
import os
import random
from typing import Hashable, Iterable, Sequence


# ---------------------------------------------------------------- batches

def _fill_batches(order: Sequence[int], batch_size: int, duplicate_keys: Sequence[Hashable] | None) -> list[list[int]]:
    """Cut `order` into batches of `batch_size`, keeping it as far as possible.
    With `duplicate_keys`, two items with the same key never share a batch: for
    MultipleNegativesRankingLoss every other passage in a batch is a negative, so
    a duplicate would be a false negative. A clashing item waits for the next batch."""
    if duplicate_keys is None:
        return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    waiting: list[int] = []
    pending = list(order)
    while pending or waiting:
        batch: list[int] = []
        keys: set = set()
        still_waiting: list[int] = []
        for index in waiting:  # the oldest deferred items go first
            if len(batch) < batch_size and duplicate_keys[index] not in keys:
                batch.append(index)
                keys.add(duplicate_keys[index])
            else:
                still_waiting.append(index)
        position = 0
        while len(batch) < batch_size and position < len(pending):
            index = pending[position]
            position += 1
            if duplicate_keys[index] in keys:
                still_waiting.append(index)
            else:
                batch.append(index)
                keys.add(duplicate_keys[index])
        pending = pending[position:]
        waiting = still_waiting
        batches.append(batch)
    return batches


def random_batches(count: int, batch_size: int, *, seed: int,
                   duplicate_keys: Sequence[Hashable] | None = None) -> list[list[int]]:
    """Shuffled batches of item indices 0..count-1 (the plain baseline)."""
    _check_batch_args(count, batch_size, duplicate_keys)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return _fill_batches(order, batch_size, duplicate_keys)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, *, seed: int, bucket_batches: int = 16,
                           duplicate_keys: Sequence[Hashable] | None = None) -> list[list[int]]:
    """Batches of items of similar length, so each batch is padded to little more
    than its own texts. Shuffle, cut into buckets of `bucket_batches` batches,
    sort each bucket by length, cut into batches, shuffle the batches: which
    items meet in a batch stays random within a bucket, and the order of
    lengths over the epoch is random. Larger buckets pad less but make the
    batches' members (MNRL's in-batch negatives) more alike in length."""
    _check_batch_args(len(lengths), batch_size, duplicate_keys)
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = _fill_batches(length_grouped_order(order, lengths, batch_size, bucket_batches), batch_size,
                            duplicate_keys)
    rng.shuffle(batches)
    return batches


def length_grouped_order(order: Sequence[int], lengths: Sequence[int], batch_size: int,
                         bucket_batches: int = 16) -> list[int]:
    """`order` (already shuffled) cut into buckets of `bucket_batches` batches, each
    bucket sorted by length: consecutive runs of `batch_size` items are then alike
    in length. The caller cuts the batches and shuffles them."""
    if bucket_batches < 1:
        raise ValueError("bucket_batches must be at least 1")
    bucket = batch_size * bucket_batches
    grouped: list[int] = []
    for start in range(0, len(order), bucket):
        # sorted() is stable: equal lengths keep their shuffled order
        grouped.extend(sorted(order[start:start + bucket], key=lambda i: lengths[i]))
    return grouped


def _check_batch_args(count: int, batch_size: int, duplicate_keys) -> None:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if duplicate_keys is not None and len(duplicate_keys) != count:
        raise ValueError("duplicate_keys needs one key per item")


def padding_efficiency(batches: Iterable[Sequence[int]], *columns: Sequence[int], max_length: int | None = None) -> float:
    """Real tokens / padded tokens over the batches. Each column (e.g. query and
    passage token lengths) is padded separately, to its longest text in the
    batch, as the model sees them; lengths are first cut at `max_length`."""
    real = padded = 0
    for batch in batches:
        for column in columns:
            cut = [min(column[i], max_length) if max_length else column[i] for i in batch]
            if cut:
                real += sum(cut)
                padded += max(cut) * len(cut)
    return real / padded if padded else 1.0


def choose_grouping_key(query_lengths: Sequence[int], passage_lengths: Sequence[int], batch_size: int, *,
                        max_length: int, seed: int = 0, bucket_batches: int = 16) -> tuple[str, list[int], float]:
    """Which length to group batches by: queries, passages or their sum, whichever
    pads least on this data (tried, not guessed). On vicov19qa at max length 128
    most answers reach the cut, so only the queries' lengths still vary: grouping
    by query length pads least there. Returns (name, key per item, efficiency)."""
    queries = [min(x, max_length) for x in query_lengths]
    passages = [min(x, max_length) for x in passage_lengths]
    if len(queries) != len(passages):
        raise ValueError("one query length and one passage length per pair")
    candidates = {"query": queries, "passage": passages, "sum": [q + p for q, p in zip(queries, passages)]}
    best = None
    for name, key in candidates.items():
        batches = length_grouped_batches(key, batch_size, seed=seed, bucket_batches=bucket_batches)
        efficiency = padding_efficiency(batches, queries, passages)
        if best is None or efficiency > best[2]:
            best = (name, key, efficiency)
    return best


# ---------------------------------------------------------------- lengths

def token_lengths(tokenizer, texts: Sequence[str], prefix: str = "") -> list[int]:
    """Token counts as the model would see them untruncated (special tokens and
    the prompt prefix included)."""
    encoded = tokenizer([prefix + text for text in texts], add_special_tokens=True, truncation=False,
                        verbose=False)["input_ids"]
    return [len(ids) for ids in encoded]


def _quantile(ordered: Sequence[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def length_summary(lengths: Sequence[int], cutoffs: Iterable[int] = (64, 128, 192, 256, 384, 512)) -> dict:
    """p50/p90/p99/max/mean and, per cutoff, the share of texts longer than it (truncated there)."""
    if not lengths:
        raise ValueError("no lengths")
    ordered = sorted(lengths)
    return {"count": len(ordered), "mean": round(sum(ordered) / len(ordered), 1),
            "p50": _quantile(ordered, 0.5), "p90": _quantile(ordered, 0.9), "p99": _quantile(ordered, 0.99),
            "max": ordered[-1],
            "truncated_share": {str(c): round(sum(1 for x in ordered if x > c) / len(ordered), 4) for c in cutoffs}}


# ---------------------------------------------------------------- the model

def freeze_word_embeddings(model) -> int:
    """Stop training the input word-embedding matrix (250k × 384 in e5-small:
    82% of its parameters). It then needs no gradient, no AdamW moments and no
    optimizer step. Returns the number of parameters frozen. `model` is a
    SentenceTransformer (or any module with a transformers model inside)."""
    embedding = _word_embeddings(model)
    frozen = 0
    for parameter in embedding.parameters():
        if parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def _word_embeddings(model):
    for module in model.modules():
        get = getattr(module, "get_input_embeddings", None)
        if callable(get):
            embedding = get()
            if embedding is not None:
                return embedding
    raise ValueError("the model has no input word-embedding matrix")


def trainable_parameters(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------- threads

def available_cores() -> int:
    """CPUs this process may run on (the affinity mask, which a container or
    taskset narrows; os.cpu_count() would count the whole host)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_threads(intra_op: int | None = None, inter_op: int | None = 1) -> dict:
    """Intra-op threads (the matrix products): one per available core unless
    told. Inter-op threads only run independent graph branches (TorchScript
    forks), which eager training has none of: 1 saves idle threads. PyTorch
    accepts the inter-op count only before its first parallel work; when it is
    too late the current value stays and `inter_op_applied` says so.

    More than one intra-op thread on a machine shared with other work needs
    OMP_WAIT_POLICY=PASSIVE in the environment before torch loads: with the
    default policy, threads spin at every barrier while their partner waits for a
    core, and 2 threads ran ×2 slower than 1 (docs/benchmarks.md). The policy in
    force is returned so a job can record it."""
    import torch

    intra = intra_op or available_cores()
    if intra < 1:
        raise ValueError("intra_op must be at least 1")
    torch.set_num_threads(intra)
    applied = True
    if inter_op is not None and torch.get_num_interop_threads() != inter_op:
        try:
            torch.set_num_interop_threads(inter_op)
        except RuntimeError:
            applied = False
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
            "inter_op_applied": applied, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


# ---------------------------------------------------------------- precision

def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16 / AMX),
    without which bf16 autocast is slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_autocast(enabled: bool):
    """bfloat16 autocast for the forward pass on CPU (weights and optimizer stay
    float32), or a no-op context when disabled or the CPU lacks bf16."""
    import torch

    if enabled and bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
