"""The A/B test of a migration (issue 11 item 5): each search made while it runs records
its arm (sticky per user), and the report — per arm searches, users, click-through,
helpful votes, zero-result rate, latency p50/p95, the significance tests and a verdict
in plain words — is shown in the admin, the API and `manage.py migrate_space status`."""
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone, translation

from search.migration_models import MigrationState as S, SpaceMigration
from search.models import EmbeddingSpace, Feedback, SearchLog
from search.services import ab_stats, embedding, space_migration as sm, spaces
from search.services.results import run_search
from search.services.search_log import record_feedback
from tests import factories as f
from tests.migration_helpers import compared, english, tiny_pair, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


# --- the arm of each search ------------------------------------------------------

def test_searches_during_the_ab_test_record_their_arm_sticky_and_only_then(world):
    source, target, docs = world
    embedding.backfill(target)
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING)
    before = run_search(f.user("early"), "nghỉ phép", via="portal")
    sm.start_ab_test(compared(migration), share=0.5, by="tester")
    migration.refresh_from_db()
    assert migration.ab_started_at and migration.ab_ended_at is None
    assert SearchLog.objects.get(pk=before.search_id).arm == "", "no A/B test ran yet"

    users = [f.user(f"ab-{n}") for n in range(16)]
    arms = {}
    for user in users:
        for _ in range(2):  # sticky: the same user twice lands in the same arm
            result = run_search(user, "nghỉ phép", via="portal")
            row = SearchLog.objects.get(pk=result.search_id)
            assert row.space_id == result.space.pk
            assert row.arm == ("target" if result.space == target else "source"), "the arm is the space searched"
            assert arms.setdefault(user.pk, row.arm) == row.arm, "a user stays in one arm"
    assert set(arms.values()) == {"source", "target"}, "with a 50% share both arms get users"
    anonymous_in = run_search(None, "nghỉ phép", via="portal", client_id="visitor-1")
    assert SearchLog.objects.get(pk=anonymous_in.search_id).arm in ("source", "target")
    anonymous_out = run_search(None, "nghỉ phép", via="portal")
    assert SearchLog.objects.get(pk=anonymous_out.search_id).arm == "", \
        "a visitor the bucket cannot place always gets the source: left out of the comparison"

    sm.promote(migration, by="tester")
    migration.refresh_from_db()
    assert migration.ab_ended_at and migration.ab_ended_at >= migration.ab_started_at
    after = run_search(users[0], "nghỉ phép", via="portal")
    assert SearchLog.objects.get(pk=after.search_id).arm == "", "after the test searches have no arm"
    rep = ab_stats.report(migration)
    assert rep.source.searches + rep.target.searches == 2 * len(users) + 1
    assert rep.source.users + rep.target.users == len(users) + 1


def test_rolling_back_the_ab_test_ends_its_window(world):
    source, target, _ = world
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.EVALUATING)
    sm.start_ab_test(compared(migration), share=0.1)
    sm.rollback(migration, by="tester", reason="worse")
    migration.refresh_from_db()
    assert migration.ab_started_at and migration.ab_ended_at


# --- the numbers, from a constructed log ------------------------------------------------

@pytest.fixture
def two_spaces():
    source = EmbeddingSpace.objects.create(name="ab-a", model_path="/nowhere/a", dimension=8, max_seq_length=64,
                                           status="active")
    target = EmbeddingSpace.objects.create(name="ab-b", model_path="/nowhere/b", dimension=8, max_seq_length=64,
                                           status="ready", traffic_share=0.1)
    return source, target


def _search(arm, *, user=None, client="", latency=10.0, found=3, results=()):
    return SearchLog.objects.create(user=user, client_key=client, query="q", mode="hybrid", arm=arm,
                                    latency_ms=latency, result_count=found, results=list(results))


def _feedback(search, document, kind):
    return Feedback.objects.create(search=search, document=document, rank=1, kind=kind)


