"""Typed reading of settings from environment variables.

Every setting the portal reads from the environment is declared here once, with
its type, default and a one-line description. `docs/configuration.md` is written
from the same declarations (``python -m portal.config``), so the two cannot
drift. A value that does not parse is recorded instead of raising at import:
the default is used so the process can still start, and the system check
``portal.E001`` reports every bad value loudly (``manage.py check`` fails, and
so does every command that runs checks: runserver, migrate, the test suite).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str
    default: Any
    help: str


SETTINGS: list[Setting] = []
ERRORS: list[str] = []


def _declare(name: str, kind: str, default: Any, help: str, parse: Callable[[str], Any],
             shown: Any = None) -> Any:
    SETTINGS.append(Setting(name, kind, default if shown is None else shown, help))
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        ERRORS.append(f"{name}={raw!r}: {exc}")
        return default


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def env_bool(name: str, default: bool, help: str) -> bool:
    return _declare(name, "bool", default, help, _parse_bool)


def env_int(name: str, default: int, help: str, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value

    return _declare(name, "int", default, help, parse)


def env_float(name: str, default: float, help: str, *, minimum: float | None = None,
              maximum: float | None = None) -> float:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value

    return _declare(name, "float", default, help, parse)


def env_str(name: str, default: str | None, help: str, *,
            choices: tuple[str, ...] | None = None) -> str | None:
    def parse(raw: str) -> str:
        if choices and raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return _declare(name, "str", default, help, parse)


def env_rate(name: str, default: str, help: str) -> str:
    """A request rate as DRF writes it: N/s, N/min, N/hour or N/day."""
    def parse(raw: str) -> str:
        count, _, period = raw.strip().partition("/")
        if not count.isdigit() or int(count) < 1 or period[:1] not in {"s", "m", "h", "d"}:
            raise ValueError("expected N/s, N/min, N/hour or N/day with N >= 1")
        return raw.strip()

    return _declare(name, "rate", default, help, parse)


def env_list(name: str, default: list[str], help: str) -> list[str]:
    return _declare(name, "list", default, help,
                    lambda raw: [item.strip() for item in raw.split(",") if item.strip()])


def env_path(name: str, default: Path, help: str, shown: str | None = None) -> Path:
    def parse(raw: str) -> Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (BASE_DIR / path)

    return _declare(name, "path", default, help, parse, shown)


def parse_database_url(url: str) -> dict[str, Any]:
    """postgres://user:pass@host:port/name?options → a Django DATABASES entry."""
    parts = urlparse(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError("only postgres:// URLs are supported (the portal needs pgvector)")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("the URL names no database")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(parts.port or ""),
    }


def env_http_url(name: str, help: str) -> str | None:
    """An http(s) URL of a service the portal calls."""
    def parse(raw: str) -> str:
        parts = urlparse(raw.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return raw.strip()

    return _declare(name, "url", None, help, parse)


def env_database_url(name: str, help: str) -> dict[str, Any] | None:
    return _declare(name, "url", None, help, parse_database_url)


def env_broker_url(name: str, help: str) -> str | None:
    def parse(raw: str) -> str:
        scheme = urlparse(raw).scheme
        if scheme not in {"redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp", "filesystem", "memory"}:
            raise ValueError(f"unsupported broker scheme {scheme!r}")
        return raw

    return _declare(name, "url", None, help, parse)


def env_cache_url(name: str, help: str) -> str | None:
    def parse(raw: str) -> str:
        scheme = urlparse(raw).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"unsupported cache scheme {scheme!r} (redis://, rediss:// or unix://)")
        return raw

    return _declare(name, "url", None, help, parse)


CACHE_DATABASE = 1  # the Redis database the shared cache takes on the broker's server


def _redis_target(url: str) -> tuple[str, int] | None:
    """(server, database) of a Redis URL, or None for another kind of URL."""
    parts = urlparse(url)
    if parts.scheme in {"redis+socket", "unix"}:
        query = dict(item.split("=", 1) for item in parts.query.split("&") if "=" in item)
        return f"unix:{parts.path}", int(query.get("db") or query.get("virtual_host") or 0)
    if parts.scheme in {"redis", "rediss"}:
        db = parts.path.strip("/")
        return f"tcp:{parts.hostname or 'localhost'}:{parts.port or 6379}", int(db or 0)
    return None


def shared_cache_url(explicit: str | None, broker_url: str | None) -> str | None:
    """The Redis URL of the cache every web process shares (throttle counters).

    PORTAL_CACHE_URL when set; otherwise the broker's Redis (the embedded one on
    its Unix socket, or CELERY_BROKER_URL) with database 1, so `cache.clear()`
    can never flush queued tasks. None: the broker is not Redis and nothing was
    set (the check portal.W010 says the counters are then per process)."""
    broker = _redis_target(broker_url) if broker_url else None
    if explicit:
        if broker is not None and _redis_target(explicit) == broker:
            ERRORS.append("PORTAL_CACHE_URL: it names the broker's own Redis database; "
                          "use another database number (a cache flush would drop queued tasks)")
        return explicit
    if broker is None:
        return None
    server, db = broker
    if db == CACHE_DATABASE:
        ERRORS.append(f"PORTAL_CACHE_URL: the broker uses Redis database {CACHE_DATABASE}, which the "
                      "shared cache takes by default; set PORTAL_CACHE_URL to another database")
    parts = urlparse(broker_url)
    if server.startswith("unix:"):
        return f"unix://{parts.path}?db={CACHE_DATABASE}"
    return parts._replace(path=f"/{CACHE_DATABASE}", query="").geturl()


def render_markdown() -> str:
    """The configuration reference, generated from the declarations above."""
    lines = [
        "# Configuration",
        "",
        "Every setting comes from an environment variable. A value that does not",
        "parse makes `manage.py check` (and runserver, migrate, the worker's start)",
        "fail with the variable's name and the reason. Generated by",
        "`python -m portal.config > docs/configuration.md`.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = s.default
        if isinstance(default, Path):
            try:
                default = "<project>/" + str(default.relative_to(BASE_DIR))
            except ValueError:
                default = str(default)
        elif isinstance(default, list):
            default = ",".join(default)
        elif default is None:
            default = "(unset)"
        lines.append(f"| `{s.name}` | {s.kind} | `{default}` | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation generator
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from portal import config  # the instance settings.py filled, not this __main__ copy

    print(config.render_markdown(), end="")
