"""Starting and moving a migration from the API, Django admin and
`manage.py migrate_space` (issue 11 item 1): the happy path and the refusals."""
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from search.migration_models import MigrationState as S, SpaceMigration
from search.models import SpaceStatus
from search.services import space_migration as sm, spaces
from tests import factories as f
from tests.migration_helpers import (compared, english, post, staff_client, tiny_pair,  # noqa: F401
                                     world)

pytestmark = pytest.mark.django_db


def test_api_starts_follows_and_moves_a_migration(world, staff_client):
    source, target, _ = world
    started = post(staff_client, "/api/v1/migrations/", {"target": "target-32", "reason": "smaller"})
    assert started.status_code == 201, started.content
    body = started.json()
    assert (body["source"], body["target"], body["state"]) == ("source-48", "target-32", "planned")
    assert body["total_chunks"] > 0 and body["history"][0]["by"] == "root"
    again = post(staff_client, "/api/v1/migrations/", {"target": "target-32"})
    assert again.status_code == 409 and "open" in again.json()["detail"]
    pk = body["id"]
    assert staff_client.get("/api/v1/migrations/").json()["results"][0]["id"] == pk
    assert staff_client.get(f"/api/v1/migrations/{pk}/").json()["state_label"] == "planned"
    refused = post(staff_client, f"/api/v1/migrations/{pk}/advance/")
    assert refused.status_code == 409 and "worker" in refused.json()["detail"]
    assert post(staff_client, f"/api/v1/migrations/{pk}/rollback/", {"reason": "x"}).status_code == 409
    assert post(staff_client, f"/api/v1/migrations/{pk}/cancel/").status_code == 400  # no reason
    cancelled = post(staff_client, f"/api/v1/migrations/{pk}/cancel/", {"reason": "not now"})
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    assert post(staff_client, f"/api/v1/migrations/{pk}/cancel/", {"reason": "again"}).status_code == 409


def test_api_advances_to_the_ab_test_and_promotes(world, staff_client):
    source, target, _ = world
    migration = compared(SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING))
    spaces.create_index(target)
    assert post(staff_client, f"/api/v1/migrations/{migration.pk}/advance/", {"share": 2}).status_code == 400
    ab = post(staff_client, f"/api/v1/migrations/{migration.pk}/advance/", {"share": 0.3, "reason": "try"})
    assert ab.status_code == 200 and ab.json()["state"] == "ab_testing"
    promoted = post(staff_client, f"/api/v1/migrations/{migration.pk}/advance/", {"to": "promoted"})
    assert promoted.status_code == 200 and promoted.json()["state"] == "promoted"
    assert spaces.active_space() == target
    back = post(staff_client, f"/api/v1/migrations/{migration.pk}/rollback/", {"reason": "slower"})
    assert back.status_code == 200 and spaces.active_space() == source


def test_api_refuses_bad_input_clearly(world, staff_client):
    assert post(staff_client, "/api/v1/migrations/", {"target": "nope"}).status_code == 400
    assert post(staff_client, "/api/v1/migrations/", {"target": "source-48"}).status_code == 409
    assert staff_client.get("/api/v1/migrations/999/").status_code == 404


