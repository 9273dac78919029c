"""The migration state machine (issue 11 item 1): legal and illegal moves, one
open migration enforced by the database, who did what and why, and the moves
people make (A/B test, promote, roll back — also after promote)."""
import pytest
from django.db import IntegrityError, transaction
from django.utils import translation

from search.migration_models import OPEN_STATES, MigrationState as S, SpaceMigration
from search.models import EmbeddingSpace, SpaceStatus
from search.services import space_index, space_migration as sm, spaces
from tests import factories as f
from tests.migration_helpers import compared, english, tiny_pair, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

ALL = [s.value for s in S]


def at(state, source, target, **fields) -> SpaceMigration:
    return SpaceMigration.objects.create(source=source, target=target, state=state, **fields)


@pytest.mark.parametrize("start", ALL)
def test_every_move_out_of_every_state_is_allowed_exactly_when_the_table_says(world, start):
    source, target, _ = world
    for to in ALL:
        SpaceMigration.objects.all().delete()
        migration = at(start, source, target)
        if to in sm.LEGAL_MOVES[start]:
            sm.transition(migration, to, "tester", "because")
            migration.refresh_from_db()
            assert migration.state == to
            event = migration.history[-1]
            assert (event["from"], event["to"], event["by"], event["reason"]) == (start, to, "tester", "because")
        else:
            with pytest.raises(sm.MigrationError) as refused:
                sm.transition(migration, to, "tester", "because")
            assert str(S(start).label) in str(refused.value) and str(S(to).label) in str(refused.value)
            migration.refresh_from_db()
            assert migration.state == start and migration.history == []


def test_the_table_has_the_states_of_the_issue():
    assert sm.LEGAL_MOVES[S.PLANNED] == (S.BACKFILLING, S.CANCELLED, S.FAILED)
    assert S.PROMOTED not in sm.LEGAL_MOVES[S.BACKFILLING], "promoting a half-filled space"
    assert sm.LEGAL_MOVES[S.PROMOTED] == (S.ROLLED_BACK,)
    for final in (S.ROLLED_BACK, S.CANCELLED, S.FAILED):
        assert sm.LEGAL_MOVES[final] == ()


def test_a_refused_move_is_explained_in_the_user_s_language(world):
    source, target, _ = world
    migration = at(S.CANCELLED, source, target)
    with translation.override("vi"), pytest.raises(sm.MigrationError) as refused:
        sm.transition(migration, S.PROMOTED, None)
    assert "không thể" in str(refused.value), str(refused.value)


def test_the_database_refuses_a_second_open_migration(world, wide_model_path):
    source, target, _ = world
    other = spaces.create_space("other", wide_model_path, status=SpaceStatus.READY)
    at(S.BACKFILLING, source, target)
    for state in OPEN_STATES:
        with pytest.raises(IntegrityError), transaction.atomic():
            at(state, source, other)
    for state in (S.PROMOTED, S.ROLLED_BACK, S.CANCELLED, S.FAILED):  # ended ones do not count
        at(state, source, other)
    with pytest.raises(sm.MigrationError, match="Another migration is open"):
        sm.start(other, by="tester", queue=False)


def test_starting_records_who_and_why_and_makes_the_target_a_serving_space(world):
    source, target, _ = world
    admin = f.user("ops", is_staff=True)
    migration = sm.start(target, by=admin, reason="smaller model", queue=False)
    assert (migration.source, migration.state, migration.created_by) == (source, S.PLANNED, admin)
    assert migration.history[0]["by"] == "ops" and migration.history[0]["reason"] == "smaller model"
    assert migration.total_chunks > 0 and migration.target_previous_status == SpaceStatus.READY
    target.refresh_from_db()
    assert target.status == SpaceStatus.BUILDING and target in spaces.serving_spaces()
    assert target not in spaces.searched_spaces(), "nobody searches the target before the A/B test"


