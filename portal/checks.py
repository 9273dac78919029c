"""System checks that make a bad configuration fail loudly at start."""
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.compatibility, deploy=False)
def check_environment(app_configs, **kwargs):
    errors = [
        Error(f"Bad configuration value: {problem}", hint="See docs/configuration.md.", id="portal.E001")
        for problem in settings.CONFIG_ERRORS
    ]
    if settings.CHUNK_OVERLAP_TOKENS >= settings.CHUNK_MAX_TOKENS:
        errors.append(Error("PORTAL_CHUNK_OVERLAP_TOKENS must be smaller than PORTAL_CHUNK_MAX_TOKENS.",
                            id="portal.E002"))
    if settings.EMBEDDING_MODEL:
        from pathlib import Path

        if not (Path(settings.EMBEDDING_MODEL) / "config.json").exists() and not (
                Path(settings.EMBEDDING_MODEL) / "modules.json").exists():
            errors.append(Error(f"EMBEDDING_MODEL={settings.EMBEDDING_MODEL!r} is not a model folder "
                                "(no config.json or modules.json).", id="portal.E003"))
    errors += _check_task_timing()
    return errors


def _check_task_timing():
    problems = []
    if settings.INGEST_LEASE_SECONDS < 2 * settings.INGEST_HEARTBEAT_SECONDS:
        problems.append(Error("PORTAL_INGEST_LEASE_SECONDS must be at least twice PORTAL_INGEST_HEARTBEAT_SECONDS, "
                              "or live workers' documents are taken over.", id="portal.E010"))
    longest = max(settings.INGEST_TIME_LIMIT, settings.EMBED_TIME_LIMIT) + 30
    if settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] < longest:
        problems.append(Warning(
            f"PORTAL_TASK_VISIBILITY_TIMEOUT is shorter than the longest task time limit ({longest} s): "
            "long tasks are delivered twice (harmless, but wasted work).", id="portal.W010"))
    return problems


@register(Tags.security, deploy=True)
def check_secret_key(app_configs, **kwargs):
    if settings.SECRET_KEY.startswith("dev-only") or len(settings.SECRET_KEY) < 32:
        return [Error("PORTAL_SECRET_KEY is the development default or too short.",
                      hint="Set a long random PORTAL_SECRET_KEY in production.", id="portal.E004")]
    return []


@register(Tags.caches, deploy=False)
def check_shared_cache(app_configs, **kwargs):
    if settings.CACHE_URL is None:
        return [Warning("No Redis for the shared cache: rate limits are counted per web process, so "
                        "N processes let N times the documented rates through.",
                        hint="Set PORTAL_CACHE_URL (or use a Redis broker).", id="portal.W010")]
    return []