def test_admin_starts_a_migration_and_shows_its_live_progress(world, staff_client):
    source, target, _ = world
    page = staff_client.get("/admin/search/spacemigration/add/")
    assert page.status_code == 200
    answer = staff_client.post("/admin/search/spacemigration/add/", {"target": target.pk, "reason": "smaller"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    migration = SpaceMigration.objects.get()
    assert migration.state == S.PLANNED and migration.step_token, "started and queued"
    SpaceMigration.objects.filter(pk=migration.pk).update(state=S.BACKFILLING, done_chunks=7, total_chunks=20,
                                                          chunks_per_second=3.5, eta_seconds=4)
    live = staff_client.get(f"/admin/search/spacemigration/{migration.pk}/live/")
    assert live.status_code == 200
    text = live.content.decode()
    assert "7" in text and "20" in text and "3.5" in text and "hx-trigger" in text
    assert staff_client.get(f"/admin/search/spacemigration/{migration.pk}/change/").status_code == 200
    assert staff_client.get("/admin/search/spacemigration/").status_code == 200
    second = staff_client.post("/admin/search/spacemigration/add/", {"target": target.pk})
    assert second.status_code == 200 and "Another migration is open" in second.content.decode()


def test_admin_history_shows_states_and_times_in_the_reader_s_language(world, staff_client):
    from django.utils import timezone
    from django.utils.formats import date_format

    source, target, _ = world
    migration = sm.start(target, by="tester", reason="nhỏ hơn")
    event = migration.history[0]
    client = Client(HTTP_ACCEPT_LANGUAGE="vi")
    client.force_login(f.user("root-vi", is_superuser=True, is_staff=True))
    page = client.get(f"/admin/search/spacemigration/{migration.pk}/change/").content.decode()
    from django.utils import translation

    with translation.override("vi"):
        planned = str(S.PLANNED.label)
        when = date_format(timezone.localtime(datetime.fromisoformat(event["at"])), "DATETIME_FORMAT")
    assert planned != "planned" and f"→ {planned}" in page, "the state in Vietnamese, not its stored value"
    assert when in page and event["at"] not in page, "the time in the portal's zone and format"
    assert "nhỏ hơn" in page


def test_admin_actions_ask_for_the_reason_then_act(world, staff_client):
    source, target, _ = world
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.AB_TESTING)
    url = "/admin/search/spacemigration/"
    ask = staff_client.post(url, {"action": "roll_back_migrations", "_selected_action": [migration.pk]})
    assert ask.status_code == 200 and 'name="reason"' in ask.content.decode()
    done = staff_client.post(url, {"action": "roll_back_migrations", "_selected_action": [migration.pk],
                                   "confirm": "yes", "reason": "users complained"})
    assert done.status_code == 302
    migration.refresh_from_db()
    assert migration.state == S.ROLLED_BACK and migration.history[-1]["reason"] == "users complained"
    refused = staff_client.post(url, {"action": "promote_migrations", "_selected_action": [migration.pk],
                                      "confirm": "yes"}, follow=True)
    assert "cannot become" in refused.content.decode()


def test_the_command_starts_shows_and_refuses(world):
    source, target, _ = world
    out = StringIO()
    call_command("migrate_space", "start", "--target", "target-32", "--reason", "smaller", stdout=out)
    migration = SpaceMigration.objects.get()
    assert f"Migration {migration.pk} started" in out.getvalue()
    out = StringIO()
    call_command("migrate_space", "status", str(migration.pk), stdout=out)
    assert "planned" in out.getvalue() and "smaller" in out.getvalue()
    with pytest.raises(CommandError, match="worker"):
        call_command("migrate_space", "advance", str(migration.pk))
    with pytest.raises(CommandError, match="Another migration is open"):
        call_command("migrate_space", "start", "--target", "target-32")
    with pytest.raises(CommandError, match="no embedding space"):
        call_command("migrate_space", "start", "--target", "nope")
    call_command("migrate_space", "cancel", str(migration.pk), "--reason", "later", stdout=StringIO())
    assert SpaceMigration.objects.get().cancel_requested


@pytest.mark.django_db(transaction=True)
def test_the_command_follows_a_migration_with_a_progress_bar_to_its_end(world):
    """`start --follow` with no worker: the steps are run here meanwhile by a thread."""
    import threading
    import time

    from tests.migration_helpers import drive

    source, target, _ = world
    err = StringIO()

    def worker():
        from django.db import connection

        try:
            for _ in range(200):
                migration = SpaceMigration.objects.first()
                if migration is not None:
                    drive(migration)
                    return
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        out = StringIO()
        call_command("migrate_space", "start", "--target", "target-32", "--follow", stdout=out, stderr=err)
    finally:
        thread.join(60)
    assert "evaluating" in out.getvalue()
    assert "chunk" in err.getvalue()
    call_command("migrate_space", "advance", str(SpaceMigration.objects.get().pk), "--to", "promoted",
                 "--force", "--reason", "tiny random models: nothing to compare", stdout=StringIO())
    assert spaces.active_space().name == "target-32"
    target.refresh_from_db()
    assert target.status == SpaceStatus.ACTIVE
