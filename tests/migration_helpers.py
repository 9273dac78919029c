"""Fixtures for the migration tests (issue 11): two tiny sentence-transformers
models built on the fly with different dimensions and max lengths (MiniLM's
tokenizer, random 2-layer BERTs: encoding takes milliseconds), an active source
space over a few processed documents, and a ready target space."""
from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest
from django.db import connections

from documents.services.processing import process_document
from search.migration_models import WORKER_STATES, SpaceMigration
from search.models import EmbeddingSpace, SpaceStatus
from search.services import embedding, spaces
from tests import factories as f


def build_tiny_model(folder, minilm_path: str, hidden: int, max_len: int, seed: int) -> str:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    hf = folder / "hf"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path, local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=max_len)
    model = SentenceTransformer(modules=[transformer, models.Pooling(hidden, "mean"), models.Normalize()],
                                device="cpu")
    out = folder / "model"
    model.save(str(out))
    shutil.rmtree(hf)
    return str(out)


@pytest.fixture(autouse=True)
def english():
    """Refusals are matched in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory, minilm_path):
    """(source model: 48 dims, 64 tokens; target model: 32 dims, 48 tokens)."""
    return (build_tiny_model(tmp_path_factory.mktemp("tiny-48"), minilm_path, 48, 64, 1),
            build_tiny_model(tmp_path_factory.mktemp("tiny-32"), minilm_path, 32, 48, 2))


@pytest.fixture(scope="session")
def wide_to_small(tmp_path_factory, minilm_path):
    """The issue's switch, 1024 → 384 dimensions: (source model: 1024 dims, 96 tokens;
    target model: 384 dims, 48 tokens). The 1024-dim one takes a few seconds to build."""
    return (build_tiny_model(tmp_path_factory.mktemp("tiny-1024"), minilm_path, 1024, 96, 3),
            build_tiny_model(tmp_path_factory.mktemp("tiny-384"), minilm_path, 384, 48, 4))


SECTIONS = ["Nghỉ phép năm", "Làm việc từ xa", "Bảo hiểm", "Công tác phí", "Đào tạo", "Thiết bị"]


def text_for(n: int) -> str:
    parts = [f"# Quy định số {n}\n"]
    for i, title in enumerate(SECTIONS[: 2 + n % 3]):
        parts.append(f"## {title}\n\nNội dung {title.lower()} của quy định {n}, điều {i}: nhân viên thực hiện "
                     f"theo hướng dẫn của phòng nhân sự và báo cáo trưởng phòng trước ngày {10 + i}.\n")
    return "\n".join(parts)


def ready_document(n: int, level: int = 1, departments=("HR",)):
    doc = f.document(level, text=text_for(n), status="pending", code=f"MIG{n}", departments=departments)
    assert process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return doc


@pytest.fixture
def world(tiny_pair, settings):
    """An active 48-dim source space with its vectors over six documents, and a ready
    32-dim target space (as a registered fine-tuned package would be)."""
    settings.MIGRATION_BATCH = 3
    settings.MIGRATION_STEP_SECONDS = 0  # one batch a step: the steps are what is tested
    settings.MIGRATION_HEARTBEAT_SECONDS = 1
    source = spaces.create_space("source-48", tiny_pair[0])
    spaces.activate(source)
    docs = [ready_document(n) for n in range(6)]
    embedding.backfill(source)
    target = spaces.create_space("target-32", tiny_pair[1], status=SpaceStatus.READY)
    return source, target, docs


def drive(migration: SpaceMigration, limit: int = 500) -> SpaceMigration:
    """Run the migration's steps in this process, as a worker would, until no worker has work."""
    from search.services.migration_worker import run_step

    for _ in range(limit):
        migration.refresh_from_db()
        if migration.state not in WORKER_STATES and not (migration.cancel_requested and migration.is_open):
            return migration
        run_step(migration.pk, migration.step_token)
    raise AssertionError(f"migration {migration.pk} still {migration.state} after {limit} steps")


def chunk_ids() -> set[int]:
    from documents.models import Chunk

    return set(Chunk.objects.values_list("pk", flat=True))


def vector_chunk_ids(space: EmbeddingSpace) -> list[int]:
    """Chunks with vectors in `space`, once each (a chunk longer than the space's model
    reads has several token windows, search.services.windows; each has a window 0)."""
    return list(space.embeddings.filter(window=0).values_list("chunk_id", flat=True))


def compared(migration: SpaceMigration, source_mrr: float = 0.5, target_mrr: float = 0.5,
             set_name: str = "samples") -> SpaceMigration:
    """Record a finished comparison with the given MRR@10 of each space, as
    search.services.migration_gate.run_compare stores it (test_migration_gate runs the
    real one): the gate before the A/B test and promote reads it."""
    from django.utils import timezone

    now = timezone.now().isoformat(timespec="seconds")
    migration.refresh_from_db()
    spaces = {role: {"name": space.name, "dimension": space.dimension, "run": None, "queries": 10,
                     "metrics": {"MRR@10": mrr, "nDCG@10": mrr}}
              for role, space, mrr in (("source", migration.source, source_mrr),
                                       ("target", migration.target, target_mrr))}
    SpaceMigration.objects.filter(pk=migration.pk).update(comparison={
        "status": "done", "token": "test", "set": set_name, "requested_by": "tester", "requested_at": now,
        "updated_at": now, "finished_at": now, "metric": "MRR@10", "mode": "hybrid", "spaces": spaces,
        "difference": round(target_mrr - source_mrr, 6), "calibration": {"set": set_name, "in_sample": True}})
    migration.refresh_from_db()
    return migration


# --- on a real worker (tests marked `worker`) -----------------------------------------

# A worker's settings: one chunk a batch, short steps and heartbeats, quick retries.
ENV = {"PORTAL_MIGRATION_BATCH": 1, "PORTAL_MIGRATION_STEP_SECONDS": 1, "PORTAL_MIGRATION_HEARTBEAT_SECONDS": 1,
       "PORTAL_TASK_RETRY_MAX_DELAY": 2}


@contextmanager
def document_locked(doc):
    """Hold the document's row lock on a connection of our own until the block ends: a
    backfill batch that reaches one of its chunks waits there (it share-locks the
    document to write), so "during the backfill" is certain, not a race."""
    conn = connections.create_connection("default")
    conn.connect()
    conn.set_autocommit(False)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM documents_document WHERE id = %s FOR UPDATE", [doc.pk])
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def row(migration) -> SpaceMigration:
    return SpaceMigration.objects.get(pk=migration.pk)


def held_before(doc, migration, timeout: float = 120):
    """Wait until the backfill waits at `doc`: the cursor at the chunk just before it."""
    from documents.models import Chunk
    from tests.conftest import wait_until

    before = Chunk.objects.filter(pk__lt=doc.chunks.order_by("pk").first().pk).order_by("-pk").first().pk
    wait_until(lambda: row(migration).cursor == before, timeout, 0.1,
               message="the backfill to reach the locked document")
    return before


def every_chunk_in(space) -> bool:
    return sorted(vector_chunk_ids(space)) == sorted(chunk_ids())


# --- the API, as staff --------------------------------------------------------------------

@pytest.fixture
def staff_client():
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(f.user("root", is_superuser=True, is_staff=True))
    return client


def post(client, url, body=None):
    import json

    return client.post(url, json.dumps(body or {}), content_type="application/json")

