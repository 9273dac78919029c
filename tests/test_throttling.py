"""Rate limits counted in the shared Redis (issue 9, items 11 and S7): the API's
throttles and the portal search page hold their rates for all web processes
together, refuse with 429 + Retry-After, and cannot be dodged by a forged
X-Forwarded-For."""
import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client

from search.models import SearchLog
from tests import factories as f
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    """set(scope=rate, …): change DEFAULT_THROTTLE_RATES for this test (the API's
    classes read them at import, so they are patched too)."""
    from rest_framework.throttling import SimpleRateThrottle

    original = dict(SimpleRateThrottle.THROTTLE_RATES)

    def set_rates(**wanted):
        framework = {**django_settings.REST_FRAMEWORK}
        framework["DEFAULT_THROTTLE_RATES"] = {**framework["DEFAULT_THROTTLE_RATES"], **wanted}
        settings.REST_FRAMEWORK = framework
        SimpleRateThrottle.THROTTLE_RATES.update(wanted)

    yield set_rates
    SimpleRateThrottle.THROTTLE_RATES.clear()
    SimpleRateThrottle.THROTTLE_RATES.update(original)


def search_page(client, q="VPN", **extra):
    return client.get("/search/", {"q": q, "mode": "keyword"}, **extra)


def test_the_shared_cache_is_the_brokers_redis_database_1():
    """With no PORTAL_CACHE_URL the counters live in the broker's Redis (here the
    embedded one, on its socket), database 1, never the broker's own database."""
    cache = django_settings.CACHES["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    socket = django_settings.CELERY_BROKER_URL.removeprefix("redis+socket://")
    assert cache["LOCATION"] == f"unix://{socket}?db=1"


def test_portal_search_page_refuses_over_the_rate_with_a_page_and_retry_after(rates):
    rates(search_page="3/min")
    client = Client()
    assert [search_page(client).status_code for _ in range(3)] == [200, 200, 200]
    logged = SearchLog.objects.count()
    refused = search_page(client)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    body = refused.content.decode()
    assert "Bạn đã tìm kiếm quá nhiều lần" in body and "<html" in body
    assert SearchLog.objects.count() == logged  # the refused search never ran
    fragment = search_page(client, HTTP_HX_REQUEST="true")  # htmx: the message alone, swapped in place
    assert fragment.status_code == 429 and "<html" not in fragment.content.decode()
    assert "Bạn đã tìm kiếm quá nhiều lần" in fragment.content.decode()


def test_portal_limit_is_per_user_when_signed_in_and_per_address_otherwise(rates):
    rates(search_page="2/min")
    lan, minh = Client(), Client()
    lan.force_login(f.user("lan"))
    minh.force_login(f.user("minh"))
    assert [search_page(lan).status_code for _ in range(3)] == [200, 200, 429]
    assert search_page(minh).status_code == 200  # another user, same address
    anonymous = Client()
    assert [search_page(anonymous).status_code for _ in range(3)] == [200, 200, 429]
    assert search_page(anonymous, REMOTE_ADDR="10.1.2.3").status_code == 200  # another address


def test_a_forged_forwarded_for_header_does_not_give_a_fresh_count(rates, settings):
    rates(search_page="2/min", search="2/min")
    client = Client()
    codes = [search_page(client, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(3)]
    assert codes == [200, 200, 429]
    api = [client.post("/api/v1/search", json.dumps({"query": "VPN", "mode": "keyword"}),
                       content_type="application/json", HTTP_X_FORWARDED_FOR=f"10.0.1.{i}").status_code
           for i in range(3)]
    assert api == [200, 200, 429]
    # behind one trusted proxy the address it saw (right-most) is the client
    settings.PROXY_COUNT = 1
    assert search_page(client, HTTP_X_FORWARDED_FOR="1.2.3.4, 10.9.9.9").status_code == 200
    assert search_page(client, HTTP_X_FORWARDED_FOR="5.6.7.8, 10.9.9.9").status_code == 200
    assert search_page(client, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_api_default_throttles_use_the_shared_counter(rates):
    from portal import throttling

    rates(anon="2/min")
    client = Client()
    codes = [client.get("/api/v1/documents/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert int(client.get("/api/v1/documents/")["Retry-After"]) >= 1
    assert throttling.redis_url() is not None  # and the counter was Redis's, not the process's


def test_the_window_slides(rates):
    rates(search_page="2/s")
    client = Client()
    assert [search_page(client).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.1)
    assert search_page(client).status_code == 200


def test_an_unreachable_cache_lets_requests_through(rates, settings, tmp_path, caplog):
    """A Redis outage must not turn search into 500s: the limit is off (and logged)."""
    rates(search_page="1/min")
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "LOCATION": f"unix://{tmp_path}/nothing.sock?db=1"}}
    client = Client()
    assert [search_page(client).status_code for _ in range(3)] == [200, 200, 200]


# --- two processes, one limit --------------------------------------------------

HAMMER = """
import json, os, sys, time
import django
django.setup()
from django.test import Client
barrier, ready, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = Client()
client.get("/search/", {"q": "warm", "mode": "keyword"})  # imports and connections before the race
open(ready, "w").close()
while not os.path.exists(barrier):
    time.sleep(0.01)
api, page = [], []
for i in range(n):
    api.append(client.post("/api/v1/search", json.dumps({"query": "VPN", "mode": "keyword"}),
                           content_type="application/json").status_code)
    page.append(client.get("/search/", {"q": "VPN", "mode": "keyword"}).status_code)
print(json.dumps({"api": api, "page": page}))
"""


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_limit(tmp_path):
    """Two separate Django processes (as two gunicorn workers are) hammer the
    search API and the portal search page at the same moment as the same
    anonymous client: together they get exactly the rate, not twice it."""
    from django.db import connection

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings",
           "PORTAL_DATABASE_NAME": connection.settings_dict["NAME"],
           "PORTAL_API_SEARCH_RATE": "30/min", "PORTAL_SEARCH_PAGE_RATE": "25/min",
           "PORTAL_WARM_UP_MODELS": "0"}
    barrier = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(barrier), str(tmp_path / f"ready{i}"), "40"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    from django.core.cache import cache

    from tests.conftest import wait_until

    try:
        wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), timeout=180,
                   interval=0.2, message="both processes warmed up")
    except AssertionError:
        for proc in procs:
            proc.kill()
        raise AssertionError("; ".join(p.communicate()[1][-2000:] for p in procs))
    cache.clear()  # the warm-up requests counted too: the race starts from zero
    barrier.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    api = [code for o in outputs for code in o["api"]]
    page = [code for o in outputs for code in o["page"]]
    assert set(api) == {200, 429} and api.count(200) == 30, api
    assert set(page) == {200, 429} and page.count(200) == 25, page


