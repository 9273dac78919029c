"""The four tiers × every kind of principal, through the one access function
and through every path that returns document content.

Adding an endpoint is one line in one of the tables below:
- DOCUMENT_ENDPOINTS: a URL about one document; 200 for a document the
  principal may see, 404 for one it may not (exactly like a missing one).
- LISTING_ENDPOINTS: a page or API list; it names exactly the visible documents.
- SEARCH_ENDPOINTS: a search, run in every mode (those with a mode); each
  document is found by its own text iff it is visible, and nothing invisible
  is ever found. The answer API and the search page's answer panel are ones
  (found: cited); tests/test_answer_access.py also checks what reaches the chat
  model, and the answer's citation links and votes (the asker's own only).
- STAFF_ENDPOINTS: staff-only API endpoints that return content gathered with
  someone's access (fine-tuning datasets); every principal of the matrix is
  refused except the superuser (tests/test_finetune_dataset_api.py covers staff
  with the model permissions: their own datasets only, pairs of visible documents only).
- JOB_ENDPOINTS: fine-tuning jobs (no document content; they act on the portal):
  staff with the fine-tuning job permissions only (as in the admin).
- MIGRATION_ENDPOINTS: migrations between embedding spaces (they act on the
  portal's search): staff with the migration permissions only (as in the admin).
"""
import json
import re
from dataclasses import dataclass
from typing import Callable

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.test import Client
from rest_framework.authtoken.models import Token

from documents.selectors import can_view, visible_documents
from portal.models import Clearance
from tests import factories as f

pytestmark = pytest.mark.django_db

LEVELS = (0, 1, 2, 3)
# principal → the levels of an HR document it may see
EXPECTED = {
    "anonymous": {0},
    "employee": {0, 1},              # signed in, no department
    "department_member": {0, 1, 2},  # member of HR
    "other_department": {0, 1},      # member of IT
    "user_grant": {0, 1, 2, 3},      # explicit view_document grant on each document
    "group_grant": {0, 1, 2, 3},     # grant to a group the user is in
    "superuser": {0, 1, 2, 3},
    "inactive_user": {0},            # HR member with grants, but deactivated
    "internal_clearance_member": {0, 1},  # HR member whose clearance stops at internal
    "executive": {0, 1, 2},          # clearance 3: restricted of every department, not confidential
    "public_clearance": {0},         # signed-in account limited to public documents
}


# --- how a principal reaches the portal and the API --------------------------------

@dataclass
class Principal:
    name: str
    user: object
    portal: Client  # session client (an inactive user cannot sign in: anonymous)
    api: Client
    headers: dict   # the API token, if the principal has an account

    @property
    def has_account(self) -> bool:
        return self.name != "anonymous"

    @property
    def signed_in(self) -> bool:
        return self.has_account and self.user.is_active


def principal(name, user) -> Principal:
    portal, api, headers = Client(), Client(), {}
    if name != "anonymous":
        if user.is_active:
            portal.force_login(user)
        headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}
    return Principal(name, user, portal, api, headers)


def get(p: Principal, via: str, url: str, **params):
    return p.portal.get(url, params) if via == "portal" else p.api.get(url, params, **p.headers)


def linked_ids(pattern: str, html: str) -> set[int]:
    return {int(pk) for pk in re.findall(pattern, html)}


# --- the endpoints ---------------------------------------------------------------

@dataclass
class DocumentEndpoint:
    name: str
    via: str  # "portal" or "api"
    url: str  # with {pk}


DOCUMENT_ENDPOINTS = [
    DocumentEndpoint("portal document page", "portal", "/documents/{pk}/"),
    DocumentEndpoint("portal status fragment", "portal", "/documents/{pk}/status/"),
    DocumentEndpoint("portal download", "portal", "/documents/{pk}/download/"),
    DocumentEndpoint("API detail", "api", "/api/v1/documents/{pk}/"),
    DocumentEndpoint("API download", "api", "/api/v1/documents/{pk}/download/"),
    DocumentEndpoint("search: a document's vector progress", "portal", "/search/documents/{pk}/vectors/"),
]


@dataclass
class ListingEndpoint:
    name: str
    via: str
    listed: Callable  # (principal) → ids of the documents it names


def _api_list(p):
    return {d["id"] for d in get(p, "api", "/api/v1/documents/").json()["results"]}


