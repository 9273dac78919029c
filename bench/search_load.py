"""Setting up bench/search.py's database: creating and migrating the bench
database on the embedded server, the embedding space (created WITHOUT its HNSW
index), bulk COPY of documents / chunks / embeddings, the HNSW and keyword
index builds, table sizes, and the access scenarios (users, allowed SQL and the
matching per-chunk numpy masks).
"""
from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

import search_data as data

SPACE_NAME = "bench-minilm"
MEMBER, ADMIN = "bench-member", "bench-admin"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- database ---------------------------------------------------------------

def setup_django(database: str) -> None:
    os.environ["PORTAL_DATABASE_NAME"] = database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
    os.environ["PORTAL_API_SEARCH_RATE"] = "1000000/min"  # the bench is not a flood to throttle
    import django
    from django.conf import settings

    django.setup()
    from portal import embedded

    if not settings.USING_EMBEDDED_DATABASE:
        sys.exit("DATABASE_URL is set: this benchmark only runs against the embedded server")
    embedded.start_configured(settings)  # settings start nothing; a benchmark is an entry point
    with embedded._connect(Path(settings.DATABASES["default"]["HOST"])) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
            log(f"created database {database}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_database(database: str) -> None:
    from django.conf import settings
    from django.db import connections

    from portal import embedded

    connections.close_all()
    with embedded._connect(Path(settings.DATABASES["default"]["HOST"])) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    log(f"dropped database {database}")


def sql1(query: str, params=None):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params or [])
        row = cur.fetchone()
        return row[0] if row and len(row) == 1 else row


def ensure_space():
    from documents.services.tokens import default_model_path
    from search.models import EmbeddingSpace, SpaceStatus
    from search.services import encoders

    space = EmbeddingSpace.objects.filter(name=SPACE_NAME).first()
    if space:
        return space
    model_path = str(Path(default_model_path()).resolve())
    info = encoders.describe_model(model_path)
    EmbeddingSpace.objects.filter(status=SpaceStatus.ACTIVE).update(status=SpaceStatus.READY)
    # Created like spaces.create_space, but WITHOUT the index: it is built after the bulk load.
    return EmbeddingSpace.objects.create(
        name=SPACE_NAME, model_path=model_path, dimension=info.dimension, max_seq_length=info.max_seq_length,
        query_prefix=info.query_prefix, passage_prefix=info.passage_prefix, normalize=info.normalize,
        status=SpaceStatus.ACTIVE, activated_at=dt.datetime.now(dt.timezone.utc))


def reset_data() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'search_chunkembedding' "
                    "AND indexname LIKE 'search_chunkembedding_hnsw_%'")
        for (name,) in cur.fetchall():
            cur.execute(f'DROP INDEX IF EXISTS "{name}"')
        cur.execute("TRUNCATE documents_document, documents_department, search_embeddingspace, "
                    "search_keywordterm, search_keywordstats, search_searchlog RESTART IDENTITY CASCADE")


def column_types(table: str) -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", [table])
        return dict(cur.fetchall())


