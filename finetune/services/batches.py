"""The training data of a job and the order it is seen in.

The batch plan is a pure function of (pairs, batch size, seed, epoch): a
resumed run computes the same plan and continues at the batch after its
checkpoint's step, so no step is repeated or skipped. A batch never holds the
same query or the same passage twice (with MultipleNegativesRankingLoss every
other passage of the batch is a negative: a duplicate would be a false one),
and pairs with a hard negative are batched apart from pairs without one (a
batch has one shape: (query, positive) or (query, positive, negative)).

With lengths (one grouping key per pair, `grouping_lengths`), the shuffled
order is sorted by length within buckets of 16 batches before it is cut into
batches, so each batch is padded to little more than its own texts: on CPU
padding is most of a step's cost (docs/decisions.md, "speed on CPU").
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from finetune.models import Split, TrainingDataset
from finetune.services.cpu_speed import (choose_grouping_key, length_grouped_order, padding_efficiency,
                                         token_lengths)

BUCKET_BATCHES = 16


@dataclass
class TrainPair:
    query: str
    positive: str
    negative: str = ""


@dataclass
class EvalData:
    """The eval split as a retrieval task: its queries ranked against every eval positive."""
    queries: dict[str, str] = field(default_factory=dict)
    corpus: dict[str, str] = field(default_factory=dict)
    relevant: dict[str, set[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.queries)


def load_train(dataset: TrainingDataset) -> list[TrainPair]:
    rows = dataset.pairs.filter(split=Split.TRAIN).order_by("pk").values_list("query", "positive", "negative")
    return [TrainPair(q, p, n or "") for q, p, n in rows]


def load_eval(dataset: TrainingDataset) -> EvalData:
    """Queries are grouped by text (a query asked with two positives has both as relevant);
    passages are deduplicated by text. Ids follow first appearance in pk order."""
    data = EvalData()
    passage_ids: dict[str, str] = {}
    query_ids: dict[str, str] = {}
    for query, positive in dataset.pairs.filter(split=Split.EVAL).order_by("pk").values_list("query", "positive"):
        cid = passage_ids.setdefault(positive, f"p{len(passage_ids)}")
        data.corpus[cid] = positive
        qid = query_ids.setdefault(query, f"q{len(query_ids)}")
        data.queries[qid] = query
        data.relevant.setdefault(qid, set()).add(cid)
    return data


def _batches_of(indices: list[int], pairs: list[TrainPair], size: int) -> list[list[int]]:
    """Greedy batches of `size` without a repeated query or passage text; what cannot join
    the current batch waits for the next. A last batch of one pair teaches nothing (no
    in-batch negative) and is dropped."""
    batches, waiting = [], list(indices)
    while waiting:
        batch, seen, rest = [], set(), []
        for i in waiting:
            p = pairs[i]
            texts = {("q", p.query), ("p", p.positive)} | ({("p", p.negative)} if p.negative else set())
            if len(batch) < size and not (texts & seen):
                batch.append(i)
                seen |= texts
            else:
                rest.append(i)
        if len(batch) < 2:
            break
        batches.append(batch)
        waiting = rest
    return batches


def epoch_batches(pairs: list[TrainPair], batch_size: int, seed: int, epoch: int,
                  lengths: list[int] | None = None) -> list[list[int]]:
    rnd = random.Random(f"{seed}:{epoch}")
    order = list(range(len(pairs)))
    rnd.shuffle(order)
    with_negative = [i for i in order if pairs[i].negative]
    without = [i for i in order if not pairs[i].negative]
    if lengths is not None:
        with_negative = length_grouped_order(with_negative, lengths, batch_size, BUCKET_BATCHES)
        without = length_grouped_order(without, lengths, batch_size, BUCKET_BATCHES)
    batches = _batches_of(with_negative, pairs, batch_size) + _batches_of(without, pairs, batch_size)
    rnd.shuffle(batches)
    return batches


@dataclass
class Plan:
    """Every step of the run: step n (1-based) is batch `batches[n - 1]` of epoch `epochs[n - 1]`."""
    batches: list[list[int]]
    epochs: list[int]
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return len(self.batches)


def plan(pairs: list[TrainPair], batch_size: int, seed: int, epochs: float,
         lengths: list[int] | None = None) -> Plan:
    """`epochs` may be fractional: 1.5 is one full pass and half of a second one."""
    if not pairs:
        return Plan([], [], 0)
    first = epoch_batches(pairs, batch_size, seed, 0, lengths)
    steps_per_epoch = len(first)
    total = max(1, round(epochs * steps_per_epoch)) if steps_per_epoch else 0
    batches, owners, epoch = [], [], 0
    while len(batches) < total and epoch <= math.ceil(epochs) * 4:  # (a pathological set: stop)
        source = first if epoch == 0 else epoch_batches(pairs, batch_size, seed, epoch, lengths)
        for batch in source[:total - len(batches)]:
            batches.append(batch)
            owners.append(epoch)
        epoch += 1
    return Plan(batches, owners, steps_per_epoch)


@dataclass
class Grouping:
    key: str  # "query", "passage" or "sum": the length batches are grouped by
    lengths: list[int]
    padding_efficiency: float  # real / padded tokens of the first epoch's batches, grouped
    padding_efficiency_random: float  # the same with random batches


def grouping_lengths(tokenizer, pairs: list[TrainPair], prompts, max_length: int, batch_size: int,
                     seed: int) -> Grouping:
    """Token lengths (as the model sees them, cut at `max_length`) and the grouping key
    that pads least on this data. A hard negative counts with the passage."""
    queries = token_lengths(tokenizer, [p.query for p in pairs], prompts.query)
    passages = token_lengths(tokenizer, [p.positive for p in pairs], prompts.passage)
    negatives = token_lengths(tokenizer, [p.negative for p in pairs], prompts.passage)
    passages = [max(p, n) if pair.negative else p for p, n, pair in zip(passages, negatives, pairs)]
    name, key, efficiency = choose_grouping_key(queries, passages, batch_size, max_length=max_length, seed=seed,
                                                bucket_batches=BUCKET_BATCHES)
    cut_q = [min(x, max_length) for x in queries]
    cut_p = [min(x, max_length) for x in passages]
    random_eff = padding_efficiency(epoch_batches(pairs, batch_size, seed, 0), cut_q, cut_p)
    grouped_eff = padding_efficiency(epoch_batches(pairs, batch_size, seed, 0, key), cut_q, cut_p)
    return Grouping(name, key, round(grouped_eff, 4), round(random_eff, 4))
