"""Comparing the two spaces of a migration and the gate before the A/B test and
promote (issue 11 item 4): the comparison calibrates the target and scores both
spaces with the evaluation runner; going on is refused without a comparison or
when the target is worse beyond the margin, unless forced with a reason."""
from xml.etree import ElementTree
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from search.evaluation.models import EvaluationItem, EvaluationRun, EvaluationSet
from search.migration_models import MigrationState as S, SpaceMigration
from search.services import embedding, migration_gate, space_migration as sm, spaces
from tests import factories as f
from tests.migration_helpers import (compared, english, post, staff_client, tiny_pair,  # noqa: F401
                                     world)

pytestmark = pytest.mark.django_db

QUERIES = [("nghỉ phép năm quy định số 1", "MIG1"), ("làm việc từ xa quy định số 2", "MIG2"),
           ("bảo hiểm quy định số 3", "MIG3"), ("công tác phí quy định số 4", "MIG4"),
           ("nghỉ phép năm quy định số 5", "MIG5"), ("làm việc từ xa quy định số 0", "MIG0")]


@pytest.fixture
def small_set(world):
    evaluation_set = EvaluationSet.objects.create(name="mig-small")
    for query, code in QUERIES:
        EvaluationItem.objects.create(evaluation_set=evaluation_set, query=query, relevant_documents=[code])
    return evaluation_set


@pytest.fixture
def evaluating(world):
    """A migration whose backfill and index are done: the target has every vector and its index."""
    source, target, _ = world
    embedding.backfill(target)
    return SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING)


def test_compare_calibrates_the_target_and_scores_both_spaces(evaluating, small_set):
    migration = evaluating
    target = migration.target
    assert target.similarity_floor is None
    migration_gate.request_compare(migration, "mig-small", by="tester", queue=False)
    assert migration.comparison["status"] == "queued" and migration.comparison["requested_by"] == "tester"
    assert migration_gate.run_compare(migration.pk, migration.comparison["token"]) == "done"
    migration.refresh_from_db()
    c = migration.comparison
    assert c["status"] == "done" and c["set"] == "mig-small" and c["mode"] == "hybrid"
    for role, space in (("source", migration.source), ("target", target)):
        shown = c["spaces"][role]
        assert (shown["name"], shown["dimension"], shown["queries"]) == (space.name, space.dimension, len(QUERIES))
        assert {"MRR@10", "nDCG@10", "Recall@10", "Recall@100"} <= set(shown["metrics"])
        run = EvaluationRun.objects.get(pk=shown["run"])
        assert (run.space_id, run.mode, run.status) == (space.pk, "hybrid", "done")
    assert c["difference"] == pytest.approx(c["spaces"]["target"]["metrics"]["MRR@10"]
                                            - c["spaces"]["source"]["metrics"]["MRR@10"], abs=1e-5)
    target.refresh_from_db()
    assert target.similarity_floor is not None, "the target's relevance floor was calibrated"
    assert c["calibration"]["after"]["similarity_floor"] == target.similarity_floor
    assert c["calibration"]["after"]["vector_weight"] == target.vector_weight
    assert c["calibration"]["before"]["similarity_floor"] is None
    assert c["calibration"]["set"] == "mig-small" and c["calibration"]["in_sample"] is True
    assert migration.source.similarity_floor is None, "the serving source is left as it is"


def test_an_uncalibrated_source_is_scored_calibrated_like_the_target_without_touching_it(evaluating, small_set):
    """A freshly calibrated target against a source on default settings would credit the
    calibration to the model: the source is calibrated on the same set for the comparison
    only, and the stored settings it serves with stay as they are."""
    migration = evaluating
    source = migration.source
    served = (source.similarity_floor, source.fusion, source.vector_weight, source.rrf_k)
    migration_gate.request_compare(migration, "mig-small", by="tester", queue=False)
    assert migration_gate.run_compare(migration.pk, migration.comparison["token"]) == "done"
    migration.refresh_from_db()
    c = migration.comparison
    used = c["source_calibration"]
    assert used["as_served"] is False and used["set"] == c["calibration"]["set"] == "mig-small"
    assert used["settings"]["similarity_floor"] is not None, "the source was scored with calibrated floors"
    run = EvaluationRun.objects.get(pk=c["spaces"]["source"]["run"])
    assert run.space_id == source.pk
    source.refresh_from_db()
    assert (source.similarity_floor, source.fusion, source.vector_weight, source.rrf_k) == served, \
        "the space that serves everyone is not recalibrated by a comparison"


def test_a_source_calibrated_on_the_set_is_scored_as_it_serves(evaluating, small_set):
    from search.evaluation import calibration, floors

    migration = evaluating
    floors.calibrate_floors(small_set, migration.source)
    calibration.calibrate(small_set, migration.source)
    migration.source.refresh_from_db()
    migration_gate.request_compare(migration, "mig-small", by="tester", queue=False)
    assert migration_gate.run_compare(migration.pk, migration.comparison["token"]) == "done"
    migration.refresh_from_db()
    used = migration.comparison["source_calibration"]
    assert used["as_served"] is True
    assert used["settings"]["similarity_floor"] == migration.source.similarity_floor