def _portal_links(url):
    return lambda p: linked_ids(r'href="/documents/(\d+)/"', get(p, "portal", url).content.decode())


LISTING_ENDPOINTS = [
    ListingEndpoint("API list", "api", _api_list),
    ListingEndpoint("portal document list", "portal", _portal_links("/documents/")),
    ListingEndpoint("portal home", "portal", _portal_links("/")),
]


@dataclass
class SearchEndpoint:
    name: str
    via: str
    search: Callable  # (principal, query, mode) → (ids of the documents found, search id)
    modes: bool = True  # False: the endpoint has no mode (an answer is always hybrid): run once


def _api_search(p, query, mode):
    response = p.portal.post("/api/v1/search", json.dumps({"query": query, "mode": mode}),
                             content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["notice"] == "", body["notice"]  # the mode asked for is the mode that ran
    return {r["document"]["id"] for r in body["results"]}, body["search_id"]


def _portal_search(p, query, mode):
    response = p.portal.get("/search/", {"q": query, "mode": mode})
    assert response.status_code == 200
    return linked_ids(r'href="/search/open/\d+/(\d+)/"', response.content.decode()), None


def _api_answer(p, query, mode):
    """The answer API (always hybrid: `mode` does not apply): the documents its
    citations name. Offline here (no chat endpoint): the extracted answer."""
    response = p.portal.post("/api/v1/answer", json.dumps({"question": query}), content_type="application/json")
    assert response.status_code == 200, response.content
    return {c["document"]["id"] for c in response.json()["citations"]}, None


def _portal_answer(p, query, mode):
    """The search page's answer panel without JavaScript (the whole page): the documents its citations name."""
    response = p.portal.post("/answers/", {"question": query})
    assert response.status_code == 200, response.content
    return linked_ids(r'<li value="\d+" data-document="(\d+)"', response.content.decode()), None


SEARCH_ENDPOINTS = [
    SearchEndpoint("API search", "api", _api_search),
    SearchEndpoint("portal search page", "portal", _portal_search),
    SearchEndpoint("API answer", "api", _api_answer, modes=False),
    SearchEndpoint("portal answer panel", "portal", _portal_answer, modes=False),
]
MODES = ["vector", "keyword", "hybrid", "rerank"]


@dataclass
class StaffEndpoint:
    name: str
    method: str
    url: str  # with {dataset}
    superuser_status: int  # what a superuser gets (a build with no name is a 400: authorised, then refused)


STAFF_ENDPOINTS = [
    StaffEndpoint("finetune datasets list", "get", "/api/v1/finetune/datasets/", 200),
    StaffEndpoint("finetune dataset detail", "get", "/api/v1/finetune/datasets/{dataset}/", 200),
    StaffEndpoint("finetune dataset pairs", "get", "/api/v1/finetune/datasets/{dataset}/pairs/", 200),
    StaffEndpoint("finetune dataset validate", "post", "/api/v1/finetune/datasets/{dataset}/validate/", 200),
    StaffEndpoint("finetune dataset build", "post", "/api/v1/finetune/datasets/", 400),
]


# --- the world -------------------------------------------------------------------

@pytest.fixture
def world():
    docs = {level: f.document(level, departments=("HR",)) for level in LEVELS}
    group = Group.objects.create(name="auditors")
    people = {
        "anonymous": AnonymousUser(),
        "employee": f.user("employee"),
        "department_member": f.user("hr_member", departments=["HR"]),
        "other_department": f.user("it_member", departments=["IT"]),
        "user_grant": f.user("granted"),
        "group_grant": f.user("in_group"),
        "superuser": f.user("root", is_superuser=True, is_staff=True),
        "inactive_user": f.user("gone", departments=["HR"], is_active=False),
        "internal_clearance_member": f.user("intern", departments=["HR"], clearance=Clearance.INTERNAL),
        "executive": f.user("director", clearance=Clearance.EXECUTIVE),
        "public_clearance": f.user("partner", clearance=Clearance.PUBLIC),
    }
    people["group_grant"].groups.add(group)
    for doc in docs.values():
        f.grant(doc, user=people["user_grant"])
        f.grant(doc, group=group)
        f.grant(doc, user=people["inactive_user"])
    return docs, people


def process(docs) -> None:
    """Extract and chunk the fixture documents (the factory marks them ready unprocessed)."""
    from documents.services.processing import process_document

    for doc in docs.values():
        type(doc).objects.filter(pk=doc.pk).update(status="pending")
        process_document(doc.pk)
        doc.refresh_from_db()
        assert doc.status == "ready" and doc.chunks.exists(), doc.status_message


def visible_ids(docs, name) -> set[int]:
    return {doc.pk for level, doc in docs.items() if level in EXPECTED[name]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_visible_documents_matrix(world, name):
    docs, people = world
    user = people[name]
    seen = {d.access_level for d in visible_documents(user)}
    assert seen == EXPECTED[name]
    for level, doc in docs.items():
        assert can_view(user, doc) == (level in EXPECTED[name])


def test_owner_sees_own_upload_at_any_level(world):
    owner = f.user("uploader")
    doc = f.document(3, departments=("FIN",), owner=owner)
    assert can_view(owner, doc)
    assert not can_view(f.user("colleague", departments=["FIN"]), doc)


def test_grant_without_view_permission_does_not_widen(world):
    docs, people = world
    from guardian.shortcuts import assign_perm

    u = f.user("changer")
    assign_perm("documents.change_document", u, docs[3])
    assert not can_view(u, docs[3])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_content_path_obeys_the_matrix(world, name):
    """Every document endpoint and every listing: a hidden document is a 404
    exactly like a missing one, and is never listed. An inactive user's API
    token is refused outright (401)."""
    docs, people = world
    p = principal(name, people[name])
    token_refused = p.has_account and not p.user.is_active
    for endpoint in DOCUMENT_ENDPOINTS:
        refused = token_refused and endpoint.via == "api"
        for level, doc in docs.items():
            want = 401 if refused else 200 if level in EXPECTED[name] else 404
            status = get(p, endpoint.via, endpoint.url.format(pk=doc.pk)).status_code
            assert status == want, (endpoint.name, name, level)
        missing = get(p, endpoint.via, endpoint.url.format(pk=999999)).status_code
        assert missing == (401 if refused else 404), (endpoint.name, name)
    for endpoint in LISTING_ENDPOINTS:
        if token_refused and endpoint.via == "api":
            assert get(p, "api", "/api/v1/documents/").status_code == 401
            continue
        assert endpoint.listed(p) == visible_ids(docs, name), (endpoint.name, name)


def test_download_returns_the_original_bytes(world):
    docs, people = world
    client = Client()
    client.force_login(people["department_member"])
    response = client.get(f"/documents/{docs[2].pk}/download/")
    assert b"".join(response.streaming_content) == docs[2].source_file.open("rb").read()


def test_admin_changelists_for_staff_list_only_visible(world):
    """Staff see in admin only documents and chunks of documents they may see; a
    hidden one's change page answers exactly like a missing one."""
    from django.contrib.auth.models import Permission

    docs, people = world
    process(docs)
    staff = people["department_member"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_document"),
                               Permission.objects.get(codename="view_chunk"))
    client = Client()
    client.force_login(staff)
    allowed = EXPECTED["department_member"]

    listed = linked_ids(r'href="/admin/documents/document/(\d+)/change/[^"]*"',
                        client.get("/admin/documents/document/").content.decode())
    assert listed == visible_ids(docs, "department_member")

    chunks_page = client.get("/admin/documents/chunk/")
    assert chunks_page.status_code == 200
    listed_chunks = linked_ids(r'href="/admin/documents/chunk/(\d+)/change/[^"]*"', chunks_page.content.decode())
    for level, doc in docs.items():
        chunk_ids = set(doc.chunks.values_list("pk", flat=True))
        assert chunk_ids, level  # every document has chunks to show or hide
        if level in allowed:
            assert chunk_ids <= listed_chunks, level
        else:
            assert not chunk_ids & listed_chunks, level

    for kind, hidden_pk in (("document", docs[3].pk), ("chunk", docs[3].chunks.first().pk)):
        hidden = client.get(f"/admin/documents/{kind}/{hidden_pk}/change/")
        missing = client.get(f"/admin/documents/{kind}/999999/change/")
        # Django admin answers a missing object with a redirect to the admin index
        assert (hidden.status_code, hidden["Location"]) == (missing.status_code, missing["Location"]) \
            == (302, "/admin/"), kind


@pytest.fixture
def searchable(world, minilm_path, tiny_cross_encoder, settings):
    """The world processed, in the keyword index and embedded with real MiniLM
    vectors in an active space; rerank on with a tiny cross-encoder."""
    from search.services import embedding, keyword_index, spaces

    docs, people = world
    process(docs)
    keyword_index.rebuild()
    space = spaces.create_space("matrix", minilm_path)
    assert embedding.backfill(space) == sum(doc.chunks.count() for doc in docs.values())
    spaces.activate(space)
    settings.RERANK_MODEL = tiny_cross_encoder
    return docs, people


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_search_endpoints_obey_the_matrix_in_every_mode(searchable, name):
    """Each search endpoint, in every mode, over real vectors: a document is
    found by its own text iff the principal may see it, and no search finds a
    document it may not. A vote on the document searched for is stored when a
    signed-in principal found it (201); it is 404 when the document is hidden,
    and for an anonymous API client, which has no searches of its own."""
    docs, people = searchable
    p = principal(name, people[name])
    visible = visible_ids(docs, name)
    for mode in MODES:
        for endpoint in SEARCH_ENDPOINTS:
            if not endpoint.modes and mode != MODES[0]:
                continue
            for level, doc in docs.items():
                query = doc.chunks.first().text  # unique: "… mức truy cập <level>, số <n>."
                found, search_id = endpoint.search(p, query, mode)
                where = (endpoint.name, mode, name, level)
                assert found <= visible, where
                assert (doc.pk in found) == (doc.pk in visible), where
                if search_id is None:
                    continue
                vote = p.portal.post("/api/v1/feedback", {"search_id": search_id, "document_id": doc.pk,
                                                          "kind": "helpful"})
                assert vote.status_code == (201 if p.signed_in and doc.pk in found else 404), where


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_staff_endpoints_refuse_everyone_but_staff(world, name):
    """A dataset built by the superuser from every document: anonymous clients and
    deactivated accounts get 401, signed-in principals without staff rights 403."""
    from finetune.services.datasets import DatasetSpec, build_dataset

    docs, people = world
    process(docs)
    dataset = build_dataset("all-levels", DatasetSpec(synthetic="offline", eval_share=0), people["superuser"])
    assert dataset.access_levels == list(LEVELS)
    p = principal(name, people[name])
    for endpoint in STAFF_ENDPOINTS:
        url = endpoint.url.format(dataset=dataset.pk)
        response = getattr(p.api, endpoint.method)(url, **p.headers)
        want = 401 if not p.signed_in else endpoint.superuser_status if name == "superuser" else 403
        assert response.status_code == want, (endpoint.name, name, response.content[:200])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_readiness_notice_counts_visible_documents_only(world, name):
    from documents.models import Document, DocumentStatus

    docs, people = world
    p = principal(name, people[name])
    Document.objects.filter(pk__in=[d.pk for d in docs.values()]).update(status=DocumentStatus.PROCESSING)
    notice = p.portal.get("/search/readiness/").content.decode()
    assert f"Đang xử lý {len(EXPECTED[name])} tài liệu" in notice, (name, notice)


# --- staff-only endpoints ----------------------------------------------------------
# Endpoints that return no document content but act on the portal (fine-tuning jobs):
# staff only. Anonymous callers and refused tokens get 401, signed-in non-staff 403.

@dataclass
class JobEndpoint:
    name: str
    method: str  # "get" or "post"
    url: str     # with {job}
    body: dict | None = None


JOB_ENDPOINTS = [
    JobEndpoint("fine-tuning jobs: list", "get", "/api/v1/finetune/jobs/"),
    JobEndpoint("fine-tuning jobs: create", "post", "/api/v1/finetune/jobs/", {"name": "x"}),
    JobEndpoint("fine-tuning jobs: detail", "get", "/api/v1/finetune/jobs/{job}/"),
    JobEndpoint("fine-tuning jobs: cancel", "post", "/api/v1/finetune/jobs/{job}/cancel/"),
    JobEndpoint("fine-tuning jobs: register", "post", "/api/v1/finetune/jobs/{job}/register/"),
]


@pytest.fixture
def a_job(tmp_path, minilm_path):
    from finetune.models import FineTuneJob, JobStatus, TrainingDataset

    dataset = TrainingDataset.objects.create(name="access", status="ready")
    return FineTuneJob.objects.create(name="access", dataset=dataset, base_model_path=minilm_path,
                                      base_key=minilm_path, status=JobStatus.FAILED)


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["staff", "staff-with-perms"])
def test_staff_only_endpoints_refuse_everyone_else(world, a_job, name):
    from django.contrib.auth.models import Permission

    docs, people = world
    people["staff"] = f.user("operator", is_staff=True)  # staff without the fine-tuning permissions
    people["staff-with-perms"] = f.user("trainer", is_staff=True)
    people["staff-with-perms"].user_permissions.add(*Permission.objects.filter(
        content_type__app_label="finetune", codename__endswith="_finetunejob"))
    p = principal(name, people[name])
    allowed = name in ("staff-with-perms", "superuser")
    for endpoint in JOB_ENDPOINTS:
        url = endpoint.url.format(job=a_job.pk)
        if endpoint.method == "get":
            response = p.api.get(url, **p.headers)
        else:
            response = p.api.post(url, json.dumps(endpoint.body or {}), content_type="application/json", **p.headers)
        if allowed:
            assert response.status_code not in (401, 403, 404), (endpoint.name, name, response.content)
        elif not p.has_account or not p.user.is_active:
            assert response.status_code == 401, (endpoint.name, name)
        else:
            assert response.status_code == 403, (endpoint.name, name)


# --- migrations between embedding spaces (issue 11): staff only ----------------------

MIGRATION_ENDPOINTS = [
    JobEndpoint("space migrations: list", "get", "/api/v1/migrations/"),
    JobEndpoint("space migrations: start", "post", "/api/v1/migrations/", {"target": "x"}),
    JobEndpoint("space migrations: detail", "get", "/api/v1/migrations/{job}/"),
    JobEndpoint("space migrations: cancel", "post", "/api/v1/migrations/{job}/cancel/", {"reason": "r"}),
    JobEndpoint("space migrations: advance", "post", "/api/v1/migrations/{job}/advance/"),
    JobEndpoint("space migrations: rollback", "post", "/api/v1/migrations/{job}/rollback/", {"reason": "r"}),
    JobEndpoint("space migrations: A/B report", "get", "/api/v1/migrations/{job}/ab/"),
    JobEndpoint("space migrations: compare", "post", "/api/v1/migrations/{job}/compare/", {"evaluation_set": "x"}),
    JobEndpoint("space migrations: retire", "post", "/api/v1/migrations/{job}/retire/",
                {"force": True, "reason": "r"}),
]


@pytest.fixture
def a_migration(minilm_path):
    """An ended migration between two registered spaces (no model is loaded)."""
    from search.migration_models import SpaceMigration
    from search.models import EmbeddingSpace

    source = EmbeddingSpace.objects.create(name="access-a", model_path=minilm_path, dimension=384,
                                           max_seq_length=256, status="ready")
    target = EmbeddingSpace.objects.create(name="access-b", model_path=minilm_path, dimension=384,
                                           max_seq_length=256, status="ready")
    return SpaceMigration.objects.create(source=source, target=target, state="failed")


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["staff", "staff-with-perms"])
def test_migration_endpoints_refuse_everyone_but_staff(world, a_migration, name):
    docs, people = world
    from django.contrib.auth.models import Permission

    people["staff"] = f.user("operator", is_staff=True)  # staff without the migration permissions
    people["staff-with-perms"] = f.user("migrator", is_staff=True)
    people["staff-with-perms"].user_permissions.add(*Permission.objects.filter(
        content_type__app_label="search", codename__endswith="_spacemigration"))
    p = principal(name, people[name])
    allowed = name in ("staff-with-perms", "superuser")
    for endpoint in MIGRATION_ENDPOINTS:
        url = endpoint.url.format(job=a_migration.pk)
        if endpoint.method == "get":
            response = p.api.get(url, **p.headers)
        else:
            response = p.api.post(url, json.dumps(endpoint.body or {}), content_type="application/json", **p.headers)
        if allowed:
            assert response.status_code not in (401, 403, 404, 500), (endpoint.name, name, response.content)
        elif not p.has_account or not p.user.is_active:
            assert response.status_code == 401, (endpoint.name, name)
        else:
            assert response.status_code == 403, (endpoint.name, name)
    a_migration.refresh_from_db()
    assert a_migration.state == "failed" and a_migration.history == [], "a refused caller changed nothing"
