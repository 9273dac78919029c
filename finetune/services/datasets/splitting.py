"""Train / eval split by document, never by pair; counts and the content hash.

The split unit is a group of documents: two documents are one group when a
query or a positive (compared by `near_key`) occurs in both — so no document,
no positive and no query is ever on both sides (a question answered by two
passages, or a boilerplate chunk shared by two documents, would otherwise leak).
Groups are shuffled with the dataset's seed and moved to eval until the eval
side holds `eval_share` of the documents (at least one when the share is above
0 and there are two groups or more: the smallest when every group is larger
than the share). A group with a pair fixed to eval (a
benchmark's own val questions) is eval whatever the draw.

After the split, a train pair whose negative is an eval positive loses that
negative (an eval passage must not be trained on, even as a negative); the
number is in the counts (`negatives_dropped_for_leakage`).
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict

from finetune.models import Split
from finetune.services.datasets.records import PairRecord
from finetune.services.texts import clean, near_key


class _Groups:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign_splits(records: list[PairRecord], eval_share: float, seed: int) -> dict:
    groups = _Groups()
    for r in records:
        groups.find("d:" + r.doc_key)
        for kind, text in (("q:", r.query), ("p:", r.positive)):
            if key := near_key(text):
                groups.join("d:" + r.doc_key, kind + key)
    documents: dict[str, set[str]] = defaultdict(set)
    fixed_eval: set[str] = set()
    for r in records:
        root = groups.find("d:" + r.doc_key)
        documents[root].add(r.doc_key)
        if r.fixed_split == Split.EVAL:
            fixed_eval.add(root)
    roots = sorted(documents)
    random.Random(seed).shuffle(roots)
    eval_roots = set(fixed_eval)
    free = [root for root in roots if root not in fixed_eval]
    free_docs = sum(len(documents[root]) for root in free)
    target = round(eval_share * free_docs)
    if eval_share > 0 and target == 0 and len(free) >= 2:
        target = 1
    taken = 0
    for root in free:
        size = len(documents[root])
        if taken + size <= target and len(eval_roots - fixed_eval) < len(free) - 1:
            eval_roots.add(root)
            taken += size
    if target and not taken and len(free) >= 2:  # every group is larger than the share: hold out the smallest
        eval_roots.add(min(free, key=lambda root: len(documents[root])))
    for r in records:
        r.split = Split.EVAL if groups.find("d:" + r.doc_key) in eval_roots else Split.TRAIN
    eval_positives = {near_key(r.positive) for r in records if r.split == Split.EVAL}
    dropped = 0
    for r in records:
        if r.split == Split.TRAIN and r.negative and near_key(r.negative) in eval_positives:
            r.negative, r.negative_score = "", None
            dropped += 1
    return {"groups": len(roots), "negatives_dropped_for_leakage": dropped}


def pair_key(query: str, positive: str) -> tuple[str, str]:
    return clean(query), clean(positive)


def merge_duplicates(records: list[PairRecord]) -> tuple[list[PairRecord], int]:
    """One record per exact (query, positive); the first kept, a negative taken
    from a later copy when the first has none. Returns (records, merged)."""
    kept: dict[tuple[str, str], PairRecord] = {}
    for r in records:
        key = pair_key(r.query, r.positive)
        first = kept.get(key)
        if first is None:
            kept[key] = r
        elif not first.negative and r.negative:
            first.negative, first.negative_score = r.negative, r.negative_score
    return list(kept.values()), len(records) - len(kept)


def content_hash(rows) -> str:
    """sha256 over the sorted, cleaned (split, query, positive, negative) of every pair."""
    lines = sorted("\x1f".join((split, clean(q), clean(p), clean(n))) for split, q, p, n in rows)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def counts_of(rows) -> dict:
    """rows: (split, source, doc_key, has_negative, access_level) per pair."""
    out = {"pairs": 0, "negatives": 0, "documents": 0, "access_unknown": 0,
           "train": {"pairs": 0, "negatives": 0, "documents": 0}, "eval": {"pairs": 0, "negatives": 0, "documents": 0},
           "by_source": {}}
    docs: dict[str, set] = {"all": set(), "train": set(), "eval": set()}
    by_source: dict[str, Counter] = defaultdict(Counter)
    for split, source, doc_key, has_negative, level in rows:
        for bucket in (out, out[split]):
            bucket["pairs"] += 1
            bucket["negatives"] += bool(has_negative)
        docs["all"].add(doc_key)
        docs[split].add(doc_key)
        by_source[source]["pairs"] += 1
        by_source[source][split] += 1
        by_source[source]["negatives"] += bool(has_negative)
        out["access_unknown"] += level is None
    out["documents"] = len(docs["all"])
    out["train"]["documents"], out["eval"]["documents"] = len(docs["train"]), len(docs["eval"])
    out["by_source"] = {s: {"pairs": c["pairs"], "train": c["train"], "eval": c["eval"], "negatives": c["negatives"]}
                        for s, c in sorted(by_source.items())}
    return out