def test_a_superseded_comparison_writes_nothing(evaluating, small_set):
    migration = migration_gate.request_compare(evaluating, "mig-small", queue=False)
    old = migration.comparison["token"]
    SpaceMigration.objects.filter(pk=migration.pk).update(comparison={})  # e.g. a newer request replaced it
    assert migration_gate.run_compare(migration.pk, old) == "superseded"
    migration.refresh_from_db()
    assert migration.comparison == {}


def test_compare_is_refused_in_the_wrong_state_or_for_an_unknown_set(world, small_set):
    source, target, _ = world
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.BACKFILLING)
    with pytest.raises(sm.MigrationError, match="evaluating or A/B testing"):
        migration_gate.request_compare(migration, "mig-small", queue=False)
    with pytest.raises(sm.MigrationError, match="no evaluation set named nope"):
        migration_gate.request_compare(migration, "nope", queue=False)
    EvaluationSet.objects.create(name="empty")
    with pytest.raises(sm.MigrationError, match="no item"):
        migration_gate.request_compare(migration, "empty", queue=False)


def test_gate_refuses_without_a_comparison_and_when_the_target_is_worse(evaluating):
    migration = evaluating
    for move in (lambda: sm.start_ab_test(migration), lambda: sm.promote(migration)):
        with pytest.raises(sm.MigrationError, match="not been compared"):
            move()
    compared(migration, source_mrr=0.60, target_mrr=0.55)  # 0.05 worse, margin 0.02
    for move in (lambda: sm.start_ab_test(migration), lambda: sm.promote(migration)):
        with pytest.raises(sm.MigrationError, match=r"0\.5500.*0\.6000.*-0\.0500.*margin of 0\.020") as refused:
            move()
        assert refused.value.field == "gate"
    migration.refresh_from_db()
    assert migration.state == S.EVALUATING and spaces.active_space() == migration.source
    compared(migration, source_mrr=0.60, target_mrr=0.585)  # within the margin
    sm.start_ab_test(migration, by="tester", reason="close enough")
    assert migration.state == S.AB_TESTING
    assert "within the allowed margin" in migration.history[-1]["gate"]
    assert not migration.history[-1].get("forced")


def test_the_margin_is_a_setting(evaluating, settings):
    settings.MIGRATION_REGRESSION_MARGIN = 0.2
    compared(evaluating, source_mrr=0.60, target_mrr=0.45)
    sm.promote(evaluating, by="tester")
    assert evaluating.state == S.PROMOTED and spaces.active_space() == evaluating.target
    assert django_settings.MIGRATION_REGRESSION_MARGIN == 0.2


def test_promote_after_the_ab_test_is_not_gated(evaluating):
    SpaceMigration.objects.filter(pk=evaluating.pk).update(state=S.AB_TESTING)
    sm.promote(evaluating, by="tester", reason="the A/B test decided")
    assert evaluating.state == S.PROMOTED


def test_force_needs_a_reason_and_is_recorded(evaluating):
    migration = compared(evaluating, source_mrr=0.6, target_mrr=0.3)
    with pytest.raises(sm.MigrationError, match="reason") as refused:
        sm.start_ab_test(migration, force=True, reason="  ")
    assert refused.value.field == "reason"
    sm.start_ab_test(migration, force=True, by="ops", reason="the set is out of date")
    event = migration.history[-1]
    assert migration.state == S.AB_TESTING
    assert event["forced"] is True and event["reason"] == "the set is out of date" and event["by"] == "ops"
    assert "worse than the allowed margin" in event["gate"]


def test_api_compare_202_and_the_gate_409_400(evaluating, small_set, staff_client):
    pk = evaluating.pk
    refused = post(staff_client, f"/api/v1/migrations/{pk}/advance/", {"reason": "go"})
    assert refused.status_code == 409 and "not been compared" in refused.json()["detail"]
    assert post(staff_client, f"/api/v1/migrations/{pk}/compare/", {"evaluation_set": "nope"}).status_code == 400
    assert post(staff_client, f"/api/v1/migrations/{pk}/compare/", {}).status_code == 400
    queued = post(staff_client, f"/api/v1/migrations/{pk}/compare/", {"evaluation_set": "mig-small"})
    assert queued.status_code == 202, queued.content
    assert queued.json()["comparison"]["status"] == "queued" and "token" not in queued.json()["comparison"]
    again = post(staff_client, f"/api/v1/migrations/{pk}/compare/", {"evaluation_set": "mig-small"})
    assert again.status_code == 409 and "running already" in again.json()["detail"]
    evaluating.refresh_from_db()
    migration_gate.run_compare(pk, evaluating.comparison["token"])  # what the embed worker does
    detail = staff_client.get(f"/api/v1/migrations/{pk}/").json()
    assert detail["comparison"]["status"] == "done"
    assert set(detail["comparison"]["spaces"]) == {"source", "target"}
    assert detail["comparison"]["gate"]["message"]
    compared(evaluating, 0.7, 0.2)
    assert post(staff_client, f"/api/v1/migrations/{pk}/advance/", {"force": True}).status_code == 400
    forced = post(staff_client, f"/api/v1/migrations/{pk}/advance/", {"force": True, "reason": "known gap"})
    assert forced.status_code == 200 and forced.json()["state"] == "ab_testing"
    assert forced.json()["history"][-1]["forced"] is True
    planned = SpaceMigration.objects.create(source=evaluating.source, target=evaluating.target, state=S.FAILED)
    assert post(staff_client, f"/api/v1/migrations/{planned.pk}/compare/",
                {"evaluation_set": "mig-small"}).status_code == 409


