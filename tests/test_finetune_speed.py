"""finetune/services/cpu_speed.py: the pieces that make CPU fine-tuning fast
(measured in bench/finetune_speed.py). A tiny BERT built on the fly, never e5."""
import ast
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.services import cpu_speed
from tests.conftest import ROOT

lengths_strategy = st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=300)


# ---------------------------------------------------------------- batches

@given(lengths=lengths_strategy, batch_size=st.integers(1, 40), bucket=st.integers(1, 8), seed=st.integers(0, 99))
@settings(max_examples=60, deadline=None)
def test_length_grouped_batches_cover_every_item_once(lengths, batch_size, bucket, seed):
    batches = cpu_speed.length_grouped_batches(lengths, batch_size, seed=seed, bucket_batches=bucket)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(0 < len(b) <= batch_size for b in batches)
    # only the last batch of a bucket may be short: no more batches than buckets allow
    buckets = -(-len(lengths) // (batch_size * bucket))
    assert len(batches) <= -(-len(lengths) // batch_size) + buckets


@given(keys=st.lists(st.integers(0, 6), min_size=1, max_size=120), batch_size=st.integers(1, 16),
       seed=st.integers(0, 99), grouped=st.booleans())
@settings(max_examples=60, deadline=None)
def test_duplicates_never_share_a_batch(keys, batch_size, seed, grouped):
    """Equal keys (the same passage twice) would be a false in-batch negative for MNRL."""
    lengths = [k * 10 for k in keys]  # duplicates have equal lengths: sorting puts them side by side
    batches = (cpu_speed.length_grouped_batches(lengths, batch_size, seed=seed, duplicate_keys=keys) if grouped
               else cpu_speed.random_batches(len(keys), batch_size, seed=seed, duplicate_keys=keys))
    assert sorted(i for b in batches for i in b) == list(range(len(keys)))
    for batch in batches:
        assert 0 < len(batch) <= batch_size
        assert len({keys[i] for i in batch}) == len(batch)


def test_grouping_pads_less_than_random_batches():
    # a skewed mix like the vicov19qa queries: mostly short, some long
    lengths = [20 + (i * 37) % 40 for i in range(900)] + [100 + (i * 13) % 28 for i in range(124)]
    grouped = cpu_speed.length_grouped_batches(lengths, 32, seed=1)
    shuffled = cpu_speed.random_batches(len(lengths), 32, seed=1)
    assert cpu_speed.padding_efficiency(grouped, lengths) > 0.9
    assert cpu_speed.padding_efficiency(shuffled, lengths) < 0.6


def test_grouped_batches_are_shuffled_and_seeded():
    lengths = list(range(1, 257))
    first = cpu_speed.length_grouped_batches(lengths, 8, seed=3, bucket_batches=4)
    assert first == cpu_speed.length_grouped_batches(lengths, 8, seed=3, bucket_batches=4)
    assert first != cpu_speed.length_grouped_batches(lengths, 8, seed=4, bucket_batches=4)
    # the epoch does not run from short to long: the batches are shuffled (one bucket: all sorted before)
    one_bucket = cpu_speed.length_grouped_batches(lengths, 8, seed=3, bucket_batches=100)
    maxima = [max(lengths[i] for i in b) for b in one_bucket]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    # within a bucket of 32 items the batch lengths are contiguous ranges of the sorted bucket
    for batch in first:
        spread = max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        assert spread < 256 // 2


def test_grouping_key_is_the_column_whose_lengths_still_vary_after_the_cut():
    varied = [10 + (i * 37) % 110 for i in range(640)]
    at_cut = [128 + (i * 11) % 300 for i in range(640)]  # every one truncated to 128: nothing to gain
    name, key, efficiency = cpu_speed.choose_grouping_key(varied, at_cut, 32, max_length=128)
    assert name == "query" and key == [min(x, 128) for x in varied]
    name, _, _ = cpu_speed.choose_grouping_key(at_cut, varied, 32, max_length=128)
    assert name == "passage"
    # both vary and go together (long questions, long answers): the sum serves both sides
    together = [x + (i * 7) % 9 for i, x in enumerate(varied)]
    name, key, best = cpu_speed.choose_grouping_key(varied, together, 32, max_length=128)
    assert name == "sum" and key == [min(q, 128) + min(p, 128) for q, p in zip(varied, together)]
    for other in (varied, together):
        batches = cpu_speed.length_grouped_batches(other, 32, seed=0)
        assert best > cpu_speed.padding_efficiency(batches, varied, together, max_length=128)
    with pytest.raises(ValueError, match="one query length"):
        cpu_speed.choose_grouping_key([1, 2], [1], 32, max_length=128)


def test_bad_batch_arguments_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        cpu_speed.random_batches(10, 0, seed=0)
    with pytest.raises(ValueError, match="bucket_batches"):
        cpu_speed.length_grouped_batches([1, 2], 2, seed=0, bucket_batches=0)
    with pytest.raises(ValueError, match="one key per item"):
        cpu_speed.length_grouped_batches([1, 2, 3], 2, seed=0, duplicate_keys=["a"])


def test_padding_efficiency_pads_each_column_to_its_longest_after_the_cut():
    queries, passages = [2, 4, 10], [100, 50, 300]
    # one batch: queries pad to 10 (16 real / 30), passages cut at 128 then pad to 128 (278 / 384)
    assert cpu_speed.padding_efficiency([[0, 1, 2]], queries, passages, max_length=128) == pytest.approx(
        (16 + 278) / (30 + 384))
    assert cpu_speed.padding_efficiency([[0], [1], [2]], queries, passages) == 1.0
    assert cpu_speed.padding_efficiency([], queries) == 1.0


# ---------------------------------------------------------------- lengths

def test_length_summary_matches_numpy_percentiles():
    import numpy as np

    lengths = [5, 7, 9, 128, 131, 256, 3, 300, 12, 64]  # a text of exactly the cut is not truncated
    summary = cpu_speed.length_summary(lengths, cutoffs=(128, 256))
    for q in (50, 90, 99):
        assert summary[f"p{q}"] == pytest.approx(np.percentile(lengths, q))
    assert summary["max"] == 300 and summary["count"] == 10
    assert summary["truncated_share"] == {"128": 0.3, "256": 0.1}
    with pytest.raises(ValueError):
        cpu_speed.length_summary([])


def test_token_lengths_count_the_prefix_and_special_tokens(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    long_text = "word " * 700  # past the model's limit: counted, not truncated
    plain, prefixed = (cpu_speed.token_lengths(tokenizer, ["hello world", long_text], prefix=p)
                       for p in ("", "query: "))
    assert plain[0] == 4  # [CLS] hello world [SEP]
    assert prefixed[0] == plain[0] + len(tokenizer.tokenize("query:"))
    assert plain[1] == 702


# ---------------------------------------------------------------- the model

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, minilm_path):
    """A 2-layer, 16-wide BERT with MiniLM's tokenizer: the shape of e5, none of its size."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return lambda: SentenceTransformer(modules=[models.Transformer(str(folder), max_seq_length=32),
                                                models.Pooling(16, "mean")], device="cpu")


def test_freeze_word_embeddings_stops_training_that_matrix_only(tiny_model):
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = tiny_model()
    words = model[0].auto_model.embeddings.word_embeddings
    total = sum(p.numel() for p in model.parameters())
    assert cpu_speed.freeze_word_embeddings(model) == words.weight.numel() == 30522 * 16
    assert cpu_speed.freeze_word_embeddings(model) == 0  # already frozen
    trainable = cpu_speed.trainable_parameters(model)
    assert all(p is not words.weight for p in trainable)
    assert sum(p.numel() for p in trainable) == total - words.weight.numel()

    query = model[0].auto_model.encoder.layer[0].attention.self.query.weight
    before = {id(p): p.detach().clone() for p in model.parameters()}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    loss_fn = MultipleNegativesRankingLoss(model)
    model.train()
    features = [model.preprocess(["a cat", "a dog", "the sea"]), model.preprocess(["cats", "dogs", "water"])]
    loss_fn(features, None).backward()
    optimizer.step()
    assert words.weight.grad is None
    assert torch.equal(words.weight, before[id(words.weight)])
    assert not torch.equal(query, before[id(query)])


def test_freeze_refuses_a_model_without_word_embeddings():
    import torch

    with pytest.raises(ValueError, match="no input word-embedding"):
        cpu_speed.freeze_word_embeddings(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- threads and precision

def _in_fresh_python(code: str, **env: str) -> str:
    """Thread settings are per process, and inter-op only until the first parallel work."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=environment)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_configure_threads_sets_intra_and_inter_op_threads():
    out = _in_fresh_python(
        "from finetune.services import cpu_speed as c\n"
        "print(c.configure_threads(1, 1), c.available_cores())", OMP_WAIT_POLICY="PASSIVE")
    settings_, cores = out.rsplit(" ", 1)
    assert ast.literal_eval(settings_) == {"intra_op": 1, "inter_op": 1, "inter_op_applied": True,
                                           "omp_wait_policy": "PASSIVE"}
    # too late for inter-op (the pool is running): intra-op still set, and the result says so
    late = ast.literal_eval(_in_fresh_python(
        "import torch\nfrom finetune.services import cpu_speed as c\n"
        "torch.jit.wait(torch.jit.fork(torch.add, torch.ones(2), 1))\n"
        "print(c.configure_threads(None, 1))"))
    assert late["intra_op"] == int(cores)
    assert late["inter_op_applied"] == (late["inter_op"] == 1)
    assert late["omp_wait_policy"] == ""  # not set: the default (spinning) policy


def test_cpu_autocast_runs_matrix_products_in_bf16_only_when_asked_and_supported(monkeypatch):
    import torch

    layer = torch.nn.Linear(4, 4)
    x = torch.ones(2, 4)
    with cpu_speed.cpu_autocast(False):
        assert layer(x).dtype == torch.float32
    if cpu_speed.bf16_supported():
        with cpu_speed.cpu_autocast(True):
            assert layer(x).dtype == torch.bfloat16
    monkeypatch.setattr(cpu_speed, "bf16_supported", lambda: False)
    with cpu_speed.cpu_autocast(True):
        assert layer(x).dtype == torch.float32