def load(n: int, texts: list[str], vectors: np.ndarray | None, access: np.ndarray, department: np.ndarray,
         space) -> dict:
    """COPY documents, department links, chunks and embeddings (no HNSW index yet;
    no embeddings when `vectors` is None: a keyword-only corpus). Chunk i's text
    is texts[i mod len(texts)]: pass N distinct texts (search_data.distinct_texts)."""
    import hashlib

    from django.db import connection, transaction

    from documents.models import Department

    types = column_types("search_chunkembedding")
    assert all(types[c] == "bigint" for c in ("id", "chunk_id", "space_id", "document_id")), types
    n_docs = math.ceil(n / data.CHUNKS_PER_DOCUMENT)
    depts = Department.objects.bulk_create(
        [Department(code=f"dept{i}", name=f"Phòng ban {i}") for i in range(data.DEPARTMENTS)])
    dept_ids = [d.pk for d in depts]
    now = dt.datetime.now(dt.timezone.utc)
    timings = {}
    with transaction.atomic(), connection.cursor() as cur:
        t = time.perf_counter()
        cols = ("id, code, title, document_type, access_level, language, source_file, original_filename, "
                "file_size, checksum, status, progress, status_message, error, content, attempts, version, "
                "created_at, updated_at, processed_at, holder, title_source")
        with cur.copy(f"COPY documents_document ({cols}) FROM STDIN") as copy:
            for i in range(n_docs):
                doc_id = i + 1
                code = f"BENCH_{doc_id:07d}"
                copy.write_row((doc_id, code, f"Tài liệu thử nghiệm {doc_id}", "policy", int(access[i]), "vi",
                                f"bench/{code}.txt", f"{code}.txt", 0, hashlib.sha256(code.encode()).hexdigest(),
                                "ready", 100, "", "", "", 1, "1.0", now, now, now, "", "uploader"))
        with cur.copy("COPY documents_document_departments (document_id, department_id) FROM STDIN") as copy:
            for i in range(n_docs):
                copy.write_row((i + 1, dept_ids[int(department[i])]))
        timings["documents_s"] = time.perf_counter() - t
        t = time.perf_counter()
        b = len(texts)
        tokens = [len(x.split()) for x in texts]
        with cur.copy("COPY documents_chunk (id, document_id, ordinal, text, token_count, heading_path, "
                      "char_start, char_end, keywords) FROM STDIN") as copy:
            for i in range(n):
                text = texts[i % b]
                copy.write_row((i + 1, i // data.CHUNKS_PER_DOCUMENT + 1, i % data.CHUNKS_PER_DOCUMENT, text,
                                tokens[i % b], "{}", 0, len(text), "{}"))
                if (i + 1) % 200_000 == 0:
                    log(f"  chunks {i + 1}/{n}")
        timings["chunks_s"] = time.perf_counter() - t
        if vectors is not None:
            t = time.perf_counter()
            with cur.copy("COPY search_chunkembedding (id, chunk_id, space_id, document_id, embedding) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(data.COPY_HEADER)
                step = 20_000
                for start in range(0, n, step):
                    copy.write(data.embedding_copy_block(vectors[start:start + step], start, space.pk))
                    if (start + step) % 200_000 == 0:
                        log(f"  embeddings {start + step}/{n}")
                copy.write(data.COPY_TRAILER)
            timings["embeddings_s"] = time.perf_counter() - t
        for table in ("documents_document", "documents_chunk", "search_chunkembedding",
                      "documents_document_departments"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))")
    if space is not None:
        space.embedded_chunks = n
        space.save(update_fields=["embedded_chunks"])
    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) documents_document, documents_document_departments, documents_chunk, "
                    "search_chunkembedding")
    timings["vacuum_analyze_s"] = time.perf_counter() - t
    if vectors is not None:
        timings["embeddings_rows_per_s"] = n / timings["embeddings_s"]
    timings["chunks_rows_per_s"] = n / timings["chunks_s"]
    return {k: round(v, 2) for k, v in timings.items()}


def build_index(space, maintenance_work_mem: str) -> dict:
    from django.db import connection

    from search.services.spaces import create_index

    with connection.cursor() as cur:
        cur.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        cur.execute("SHOW max_parallel_maintenance_workers")
        workers = cur.fetchone()[0]
    t = time.perf_counter()
    create_index(space)
    seconds = time.perf_counter() - t
    with connection.cursor() as cur:
        cur.execute("RESET maintenance_work_mem")
        cur.execute("ANALYZE search_chunkembedding")
    return {"seconds": round(seconds, 1), "maintenance_work_mem": maintenance_work_mem,
            "max_parallel_maintenance_workers": int(workers)}


