"""The proof of issue 11: a whole migration from a 1024-dim space to a 384-dim one
(two models built on the fly, with different max lengths) — started, backfilled
by a real Celery worker, indexed, evaluated, A/B tested and promoted — while four
people of the four access tiers search without pause through `run_search`, the
function behind the portal page and the API. Meanwhile documents are added,
re-ingested with new content and deleted in the middle of the backfill.

What must hold, for every one of those searches: it does not fail; it finds
something (each query is in documents every tier may see, untouched by the
test: an empty page would be a search gone wrong, docs/decisions.md); it ran on
the space its user is routed to (`spaces.space_for`: the source before the A/B
test, the user's arm during it, the target after the promote); and every result
is a document its user may see (`visible_documents`). At promote time every ready
document's chunks have vectors in the target — the added and re-ingested ones
too — and the deleted ones have none left in either space.

Phases are marked around each change (a search that overlaps a change is only
held to "one of the spaces before and after it"); each phase waits for searches
of every person, so none of this is left to timing.
"""
from __future__ import annotations

import io
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connections

from documents.models import Chunk, Document
from documents.selectors import visible_documents
from documents.services.intake import UploadMetadata, register_upload
from documents.services.processing import process_document
from portal.models import Clearance, User
from search.migration_models import MigrationState as S
from search.models import ChunkEmbedding, SpaceStatus
from search.services import embedding, retrieval, space_index, space_migration as sm, spaces
from search.services.results import run_search
from tests import factories as f
from tests.conftest import wait_until
from tests.migration_helpers import (ENV, chunk_ids, compared, document_locked, english, every_chunk_in,  # noqa: F401
                                     held_before, ready_document, row, text_for, vector_chunk_ids,
                                     wide_to_small)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# In documents of every level (text_for: every document has these two sections and
# these instructions), so each of them must find something for anybody.
QUERIES = ["nghỉ phép năm", "làm việc từ xa", "hướng dẫn của phòng nhân sự", "báo cáo trưởng phòng"]
MODES = ["hybrid", "vector", "keyword"]
PER_PHASE = 3  # searches of each person a phase waits for
WAIT = 90  # seconds, the most any one wait may take (a loaded machine)


@dataclass
class Searched:
    phase: str | None  # None: a change happened while it ran
    query: str
    mode: str
    space: int
    routed: tuple[int, int]  # space_for before and after the search
    documents: list[int]


@dataclass
class Person:
    name: str
    user: object
    client_id: str | None = None
    done: list[Searched] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, phase: str) -> int:
        return sum(1 for s in self.done if s.phase == phase)