def test_command_compares_synchronously_and_the_gate_refuses(evaluating, small_set):
    out = StringIO()
    call_command("migrate_space", "compare", str(evaluating.pk), "--set", "mig-small", "--sync", stdout=out)
    text = out.getvalue()
    assert "source-48" in text and "target-32" in text and "MRR@10" in text and "margin" in text
    compared(evaluating, 0.9, 0.1)
    with pytest.raises(CommandError, match="worse than the allowed margin"):
        call_command("migrate_space", "advance", str(evaluating.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="reason"):
        call_command("migrate_space", "advance", str(evaluating.pk), "--force", stdout=StringIO())
    call_command("migrate_space", "advance", str(evaluating.pk), "--force", "--reason", "ok", stdout=StringIO())
    evaluating.refresh_from_db()
    assert evaluating.state == S.AB_TESTING and evaluating.history[-1]["forced"] is True
    out = StringIO()
    call_command("migrate_space", "compare", str(evaluating.pk), "--set", "mig-small", stdout=out)
    assert "queued" in out.getvalue()


def test_admin_compares_and_shows_both_spaces_with_a_chart(evaluating, small_set, staff_client):
    url = "/admin/search/spacemigration/"
    ask = staff_client.post(url, {"action": "compare_spaces", "_selected_action": [evaluating.pk]})
    assert ask.status_code == 200 and 'name="evaluation_set"' in ask.content.decode()
    assert "mig-small" in ask.content.decode()
    done = staff_client.post(url, {"action": "compare_spaces", "_selected_action": [evaluating.pk],
                                   "confirm": "yes", "evaluation_set": "mig-small"})
    assert done.status_code == 302
    evaluating.refresh_from_db()
    assert evaluating.comparison["status"] == "queued"
    migration_gate.run_compare(evaluating.pk, evaluating.comparison["token"])
    page = staff_client.get(f"{url}{evaluating.pk}/change/").content.decode()
    assert "<svg" in page and "source-48" in page and "target-32" in page and "nDCG@10" in page
    svg = '<svg class="paired-bars"' + page.split('<svg class="paired-bars"', 1)[1].split("</svg>", 1)[0] + "</svg>"
    assert "http" not in svg, "the chart loads nothing from elsewhere"
    chart = ElementTree.fromstring(svg)  # well-formed; one bar per space and metric
    assert len([r for r in chart.iter("rect") if r.find("title") is not None]) == 2 * 5
    compared(evaluating, 0.8, 0.1)
    ask = staff_client.post(url, {"action": "promote_migrations", "_selected_action": [evaluating.pk]})
    assert 'name="force"' in ask.content.decode()
    refused = staff_client.post(url, {"action": "promote_migrations", "_selected_action": [evaluating.pk],
                                      "confirm": "yes"}, follow=True)
    assert "worse than the allowed margin" in refused.content.decode()
    forced = staff_client.post(url, {"action": "promote_migrations", "_selected_action": [evaluating.pk],
                                     "confirm": "yes", "force": "on", "reason": "set is stale"}, follow=True)
    assert forced.status_code == 200
    evaluating.refresh_from_db()
    assert evaluating.state == S.PROMOTED and evaluating.history[-1]["forced"] is True


def test_compare_and_retire_run_on_the_embed_queue():
    routes = django_settings.CELERY_TASK_ROUTES
    for task in ("search.tasks.compare_spaces_task", "search.tasks.retire_space_task"):
        assert routes[task]["queue"] == django_settings.TASK_QUEUES["embed"]


def test_statuses_and_phases_are_shown_in_the_reader_s_language():
    from django.utils import translation

    shown = [migration_gate.STATUS_MSGIDS, tuple(migration_gate.SCORING.values())]
    with translation.override("vi"):
        for msgid in (m for group in shown for m in group):
            assert migration_gate.label(msgid) != msgid, f"{msgid!r} has no Vietnamese translation"
    assert migration_gate.label("") == ""