@pytest.fixture
def constructed_log(two_spaces):
    """Source: 10 searches (latency 10…100 ms) by 3 users and 2 visitors, 2 of them found
    nothing, 4 with a result opened (one opened twice), votes 3 helpful of 4.
    Target: 4 searches (latency 1…4 ms) by 1 user, 1 found nothing, 3 opened, 1 vote not helpful.
    Plus searches outside the window and without an arm, which must not count."""
    source, target = two_spaces
    start = timezone.now() - timedelta(hours=2)
    migration = SpaceMigration.objects.create(source=source, target=target, state=S.AB_TESTING,
                                              ab_started_at=start)
    doc = f.document(0)
    people = [f.user(f"log-{n}") for n in range(4)]
    who = [dict(user=people[0]), dict(user=people[0]), dict(user=people[1]), dict(user=people[1]),
           dict(user=people[2]), dict(client="k1"), dict(client="k1"), dict(client="k2"), dict(client="k2"),
           dict(user=people[2])]
    src = [_search("source", latency=10.0 * (n + 1), found=0 if n in (3, 7) else 5, **who[n]) for n in range(10)]
    for n in (0, 1, 2, 5):
        _feedback(src[n], doc, Feedback.Kind.CLICK)
    _feedback(src[0], doc, Feedback.Kind.CLICK)  # opened twice: still one search with a click
    for n, kind in ((0, "helpful"), (1, "helpful"), (2, "helpful"), (4, "not_helpful")):
        _feedback(src[n], doc, kind)
    tgt = [_search("target", user=people[3], latency=float(n + 1), found=0 if n == 0 else 2) for n in range(4)]
    for n in (1, 2, 3):
        _feedback(tgt[n], doc, Feedback.Kind.CLICK)
    _feedback(tgt[1], doc, Feedback.Kind.NOT_HELPFUL)
    # not counted: before the window, after it, and searches without an arm
    early = _search("target", user=people[3], latency=999, found=0)
    SearchLog.objects.filter(pk=early.pk).update(created_at=start - timedelta(minutes=1))
    _feedback(early, doc, Feedback.Kind.HELPFUL)
    _search("", user=people[0], latency=999, found=0)
    return migration


def test_stats_per_arm_are_computed_from_the_logged_searches_clicks_and_votes(constructed_log):
    rep = ab_stats.report(constructed_log)
    s, t = rep.source, rep.target
    assert (s.searches, s.users, s.clicked, s.zero_results, s.helpful, s.votes) == (10, 5, 4, 2, 3, 4)
    assert (s.click_through, s.zero_result_rate, s.helpful_share) == (0.4, 0.2, 0.75)
    assert s.latency_p50_ms == pytest.approx(55.0) and s.latency_p95_ms == pytest.approx(95.5)
    assert (t.searches, t.users, t.clicked, t.zero_results, t.helpful, t.votes) == (4, 1, 3, 1, 0, 1)
    assert (t.click_through, t.zero_result_rate, t.helpful_share) == (0.75, 0.25, 0.0)
    assert t.latency_p50_ms == pytest.approx(2.5) and t.latency_p95_ms == pytest.approx(3.85)
    # the window closes when the test ends: a search made later is not counted
    SpaceMigration.objects.filter(pk=constructed_log.pk).update(ab_ended_at=timezone.now())
    constructed_log.refresh_from_db()
    late = _search("target", latency=5)
    SearchLog.objects.filter(pk=late.pk).update(created_at=timezone.now() + timedelta(minutes=1))
    assert ab_stats.report(constructed_log).target.searches == 4


def test_a_click_recorded_by_the_portal_counts_for_its_arm(constructed_log):
    """The clicks the report reads are the ones the portal writes when a result is opened."""
    doc = f.document(0)
    user = f.user("clicker")
    row = _search("target", user=user, results=[{"rank": 1, "chunk_id": 0, "document_id": doc.pk, "score": 1}])
    record_feedback(user, row.pk, doc.pk, Feedback.Kind.CLICK)
    record_feedback(user, row.pk, doc.pk, Feedback.Kind.HELPFUL)
    t = ab_stats.report(constructed_log).target
    assert (t.searches, t.clicked, t.helpful, t.votes) == (5, 4, 1, 2)


# --- the significance tests and the verdict ------------------------------------------------

def _report(source, target, minimum=200):
    return ab_stats.assess(ab_stats.ABReport(1, timezone.now(), None, minimum, source, target))


def arm(name, searches, clicked=0, zero=0):
    return ab_stats.ArmStats(name, searches=searches, users=searches, clicked=clicked, zero_results=zero)


