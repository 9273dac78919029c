"""Rate limits counted in the cache every web process shares.

Per-process counters let N gunicorn workers × the limit through (issue 9). Here
one sliding window per (scope, client) lives in the shared Redis and is updated
by one Lua script — drop what left the window, count, admit or refuse — so two
processes can never both take the last slot. The window is measured on the
Redis server's clock, the same for every web host.

- `SharedScopedThrottle`, `SharedAnonThrottle`, `SharedUserThrottle`: DRF's
  throttles (same rates, same keys) on that counter; the API uses them.
- `rate_limit(scope)`: the same limit on a portal view, per signed-in user or
  else per client address; a refused request gets 429, a translated page and
  Retry-After, and never reaches the view.
- `client_ip(request)`: the client address, trusting X-Forwarded-For only from
  the PORTAL_PROXY_COUNT proxies in front (else any client could pick a fresh
  address per request); django-axes uses it too.

When Redis cannot be reached the request is let through and the outage logged
(at most once a minute): a rate limit must not turn a broker outage into 500s
on search. Without a Redis cache at all (a non-Redis broker and no
PORTAL_CACHE_URL) the counters fall back to the Django cache of each process,
and the check portal.W010 says so.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import render
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, SimpleRateThrottle, UserRateThrottle

log = logging.getLogger(__name__)

# KEYS[1] the window; ARGV: limit, window in ms, a unique member. Returns -1 when
# admitted, else the milliseconds until the oldest counted request leaves the window.
_SLIDING_WINDOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

_lock = threading.Lock()
_client = None
_client_url = None
_script = None
_last_outage_log = 0.0


def redis_url() -> str | None:
    """The shared cache's Redis URL (settings.CACHES['default']), or None."""
    default = settings.CACHES["default"]
    if default["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
        return default["LOCATION"]
    return None


def _redis():
    global _client, _client_url, _script
    url = redis_url()
    if url is None:
        return None, None
    with _lock:
        if _client is None or _client_url != url:  # settings may change (tests)
            import redis

            _client = redis.Redis.from_url(url, **settings.CACHES["default"].get("OPTIONS", {}))
            _client_url = url
            _script = _client.register_script(_SLIDING_WINDOW)
    return _client, _script


def _log_outage(exc: Exception) -> None:
    global _last_outage_log
    now = time.monotonic()
    if now - _last_outage_log > 60:
        _last_outage_log = now
        log.error("rate limits are off: the shared cache is unreachable (%s)", exc)


def hit(key: str, limit: int, duration: float) -> float | None:
    """Count one request against `limit` per `duration` seconds: None when it is
    admitted, else the seconds until the next one would be."""
    client, script = _redis()
    if client is None:
        return _hit_local(key, limit, duration)
    import redis

    try:
        wait_ms = script(keys=[key], args=[limit, int(duration * 1000), uuid.uuid4().hex])
    except redis.RedisError as exc:
        _log_outage(exc)
        return None
    return None if wait_ms < 0 else wait_ms / 1000


def _hit_local(key: str, limit: int, duration: float) -> float | None:
    """DRF's own sliding window on the Django cache: right within one process only."""
    now = time.time()
    history = [t for t in cache.get(key, []) if t > now - duration]
    if len(history) >= limit:
        return history[-1] + duration - now
    cache.set(key, [now] + history, duration)
    return None


def client_ip(request) -> str | None:
    """The client address: REMOTE_ADDR, or behind PORTAL_PROXY_COUNT trusted
    proxies the address the outermost of them saw (X-Forwarded-For from the right)."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
    return addresses[-min(proxies, len(addresses))] if addresses else remote


class SharedRateThrottle(SimpleRateThrottle):
    """A DRF throttle counted in the shared cache (see the module docstring)."""

    _wait: float | None = None

    def get_ident(self, request):
        return client_ip(request)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self._wait = hit(self.key, self.num_requests, self.duration)
        return self._wait is None

    def wait(self):
        return self._wait


class SharedScopedThrottle(ScopedRateThrottle, SharedRateThrottle):
    """`throttle_scope` on the view names the rate in DEFAULT_THROTTLE_RATES."""


class SharedAnonThrottle(AnonRateThrottle, SharedRateThrottle):
    pass


class SharedUserThrottle(UserRateThrottle, SharedRateThrottle):
    pass


class PortalThrottle(SharedRateThrottle):
    """One rate per scope (DEFAULT_THROTTLE_RATES[scope]) for portal views:
    per signed-in user, else per client address."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def get_rate(self):
        from rest_framework.settings import api_settings

        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]  # read now: settings may change

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ident = f"user-{user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


def too_many_requests(request, wait: float | None):
    """429 with a translated page (the fragment alone for htmx) and Retry-After."""
    seconds = max(1, math.ceil(wait or 1))
    template = ("portal/_too_many_requests.html" if getattr(request, "htmx", False)
                else "portal/too_many_requests.html")
    response = render(request, template, {"retry_after": seconds}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def rate_limit(scope: str):
    """Decorator: at most DEFAULT_THROTTLE_RATES[scope] requests per client to
    this view, counted across every web process."""
    def decorator(view):
        @wraps(view)
        def limited(request, *args, **kwargs):
            throttle = PortalThrottle(scope)
            if not throttle.allow_request(request, None):
                return too_many_requests(request, throttle.wait())
            return view(request, *args, **kwargs)
        return limited
    return decorator
