"""Retiring the old space after a promoted migration (issue 11 item 6): refused
during the soak period unless forced with a reason; drops the old space's index,
deletes its vectors in batches, VACUUMs, records the storage before and after;
no rollback afterwards; search goes on on the promoted space."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from search.migration_models import MigrationState as S, MigrationStep, SpaceMigration
from search.models import ChunkEmbedding, SpaceStatus
from search.services import embedding, migration_retire, space_migration as sm, spaces
from search.services.results import run_search
from tests import factories as f
from tests.migration_helpers import (compared, english, post, staff_client, tiny_pair,  # noqa: F401
                                     world)

pytestmark = pytest.mark.django_db


@pytest.fixture
def promoted(world):
    """A migration promoted just now: the target is active, the source ready (kept for a rollback)."""
    source, target, _ = world
    embedding.backfill(target)
    migration = compared(SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING))
    sm.promote(migration, by="tester", reason="better")
    assert spaces.active_space() == target
    return migration


def soaked(migration, hours=73):
    SpaceMigration.objects.filter(pk=migration.pk).update(promoted_at=timezone.now() - timedelta(hours=hours))
    migration.refresh_from_db()
    return migration


def index_exists(space) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [space.index_name])
        return cur.fetchone()[0] is not None


def test_retire_is_refused_during_the_soak_period_unless_forced_with_a_reason(promoted, settings):
    settings.MIGRATION_SOAK_HOURS = 72
    with pytest.raises(sm.MigrationError, match="soak period ends") as refused:
        migration_retire.request_retire(promoted, queue=False)
    assert refused.value.field == "soak"
    with pytest.raises(sm.MigrationError, match="reason"):
        migration_retire.request_retire(promoted, force=True, reason="", queue=False)
    assert promoted.retirement == {}
    migration_retire.request_retire(promoted, by="ops", force=True, reason="disk is full", queue=False)
    r = promoted.retirement
    assert (r["status"], r["forced"], r["reason"], r["requested_by"]) == ("queued", True, "disk is full", "ops")
    event = promoted.history[-1]
    assert (event["step"], event["reason"], event["by"]) == (MigrationStep.RETIRE_REQUESTED, "disk is full", "ops")
    with pytest.raises(sm.MigrationError, match="being retired already"):
        migration_retire.request_retire(promoted, force=True, reason="again", queue=False)
    with pytest.raises(sm.MigrationError, match="cannot be rolled back after its old space is retired"):
        sm.rollback(promoted, reason="changed my mind")


def test_only_the_old_space_of_a_promoted_migration_is_retired(world):
    source, target, _ = world
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.AB_TESTING)
    with pytest.raises(sm.MigrationError, match="promoted migration"):
        migration_retire.request_retire(migration, force=True, reason="x", queue=False)
    SpaceMigration.objects.filter(pk=migration.pk).update(state=S.PROMOTED, promoted_at=timezone.now())
    with pytest.raises(sm.MigrationError, match="serves searches again"):  # source still active here
        migration_retire.request_retire(migration, force=True, reason="x", queue=False)


@pytest.mark.django_db(transaction=True)
def test_retire_deletes_vectors_and_index_records_storage_and_search_goes_on(promoted, settings):
    """Outside a test transaction, as in the worker: DROP INDEX CONCURRENTLY and VACUUM run."""
    settings.MIGRATION_RETIRE_BATCH = 4  # several batches
    source, target = promoted.source, promoted.target
    rows = ChunkEmbedding.objects.filter(space=source).count()
    assert rows > 8 and index_exists(source)
    soaked(promoted)
    migration_retire.request_retire(promoted, by="ops", queue=False)
    assert promoted.retirement["forced"] is False
    assert migration_retire.run_retire(promoted.pk, promoted.retirement["token"]) == "done"
    promoted.refresh_from_db()
    source.refresh_from_db()
    r = promoted.retirement
    assert r["status"] == "done" and r["deleted_rows"] == rows and r["vacuumed"] is True, r
    assert source.status == SpaceStatus.RETIRED and source.retired_at is not None
    assert not ChunkEmbedding.objects.filter(space=source).exists() and not index_exists(source)
    before, after, freed = r["before"], r["after"], r["freed"]
    assert before["spaces"][source.name]["rows"] == rows and after["spaces"][source.name]["total_bytes"] == 0
    assert before["spaces"][source.name]["index_bytes"] > 0
    old_index = before["spaces"][source.name]["index_bytes"]
    # The old index is gone from the disk (the table's own total may not shrink: VACUUM can
    # add its free-space map, which is more than a tiny test index).
    assert after["table_index_bytes"] <= before["table_index_bytes"] - old_index
    assert after["vector_storage_bytes"] == after["spaces"][target.name]["total_bytes"] > 0
    assert freed["vector_storage_bytes"] == before["spaces"][source.name]["total_bytes"]
    assert 0 < freed["vector_storage_percent"] < 100
    assert promoted.history[-1]["step"] == MigrationStep.RETIRED
    with pytest.raises(sm.MigrationError, match="rolled back"):
        sm.rollback(promoted, reason="too late")
    with pytest.raises(sm.MigrationError, match="retired already"):
        migration_retire.request_retire(promoted, force=True, reason="again", queue=False)
    user = f.user("reader")
    result = run_search(user, "nghỉ phép năm quy định", "hybrid")
    assert result.space == target and result.ranked, "the promoted space still answers"
    vector = run_search(user, "làm việc từ xa", "vector")
    assert vector.space == target and vector.ranked
    assert spaces.serving_spaces().filter(pk=source.pk).exists() is False, "nothing writes to the retired space"


def test_api_retire_202_409_400_and_the_detail_shows_storage_freed(promoted, staff_client):
    pk = promoted.pk
    early = post(staff_client, f"/api/v1/migrations/{pk}/retire/")
    assert early.status_code == 409 and "soak period" in early.json()["detail"]
    assert post(staff_client, f"/api/v1/migrations/{pk}/retire/", {"force": True}).status_code == 400
    queued = post(staff_client, f"/api/v1/migrations/{pk}/retire/", {"force": True, "reason": "disk"})
    assert queued.status_code == 202, queued.content
    assert queued.json()["retirement"]["status"] == "queued" and "token" not in queued.json()["retirement"]
    assert post(staff_client, f"/api/v1/migrations/{pk}/rollback/", {"reason": "x"}).status_code == 409
    promoted.refresh_from_db()
    migration_retire.run_retire(pk, promoted.retirement["token"])
    detail = staff_client.get(f"/api/v1/migrations/{pk}/").json()
    r = detail["retirement"]
    assert r["status"] == "done" and r["freed"]["vector_storage_bytes"] > 0 and r["soak_ends_at"]
    assert r["vacuumed"] is False, "a test transaction cannot VACUUM; it says so"
    again = post(staff_client, f"/api/v1/migrations/{pk}/retire/", {"force": True, "reason": "again"})
    assert again.status_code == 409


def test_command_refuses_before_the_soak_and_retires_synchronously(promoted, staff_client):
    with pytest.raises(CommandError, match="soak period"):
        call_command("migrate_space", "retire", str(promoted.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="reason"):
        call_command("migrate_space", "retire", str(promoted.pk), "--force", stdout=StringIO())
    soaked(promoted)
    out = StringIO()
    call_command("migrate_space", "retire", str(promoted.pk), "--sync", stdout=out)
    assert "freed" in out.getvalue() and "vector rows deleted" in out.getvalue()
    status = StringIO()
    call_command("migrate_space", "status", str(promoted.pk), stdout=status)
    assert "freed" in status.getvalue()
    page = staff_client.get(f"/admin/search/spacemigration/{promoted.pk}/change/").content.decode()
    assert "Storage freed" in page


def test_admin_retire_action_asks_then_queues(promoted, staff_client):
    url = "/admin/search/spacemigration/"
    ask = staff_client.post(url, {"action": "retire_old_spaces", "_selected_action": [promoted.pk]})
    assert ask.status_code == 200 and 'name="force"' in ask.content.decode()
    refused = staff_client.post(url, {"action": "retire_old_spaces", "_selected_action": [promoted.pk],
                                      "confirm": "yes"}, follow=True)
    assert "soak period" in refused.content.decode()
    staff_client.post(url, {"action": "retire_old_spaces", "_selected_action": [promoted.pk], "confirm": "yes",
                            "force": "on", "reason": "space"})
    promoted.refresh_from_db()
    assert promoted.retirement["status"] == "queued" and promoted.retirement["forced"] is True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_compare_and_retire_run_on_a_worker_of_the_embed_queue(start_worker, world, settings):
    """The API-facing calls only queue; a worker consuming nothing but the embed queue does the work."""
    from django.conf import settings as django_settings

    from search.evaluation.models import EvaluationItem, EvaluationSet
    from search.services import migration_gate
    from tests.conftest import wait_until

    source, target, _ = world
    embedding.backfill(target)
    evaluation_set = EvaluationSet.objects.create(name="worker-set")
    for n in range(4):
        EvaluationItem.objects.create(evaluation_set=evaluation_set, query=f"quy định số {n} nghỉ phép năm",
                                      relevant_documents=[f"MIG{n}"])
    worker = start_worker(args=("--pool=solo", "-Q", django_settings.TASK_QUEUES["embed"]))
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING)
    migration_gate.request_compare(migration, "worker-set", by="tester")

    def status(field):
        migration.refresh_from_db()
        return getattr(migration, field).get("status")

    wait_until(lambda: status("comparison") in ("done", "failed"), 180, 0.5,
               message=f"the comparison to finish\n{worker.log()}")
    assert status("comparison") == "done", migration.comparison
    sm.promote(migration, by="tester", force=True, reason="tiny random models")
    migration_retire.request_retire(migration, by="tester", force=True, reason="test the worker")
    wait_until(lambda: status("retirement") in ("done", "failed"), 180, 0.5,
               message=f"the retirement to finish\n{worker.log()}")
    assert status("retirement") == "done" and migration.retirement["vacuumed"] is True, migration.retirement
    assert not ChunkEmbedding.objects.filter(space=source).exists()