class Phases:
    """The phase the portal is in, as the test moved it: ("switching" while a change is
    being made, so that no search overlapping a change is counted in a phase)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._now = (0, "before")

    def now(self) -> tuple[int, str]:
        with self._lock:
            return self._now

    @contextmanager
    def switching(self, to: str):
        with self._lock:
            self._now = (self._now[0] + 1, "switching")
        yield
        with self._lock:
            self._now = (self._now[0] + 1, to)


def search_without_pause(person: Person, phases: Phases, stop: threading.Event) -> None:
    n = 0
    try:
        while not stop.is_set():
            query, mode = QUERIES[n % len(QUERIES)], MODES[n % len(MODES)]
            n += 1
            try:
                started = phases.now()
                before = spaces.space_for(person.user, person.client_id)
                result = run_search(person.user, query, mode, client_id=person.client_id, via="api")
                after = spaces.space_for(person.user, person.client_id)
                ended = phases.now()
            except Exception:  # noqa: BLE001 - every failure is reported, none stops the others
                person.errors.append(f"{query!r} {mode}: {traceback.format_exc()}")
                continue
            person.done.append(Searched(
                phase=started[1] if started == ended and started[1] != "switching" else None, query=query,
                mode=mode, space=result.space.pk, routed=(before.pk, after.pk),
                documents=[h.document.pk for h in result.hits]
                + [c.document_id for h in result.hits for c in [h.chunk, *h.more_chunks]]))
            time.sleep(0.02)  # people, not a load test: the worker gets its share of the CPU
    finally:
        connections.close_all()  # this thread's connection


@pytest.fixture
def portal(wide_to_small):
    """An active 1024-dim source space over documents of every level, a ready 384-dim
    target, and four people: anonymous (public), internal, a department member,
    and an executive with a grant to one confidential document."""
    source = spaces.create_space("source-1024", wide_to_small[0])
    spaces.activate(source)
    levels = {0: (0, ("HR",)), 1: (1, ("HR",)), 2: (2, ("HR",)), 3: (2, ("IT",)), 4: (3, ("HR",)),
              5: (3, ("IT",)), 6: (1, ("HR",)), 7: (0, ("HR",)), 8: (0, ("HR",)), 9: (2, ("IT",)),
              10: (0, ("HR",)), 11: (1, ("IT",))}
    docs = {n: ready_document(n, level, departments) for n, (level, departments) in levels.items()}
    embedding.backfill(source)
    target = spaces.create_space("target-384", wide_to_small[1], status=SpaceStatus.READY)
    assert (source.dimension, target.dimension) == (1024, 384)
    assert source.max_seq_length != target.max_seq_length
    executive = f.user("exec3", departments=["HR"], clearance=Clearance.EXECUTIVE)
    f.grant(docs[4], user=executive)
    people = [Person("anonymous", AnonymousUser(), client_id="visitor-7"),
              Person("internal", f.user("internal1", departments=["HR"], clearance=Clearance.INTERNAL)),
              Person("department", f.user("hr2", departments=["HR"], clearance=Clearance.DEPARTMENT)),
              Person("executive", executive)]
    return source, target, docs, people


def wait_for_searches(people: list[Person], phase: str, n: int = PER_PHASE) -> None:
    wait_until(lambda: all(p.count(phase) >= n or p.errors for p in people), WAIT, 0.1,
               message=f"{n} searches of each person in phase {phase}: "
                       + ", ".join(f"{p.name} {p.count(phase)}" for p in people))


def a_share_splitting(people: list[Person]) -> tuple[float, set[str]]:
    """An A/B share that sends two of the four people to the target (sticky buckets)."""
    buckets = sorted((spaces.ab_bucket(p.user, p.client_id), p.name) for p in people)
    share = (buckets[1][0] + buckets[2][0]) / 2
    return share, {name for _, name in buckets[:2]}


def edit(doc: Document, n: int) -> None:
    """A new version of the document (the API's upsert by code: re-ingested), processed here."""
    text = text_for(n) + "\n## Điều chỉnh\n\nPhụ lục điều chỉnh tạm thời cho quy định sửa đổi.\n"
    meta = UploadMetadata(code=doc.code, title=doc.title, access_level=doc.access_level,
                          departments=list(doc.departments.values_list("code", flat=True)))
    editor = User.objects.filter(username="editor").first() or f.user("editor", is_superuser=True)
    register_upload(io.BytesIO(text.encode()), "edited.md", meta, owner=editor, replace=True)
    assert process_document(doc.pk) == "ready"


def test_a_whole_migration_while_people_of_every_tier_search(start_worker, portal):
    source, target, docs, people = portal
    worker = start_worker(**ENV)
    # Its start-up (imports, models) gets the CPU before the searches take their share.
    wait_until(lambda: " ready." in worker.log_path.read_text(errors="replace"), WAIT, 0.2,
               message="the worker to start")
    phases, stop = Phases(), threading.Event()
    threads = [threading.Thread(target=search_without_pause, args=(p, phases, stop), daemon=True) for p in people]
    for thread in threads:
        thread.start()
    deleted, seen_by = [docs[6], docs[9]], {}  # one before the held document, one after it
    replaced = set(docs[7].chunks.values_list("pk", flat=True))
    try:
        wait_for_searches(people, "before")
        with document_locked(docs[8]):
            with phases.switching("backfilling"):
                migration = sm.start(target, by="tester", reason="the 384-dim model")
            held_before(docs[8], migration, WAIT)
            assert row(migration).state == S.BACKFILLING
            for doc in deleted:
                seen_by[doc.pk] = {p.name for p in people if visible_documents(p.user).filter(pk=doc.pk).exists()}
                Document.objects.get(pk=doc.pk).delete()
            edit(docs[7], 7)
            added = [ready_document(20, 0), ready_document(21, 3)]
            f.grant(added[1], user=people[3].user)
            with phases.switching("changed"):  # searches that see the changes, still during the backfill
                pass
            wait_for_searches(people, "changed")
            assert row(migration).state == S.BACKFILLING, "the changes were made during the backfill"
        with phases.switching("evaluating"):
            wait_until(lambda: row(migration).state == S.EVALUATING, WAIT, 0.2,
                       message=f"the backfill and the index build\n{worker.log()}")
        wait_until(lambda: every_chunk_in(target) and every_chunk_in(source), WAIT, 0.2,
                   message=f"every chunk in both spaces\n{worker.log()}")
        wait_for_searches(people, "evaluating")

        share, to_target = a_share_splitting(people)
        with phases.switching("ab_testing"):
            # The comparison on an evaluation set is test_migration_gate's; here it is recorded.
            sm.advance(compared(row(migration)), share=share, by="tester", reason="A/B")
        assert row(migration).state == S.AB_TESTING
        wait_for_searches(people, "ab_testing")

        # Promote time: everything searchable in the target, the deleted nowhere.
        assert every_chunk_in(target) and every_chunk_in(source)
        ready = set(Chunk.objects.filter(document__status="ready").values_list("pk", flat=True))
        assert ready == chunk_ids()
        assert not ChunkEmbedding.objects.filter(document_id__in=[d.pk for d in deleted]).exists()
        assert not replaced & set(ChunkEmbedding.objects.values_list("chunk_id", flat=True))
        for doc in [docs[7], *added]:
            assert set(doc.chunks.values_list("pk", flat=True)) <= set(vector_chunk_ids(target)), doc.code
        assert Chunk.objects.filter(document=docs[7], text__contains="điều chỉnh tạm thời").exists()
        assert space_index.index_state(target) == space_index.VALID
        # Each person's vector search in the target reaches every chunk they may see (the
        # access keys copied onto the target's rows — a grant made meanwhile included), no other.
        for person in [*people, Person("root", f.user("root", is_superuser=True))]:
            every = run_search(person.user, "quy định", "vector", k=500, space=target, materialise=False)
            may_see = set(Chunk.objects.filter(document__in=visible_documents(person.user), document__status="ready")
                          .values_list("pk", flat=True))
            assert {c for c, _ in every.ranked} == may_see, person.name
        with phases.switching("promoted"):
            sm.promote(migration, by="tester", reason="better on the evaluation set")
        assert row(migration).state == S.PROMOTED
        wait_for_searches(people, "promoted")
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
        retrieval.release_search_thread()
    assert not any(t.is_alive() for t in threads)

    # Every search of every person, all along.
    assert not [e for p in people for e in p.errors], "\n".join(e for p in people for e in p.errors)
    expected = {"before": source.pk, "backfilling": source.pk, "changed": source.pk, "evaluating": source.pk,
                "promoted": target.pk}
    for person in people:
        may_see = set(visible_documents(person.user).values_list("pk", flat=True))
        for s in person.done:
            assert s.documents, f"{person.name} found nothing for {s.query!r} ({s.mode}) in phase {s.phase}"
            assert s.space in s.routed, (person.name, s)
            if s.phase == "ab_testing":
                assert s.space == (target.pk if person.name in to_target else source.pk), (person.name, s)
            elif s.phase is not None:
                assert s.space == expected[s.phase], (person.name, s)
            leaked = {d for d in s.documents if d not in may_see and person.name not in seen_by.get(d, ())}
            assert not leaked, (person.name, s)
    arms = {p.name: {s.space for s in p.done if s.phase == "ab_testing"} for p in people}
    assert {n for n, used in arms.items() if used == {target.pk}} == to_target