def test_what_cannot_be_migrated_to_is_refused(world, wide_model_path):
    source, target, _ = world
    with pytest.raises(sm.MigrationError, match="active space already"):
        sm.start(source, queue=False)
    retired = spaces.create_space("gone", wide_model_path, status=SpaceStatus.READY)
    EmbeddingSpace.objects.filter(pk=retired.pk).update(status=SpaceStatus.RETIRED)
    with pytest.raises(sm.MigrationError, match="only a building or ready space"):
        sm.start(retired, queue=False)
    EmbeddingSpace.objects.filter(pk=target.pk).update(traffic_share=0.2)
    with pytest.raises(sm.MigrationError, match="A/B share already"):
        sm.start(target, queue=False)
    EmbeddingSpace.objects.filter(pk=target.pk).update(traffic_share=0)
    with pytest.raises(sm.MigrationError, match="Migrate from the active space"):
        sm.start(target, source=retired, queue=False)
    assert not SpaceMigration.objects.exists()


def test_cancel_and_rollback_need_a_reason(world):
    source, target, _ = world
    migration = at(S.AB_TESTING, source, target)
    with pytest.raises(sm.MigrationError, match="reason"):
        sm.request_cancel(migration, reason=" ")
    with pytest.raises(sm.MigrationError, match="reason"):
        sm.rollback(migration, reason="")


def _indexed(target):
    spaces.create_index(target)  # the migration's index build is tested in test_migration_backfill
    assert space_index.index_state(target) == space_index.VALID


def test_ab_test_promote_and_rollback_after_promote_switch_the_active_space(world):
    source, target, _ = world
    migration = sm.start(target, by="tester", queue=False)
    sm.transition(migration, S.BACKFILLING)
    sm.transition(migration, S.INDEXING)
    sm.transition(migration, S.EVALUATING)
    _indexed(target)
    with pytest.raises(sm.MigrationError, match="share"):
        sm.advance(migration, share=1.5)
    compared(migration, 0.5, 0.49)  # the gate: compared, within the margin
    sm.advance(migration, share=0.25, by="tester", reason="try it")
    target.refresh_from_db()
    assert (migration.state, target.status, target.traffic_share) == (S.AB_TESTING, SpaceStatus.READY, 0.25)
    assert target in spaces.searched_spaces()
    sm.advance(migration, by="tester", reason="better")
    source.refresh_from_db(), target.refresh_from_db()
    assert migration.state == S.PROMOTED and migration.promoted_at and migration.finished_at
    assert (target.status, source.status) == (SpaceStatus.ACTIVE, SpaceStatus.READY)
    assert source in spaces.serving_spaces(), "the old space is kept (dual-written) for a rollback"
    with pytest.raises(sm.MigrationError):
        sm.advance(migration)
    sm.rollback(migration, by="tester", reason="complaints")
    source.refresh_from_db(), target.refresh_from_db()
    assert migration.state == S.ROLLED_BACK
    assert (source.status, target.status, target.traffic_share) == (SpaceStatus.ACTIVE, SpaceStatus.READY, 0)
    assert [e["to"] for e in migration.history] == ["planned", "backfilling", "indexing", "evaluating",
                                                    "ab_testing", "promoted", "rolled_back"]
    assert migration.history[-1]["reason"] == "complaints"


def test_rollback_during_the_ab_test_sends_everyone_back_at_once(world):
    source, target, _ = world
    migration = at(S.EVALUATING, source, target)
    _indexed(target)
    sm.start_ab_test(migration, share=0.5, force=True, reason="not compared: testing the rollback")
    assert spaces.ab_candidates() == [target]
    sm.rollback(migration, by="tester", reason="worse")
    assert spaces.ab_candidates() == [] and spaces.active_space() == source


def test_promote_is_refused_without_a_valid_index(world):
    source, target, _ = world
    migration = at(S.EVALUATING, source, target)
    spaces.drop_index(target)
    with pytest.raises(sm.MigrationError, match="no valid vector index"):
        sm.promote(migration)
    assert spaces.active_space() == source


def test_a_move_only_a_worker_makes_is_refused_by_hand(world):
    source, target, _ = world
    migration = at(S.BACKFILLING, source, target)
    with pytest.raises(sm.MigrationError, match="worker"):
        sm.advance(migration)
