"""Brute-force protection on both sign-in pages (issue 9, S4): django-axes counts
wrong passwords per username + address in PostgreSQL; at the limit that pair is
locked — even the right password is refused — until the cool-off has passed."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client

from tests import factories as f

pytestmark = pytest.mark.django_db

PAGES = {"/login/": {}, "/admin/login/": {"is_staff": True}}


def sign_in(client, page, username, password, **extra):
    return client.post(page, {"username": username, "password": password, "next": "/"}, **extra)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, page, username, times, **extra):
    return [sign_in(client, page, username, "wrong", **extra).status_code for _ in range(times)]


def time_passes(delta: timedelta) -> None:
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - delta)


def let_the_cool_off_pass():
    time_passes(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))


@pytest.mark.parametrize("page", PAGES)
def test_wrong_passwords_lock_the_account_on_this_address_then_the_cool_off_frees_it(page):
    limit = settings.AXES_FAILURE_LIMIT
    f.user("lan", **PAGES[page])
    client = Client()
    codes = fail(client, page, "lan", limit)
    assert codes == [200] * (limit - 1) + [429]  # the limit-th wrong password locks
    refused = sign_in(client, page, "lan", "pw-lan")  # the right one, too late
    assert refused.status_code == 429 and not signed_in(client)
    assert refused["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    body = refused.content.decode()
    assert "Tạm khoá đăng nhập" in body and f"{limit} lần" in body and "15 phút" in body
    let_the_cool_off_pass()
    assert sign_in(client, page, "lan", "pw-lan").status_code == 302 and signed_in(client)


def test_lock_is_per_username_and_address():
    """Someone hammering lan's account from one address locks only that pair: lan
    from her own address and a colleague behind the same address still sign in."""
    limit = settings.AXES_FAILURE_LIMIT
    f.user("lan")
    f.user("minh")
    attacker = Client(REMOTE_ADDR="10.6.6.6")
    assert fail(attacker, "/login/", "lan", limit)[-1] == 429
    assert sign_in(attacker, "/login/", "lan", "pw-lan").status_code == 429

    colleague = Client(REMOTE_ADDR="10.6.6.6")
    assert sign_in(colleague, "/login/", "minh", "pw-minh").status_code == 302 and signed_in(colleague)
    lan = Client(REMOTE_ADDR="10.1.1.1")
    assert sign_in(lan, "/login/", "lan", "pw-lan").status_code == 302 and signed_in(lan)


def test_a_forged_forwarded_for_header_does_not_escape_the_lock():
    limit = settings.AXES_FAILURE_LIMIT
    f.user("lan")
    client = Client()
    codes = [sign_in(client, "/login/", "lan", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
             for i in range(limit)]
    assert codes[-1] == 429
    assert sign_in(client, "/login/", "lan", "pw-lan", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_a_successful_sign_in_resets_the_count():
    """Typos spread over a day do not add up to a lock: a good sign-in clears them."""
    limit = settings.AXES_FAILURE_LIMIT
    f.user("lan")
    client = Client()
    assert fail(client, "/login/", "lan", limit - 1) == [200] * (limit - 1)
    assert sign_in(client, "/login/", "lan", "pw-lan").status_code == 302
    client.logout()
    assert fail(client, "/login/", "lan", limit - 1) == [200] * (limit - 1)
    assert sign_in(client, "/login/", "lan", "pw-lan").status_code == 302


def test_an_attempt_during_the_lock_restarts_the_cool_off():
    limit = settings.AXES_FAILURE_LIMIT
    two_thirds = settings.AXES_COOLOFF_TIME * 2 / 3
    f.user("lan")
    client = Client()
    fail(client, "/login/", "lan", limit)
    time_passes(two_thirds)
    assert fail(client, "/login/", "lan", 1) == [429]  # still locked; the wait starts again
    time_passes(two_thirds)  # the first lock is over, not the second
    assert sign_in(client, "/login/", "lan", "pw-lan").status_code == 429  # any attempt restarts it
    let_the_cool_off_pass()
    assert sign_in(client, "/login/", "lan", "pw-lan").status_code == 302