def test_the_z_test_matches_the_textbook_numbers():
    z, p = ab_stats.two_proportion_z(60, 200, 90, 200)  # 30% against 45%
    assert z == pytest.approx(3.0984, abs=1e-4) and p == pytest.approx(0.001946, abs=1e-5)
    assert ab_stats.two_proportion_z(0, 50, 0, 50) == (0.0, 1.0), "no difference to see"
    assert ab_stats.two_proportion_z(3, 0, 1, 5) == (0.0, 1.0)
    stats = pytest.importorskip("scipy.stats")
    assert p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_verdict_not_enough_searches_yet():
    rep = _report(arm("source", 340, clicked=100), arm("target", 150, clicked=90))
    assert not rep.enough
    assert rep.verdict == "Not enough searches yet (150 of 200 per arm); no conclusion can be drawn."


def test_verdict_no_significant_difference():
    rep = _report(arm("source", 400, clicked=120, zero=40), arm("target", 400, clicked=126, zero=38))
    assert rep.enough and not any(c.significant for c in rep.comparisons)
    assert rep.verdict.startswith("No significant difference between the arms (click-through p=0.6")


def test_verdict_names_what_is_significantly_better_or_worse():
    rep = _report(arm("source", 200, clicked=60, zero=10), arm("target", 200, clicked=90, zero=30))
    ctr, zero = rep.comparisons
    assert ctr.significant and ctr.target_better and zero.significant and zero.target_better is False
    assert rep.verdict == ("The target is better on click-through (45.0% against 30.0%, p=0.002). "
                           "The target is worse on zero-result rate (15.0% against 5.0%, p<0.001).")
    with translation.override("vi"):
        assert "tốt hơn" in _report(arm("source", 200, clicked=60), arm("target", 200, clicked=90)).verdict


# --- where it is shown ---------------------------------------------------------------------

def _staff(name, *codenames):
    user = f.user(name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="search", codename__in=codenames))
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_api_answers_staff_with_the_view_permission(constructed_log, settings):
    settings.MIGRATION_AB_MIN_SEARCHES = 4
    url = f"/api/v1/migrations/{constructed_log.pk}/ab/"
    answer = _staff("viewer", "view_spacemigration").get(url)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    source, target = body["arms"]
    assert (source["arm"], source["searches"], source["users"], source["click_through"]) == ("source", 10, 5, 0.4)
    assert (target["arm"], target["helpful"], target["votes"], target["latency_p95_ms"]) == ("target", 0, 1, pytest.approx(3.85))
    assert body["enough"] and [c["metric"] for c in body["comparisons"]] == ["click_through", "zero_result_rate"]
    assert body["verdict"].startswith("No significant difference")
    assert _staff("viewer2", "view_spacemigration").get("/api/v1/migrations/9999/ab/").status_code == 404
    assert _staff("operator").get(url).status_code == 403, "staff without the permission"
    plain = Client()
    plain.force_login(f.user("employee"))
    assert plain.get(url).status_code == 403


def test_admin_page_shows_the_ab_section_with_a_plot(constructed_log, two_spaces):
    client = _staff("admin-viewer", "view_spacemigration")
    page = client.get(f"/admin/search/spacemigration/{constructed_log.pk}/change/").content.decode()
    assert "ab-report" in page and "Not enough searches yet (4 of 200 per arm)" in page
    assert '<svg class="ab-comparison"' in page and "click-through" in page and "75.0%" in page
    other = SpaceMigration.objects.create(source=two_spaces[0], target=two_spaces[1], state=S.FAILED)
    assert "ab-report" not in client.get(f"/admin/search/spacemigration/{other.pk}/change/").content.decode(), \
        "no A/B section before a test ran"


def test_the_command_prints_the_ab_report(constructed_log):
    out = StringIO()
    call_command("migrate_space", "status", str(constructed_log.pk), stdout=out)
    text = out.getvalue()
    assert "click-through" in text and "latency p95 (ms)" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["source", "10", "5", "40.0%", "75.0%", "(3/4)", "20.0%", "55.0", "95.5"] in lines
    assert "Not enough searches yet (4 of 200 per arm); no conclusion can be drawn." in text