def sizes(space) -> dict:
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    out = {
        "hnsw_index_mb": mb(sql1("SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)", [space.index_name])),
        "embedding_table_heap_mb": mb(sql1("SELECT pg_relation_size('search_chunkembedding')")),
        "embedding_table_total_mb": mb(sql1("SELECT pg_total_relation_size('search_chunkembedding')")),
        "chunk_table_total_mb": mb(sql1("SELECT pg_total_relation_size('documents_chunk')")),
        "postings_total_mb": mb(sql1("SELECT pg_total_relation_size('search_keywordposting')")),
    }
    out["postings_rows_estimate"] = int(sql1(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = 'search_keywordposting'::regclass"))
    return out


def build_keyword(n: int, keyword_chunks: int | None) -> dict:
    """keyword_index.rebuild(); with --keyword-chunks M only the first M chunks'
    documents are ready while it runs (the others are set to processing and back)."""
    from django.db import connection

    from documents.models import Chunk
    from search.services import keyword_index

    sample = list(Chunk.objects.order_by("id").values_list("text", flat=True)[:1000])
    t = time.perf_counter()
    for text in sample:
        keyword_index._analyse(text)
    per_chunk = (time.perf_counter() - t) / max(1, len(sample))
    target = min(n, keyword_chunks or n)
    estimate = per_chunk * target * 2.5  # analysis ≈ 40% of a rebuild, measured at 100k
    log(f"keyword rebuild over {target} chunks: rough estimate {estimate / 60:.0f} min")
    if target > 300_000 and not keyword_chunks:
        log("  (that is long: --keyword-chunks M indexes only the first M chunks)")
    hidden_from = None
    if target < n:
        hidden_from = math.ceil(target / data.CHUNKS_PER_DOCUMENT) + 1
        with connection.cursor() as cur:
            cur.execute("UPDATE documents_document SET status = 'processing' WHERE id >= %s", [hidden_from])
    last = [0.0]

    def progress(phase: str, done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"  keyword {phase}: {done}/{total}")

    t = time.perf_counter()
    try:
        written = keyword_index.rebuild(progress)
    finally:
        if hidden_from:
            with connection.cursor() as cur:
                cur.execute("UPDATE documents_document SET status = 'ready' WHERE id >= %s", [hidden_from])
                cur.execute("VACUUM (ANALYZE) documents_document")
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 1), "chunks_indexed": target, "postings": written,
            "chunks_per_s": round(target / seconds, 1)}


# --- scenarios --------------------------------------------------------------

def users():
    from django.contrib.auth import get_user_model

    from documents.models import Department

    User = get_user_model()
    admin, _ = User.objects.get_or_create(username=ADMIN, defaults={"is_superuser": True, "is_staff": True})
    member, _ = User.objects.get_or_create(username=MEMBER, defaults={"clearance": 2})
    member.departments.set([Department.objects.get(code="dept0")])
    return admin, member


def scenarios(n: int, access: np.ndarray, department: np.ndarray) -> dict:
    """name → {user, filters, scope, allowed (its (sql, params)), per-chunk mask, share}."""
    from search.services.filters import SearchFilters, search_scope

    admin, member = users()
    doc_of_chunk = np.arange(n) // data.CHUNKS_PER_DOCUMENT
    acc, dep = access[doc_of_chunk], department[doc_of_chunk]
    member_mask = (acc == 0) | (acc == 1) | ((acc == 2) & (dep == 0))
    out = {
        "all": (admin, None, np.ones(n, dtype=bool)),
        "dept": (member, SearchFilters(departments=["dept0"]), member_mask & (dep == 0)),
        "member": (member, None, member_mask),
    }
    result = {}
    for name, (user, filters, mask) in out.items():
        scope = search_scope(user, filters)
        allowed = (scope.allowed_sql, scope.params)
        docs_sql = int(sql1(f"SELECT count(*) FROM ({allowed[0]}) a", allowed[1]))
        docs_mask = int(np.unique(doc_of_chunk[mask]).size)
        if docs_sql != docs_mask:
            raise SystemExit(f"scenario {name}: SQL allows {docs_sql} documents, the numpy mask {docs_mask}")
        result[name] = {"user": user, "filters": filters, "scope": scope, "allowed": allowed, "mask": mask,
                        "share": float(mask.mean())}
        log(f"scenario {name}: {mask.sum()} of {n} chunks visible ({mask.mean():.1%})")
    return result