# --- configuration ----------------------------------------------------------------

@pytest.fixture
def config_errors():
    from portal import config

    before = list(config.ERRORS)
    yield config.ERRORS
    config.ERRORS[:] = before


@pytest.mark.parametrize("explicit,broker,expected", [
    (None, "redis+socket:///srv/var/redis/redis.sock", "unix:///srv/var/redis/redis.sock?db=1"),
    (None, "redis://:pw@redis:6379/0", "redis://:pw@redis:6379/1"),
    (None, "rediss://redis.internal", "rediss://redis.internal/1"),
    (None, "amqp://rabbit//", None),  # no Redis: per-process counters, check portal.W010
    ("redis://cache:6379/4", "redis://redis:6379/0", "redis://cache:6379/4"),
])
def test_shared_cache_url_derivation(config_errors, explicit, broker, expected):
    from portal import config

    assert config.shared_cache_url(explicit, broker) == expected
    assert config_errors == []


@pytest.mark.parametrize("explicit,broker", [
    (None, "redis://redis:6379/1"),  # the broker already takes database 1
    ("redis://redis:6379/0", "redis://redis:6379/0"),  # the cache named on the broker's own database
    ("unix:///s.sock", "redis+socket:///s.sock"),
])
def test_a_cache_on_the_brokers_own_database_is_refused(config_errors, explicit, broker):
    """cache.clear() is FLUSHDB: on the broker's database it would drop queued tasks."""
    from portal import config

    config.shared_cache_url(explicit, broker)
    assert config_errors and "PORTAL_CACHE_URL" in config_errors[-1]


@pytest.mark.parametrize("name,value,reason", [
    ("PORTAL_SEARCH_PAGE_RATE", "often", "expected N/s"),
    ("PORTAL_API_ANON_RATE", "0/min", "expected N/s"),
    ("PORTAL_CACHE_URL", "memcached://x", "unsupported cache scheme"),
])
def test_bad_rate_limit_settings_fail_the_check(name, value, reason):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, name: value}, timeout=120)
    assert result.returncode != 0
    assert "portal.E001" in result.stderr and name in result.stderr and reason in result.stderr
