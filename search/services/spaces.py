"""Embedding spaces: registering a model, its per-space HNSW index, which space
serves a user (A/B, sticky), activation and retirement."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from search.models import ChunkEmbedding, EmbeddingSpace, SpaceStatus
from search.services import encoders

log = logging.getLogger(__name__)

SERVING = (SpaceStatus.BUILDING, SpaceStatus.READY, SpaceStatus.ACTIVE)


class SpaceError(Exception):
    pass


def create_space(name: str, model_path: str | Path, *, model_card: dict | None = None,
                 status: str = SpaceStatus.BUILDING) -> EmbeddingSpace:
    """Register a model folder as a space: dimension, max length, prompts and
    normalisation are read from the model; the space's HNSW index is created."""
    model_path = str(Path(model_path).resolve())
    if not (Path(model_path) / "modules.json").exists() and not (Path(model_path) / "config.json").exists():
        raise SpaceError(f"{model_path} is not a sentence-transformers model folder")
    info = encoders.describe_model(model_path)
    with transaction.atomic():
        space = EmbeddingSpace.objects.create(
            name=name, model_path=model_path, dimension=info.dimension, max_seq_length=info.max_seq_length,
            query_prefix=info.query_prefix, passage_prefix=info.passage_prefix, normalize=info.normalize,
            status=status, model_card=model_card or {})
        create_index(space)
    return space


def create_index(space: EmbeddingSpace, *, concurrently: bool = False) -> None:
    """The partial HNSW expression index of one space. Queries must use the
    same expression (`embedding::vector(D)` with `space_id = S`) to hit it."""
    sql = (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {space.index_name} "
           f"ON search_chunkembedding USING hnsw ((embedding::vector({int(space.dimension)})) vector_cosine_ops) "
           f"WHERE space_id = {int(space.pk)}")
    with connection.cursor() as cur:
        if not concurrently:
            # Deferred FK checks queued on the table in this transaction block DDL: run them now.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(sql)


def drop_index(space: EmbeddingSpace) -> None:
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(f"DROP INDEX IF EXISTS {space.index_name}")


def active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.filter(status=SpaceStatus.ACTIVE).first()


def active_model_path() -> str | None:
    """The active space's model folder: chunks are counted with the tokenizer of
    the model that will read them (settings.CHUNKING_MODEL_RESOLVER names this)."""
    space = active_space()
    return space.model_path if space else None


def serving_spaces():
    """Spaces that must receive new documents (dual-write during a migration)."""
    return EmbeddingSpace.objects.filter(status__in=SERVING)


def ab_candidates() -> list[EmbeddingSpace]:
    """Ready spaces serving an A/B share of the users beside the active one."""
    return list(EmbeddingSpace.objects.filter(status=SpaceStatus.READY, traffic_share__gt=0).order_by("pk"))


def routing() -> tuple[EmbeddingSpace | None, list[EmbeddingSpace]]:
    """(the active space, the A/B candidates) read in ONE query: one snapshot, so a
    request during a promote or a rollback sees the spaces before it or after it,
    never the active space of one and the candidates of the other."""
    rows = list(EmbeddingSpace.objects.filter(Q(status=SpaceStatus.ACTIVE)
                                              | Q(status=SpaceStatus.READY, traffic_share__gt=0)).order_by("pk"))
    active = next((s for s in rows if s.status == SpaceStatus.ACTIVE), None)
    return active, [s for s in rows if s.status == SpaceStatus.READY]


def searched_spaces() -> list[EmbeddingSpace]:
    """Spaces users' searches run on: the active one and the A/B candidates."""
    active, candidates = routing()
    return ([active] if active else []) + candidates


def space_for(user, client_id: str | None = None) -> EmbeddingSpace | None:
    """The active space, or a ready candidate for the users in its A/B share.
    Sticky: the same user (or anonymous visitor, by their cookie id) always
    lands in the same bucket; an anonymous caller without one gets the active space."""
    active, candidates = routing()
    if not candidates:
        return active
    bucket = ab_bucket(user, client_id)
    if bucket is None:
        return active
    edge = 0.0
    for candidate in candidates:
        edge += candidate.traffic_share
        if bucket < edge:
            return candidate
    return active


def ab_bucket(user, client_id: str | None = None) -> float | None:
    """A user's (or anonymous visitor's, by their cookie id) sticky place in [0, 1] for
    the A/B test: the candidates' shares are laid end to end from 0, in pk order, and
    a place below their sum lands in one of them. None: no identity, the active space."""
    if getattr(user, "is_authenticated", False):
        identity = f"user:{user.pk}"
    elif client_id:
        identity = f"client:{client_id}"
    else:
        return None
    return int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def activate(space: EmbeddingSpace) -> EmbeddingSpace:
    """Promote atomically: the previous active space becomes ready (kept for rollback)."""
    with transaction.atomic():
        EmbeddingSpace.objects.select_for_update().filter(status=SpaceStatus.ACTIVE).exclude(pk=space.pk) \
            .update(status=SpaceStatus.READY, traffic_share=0)
        space.status = SpaceStatus.ACTIVE
        space.traffic_share = 0
        space.activated_at = timezone.now()
        space.save(update_fields=["status", "traffic_share", "activated_at"])
    return space


def space_storage(space: EmbeddingSpace) -> dict:
    """One space's rows, vector bytes (as stored) and index bytes."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), coalesce(sum(pg_column_size(embedding)), 0) FROM search_chunkembedding "
                    "WHERE space_id = %s", [space.pk])
        rows, vector_bytes = cur.fetchone()
        cur.execute("SELECT CASE WHEN to_regclass(%s) IS NULL THEN 0 ELSE pg_relation_size(to_regclass(%s)) END",
                    [space.index_name, space.index_name])
        index_bytes = cur.fetchone()[0]
    return {"rows": int(rows), "vector_bytes": int(vector_bytes), "index_bytes": int(index_bytes),
            "total_bytes": int(vector_bytes) + int(index_bytes)}


def retire(space: EmbeddingSpace) -> dict:
    """Free a space's vectors and index at once (`manage.py space retire`); returns the storage
    saved in bytes. A migration's old space is retired by search.services.migration_retire."""
    space.refresh_from_db(fields=["status"])
    if space.status == SpaceStatus.ACTIVE:
        raise SpaceError("Activate another space before retiring the active one.")
    before = space_storage(space)
    drop_index(space)
    rows, _ = ChunkEmbedding.objects.filter(space=space).delete()
    space.status = SpaceStatus.RETIRED
    space.traffic_share = 0
    space.retired_at = timezone.now()
    space.save(update_fields=["status", "traffic_share", "retired_at"])
    return {"rows": rows, "index_bytes": before["index_bytes"], "vector_bytes": before["vector_bytes"]}


def _index_exists(space: EmbeddingSpace) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [space.index_name])
        return cur.fetchone()[0] is not None
