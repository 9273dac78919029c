"""Hard-negative mining with a real (small) model: MiniLM from disk."""
import numpy as np
import pytest
from django.utils import timezone
from sentence_transformers import SentenceTransformer

from finetune.models import DatasetStatus, TrainingDataset, TrainingPair
from finetune.services.negatives import mine_hard_negatives

pytestmark = pytest.mark.django_db

TRAIN = [
    ("how many vacation days do employees get", "Employees get twelve vacation days per year.", "doc:leave"),
    ("vacation carry over", "Unused vacation days carry over to next year, up to five days.", "doc:leave-carry"),
    ("how to connect to the VPN", "Install the VPN client and sign in with your company account.", "doc:vpn"),
    ("VPN client download", "Download the VPN client from the software portal.", "doc:vpn"),  # same document
    ("VPN password reset", "Reset your VPN password on the self-service portal.", "doc:vpn-password"),
    ("office opening hours", "The office opens at eight and closes at six.", "doc:office"),
    ("parking at the office", "Staff parking is in the basement of the office building.", "doc:parking"),
    ("how many vacation days do employees get", "Vacation days are approved by your manager.", "doc:leave-approve"),
]
EVAL = [("sick leave days", "Employees get twelve sick leave days per year.", "doc:sick")]


def make_dataset():
    ds = TrainingDataset.objects.create(name="mine", status=DatasetStatus.READY, built_at=timezone.now())
    TrainingPair.objects.bulk_create(
        [TrainingPair(dataset=ds, query=q, positive=p, doc_key=d, split="train", source="pairs") for q, p, d in TRAIN]
        + [TrainingPair(dataset=ds, query=q, positive=p, doc_key=d, split="eval", source="pairs") for q, p, d in EVAL]
        + [TrainingPair(dataset=ds, query="parking fee", positive="Parking is free for staff.", doc_key="doc:fee",
                        negative="Given negative.", split="train", source="negatives")])
    return ds


def test_mined_negatives_follow_the_rules(minilm_path):
    ds = make_dataset()
    before = ds.content_hash
    seen = []
    margin = 0.02
    changed = mine_hard_negatives(ds, minilm_path, margin=margin, progress=lambda d, t: seen.append((d, t)))
    pairs = list(ds.pairs.filter(split="train").exclude(source="negatives"))
    assert changed == sum(1 for p in pairs if p.negative) and changed >= 6
    eval_positives = {p for _, p, _ in EVAL}
    positives_of = {}
    for q, p, _ in TRAIN:
        positives_of.setdefault(q, set()).add(p)
    doc_of = {p: d for _, p, d in TRAIN} | {"Parking is free for staff.": "doc:fee"}
    model = SentenceTransformer(minilm_path, device="cpu")
    for pair in pairs:
        if not pair.negative:
            continue
        assert pair.negative not in eval_positives  # never an eval passage
        assert pair.negative not in positives_of[pair.query]  # never a positive of the same query
        assert doc_of[pair.negative] != pair.doc_key  # never a passage of its own document
        q, pos, neg = model.encode([pair.query, pair.positive, pair.negative], normalize_embeddings=True)
        assert pair.negative_score == pytest.approx(float(np.dot(q, neg)), abs=1e-4)
        assert pair.negative_score <= float(np.dot(q, pos)) - margin + 1e-4  # not within the margin
    vpn = ds.pairs.get(query="how to connect to the VPN")
    assert vpn.negative != "Download the VPN client from the software portal."
    assert ds.pairs.get(query="parking fee").negative == "Given negative."  # a pair with a negative is kept
    assert seen[-1] == (16, 16)  # 9 train positives and the 7 distinct queries to mine for, encoded
    ds.refresh_from_db()
    assert ds.content_hash != before and ds.counts["negatives"] == changed + 1
    assert ds.sources[-1]["source"] == "mined" and ds.sources[-1]["pairs"] == changed


def test_a_margin_no_candidate_clears_leaves_pairs_without_negatives(minilm_path):
    ds = make_dataset()
    assert mine_hard_negatives(ds, minilm_path, margin=2.0) == 0
    assert ds.pairs.exclude(negative="").count() == 1
    assert ds.sources[-1]["without_candidate"] == 8
