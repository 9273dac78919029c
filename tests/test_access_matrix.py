"""The four tiers × every kind of principal, through the one access function
and through every path that returns document content."""
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


@pytest.mark.parametrize("principal", sorted(EXPECTED))
def test_visible_documents_matrix(world, principal):
    docs, people = world
    user = people[principal]
    seen = {d.access_level for d in visible_documents(user)}
    assert seen == EXPECTED[principal]
    for level, doc in docs.items():
        assert can_view(user, doc) == (level in EXPECTED[principal])


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


def _client_for(principal, user):
    client = Client()
    if principal != "anonymous":
        client.force_login(user) if user.is_active else None
    return client


@pytest.mark.parametrize("principal", sorted(EXPECTED))
def test_every_content_path_obeys_the_matrix(world, principal):
    """Portal page, status fragment, download, API list/detail/download: a
    hidden document is a 404 exactly like a missing one."""
    docs, people = world
    user = people[principal]
    client = _client_for(principal, user)
    api = Client()
    headers = {}
    if principal != "anonymous":
        token = Token.objects.create(user=user)
        headers = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    listed = {d["id"] for d in api.get("/api/v1/documents/", **headers).json().get("results", [])} \
        if user.is_active or principal == "anonymous" else set()
    for level, doc in docs.items():
        allowed = level in EXPECTED[principal]
        want = 200 if allowed else 404
        for url in (f"/documents/{doc.pk}/", f"/documents/{doc.pk}/status/", f"/documents/{doc.pk}/download/"):
            assert client.get(url).status_code == want, (url, principal, level)
        if not user.is_active and principal != "anonymous":
            # an inactive user's token is refused outright
            assert api.get(f"/api/v1/documents/{doc.pk}/", **headers).status_code == 401
            continue
        for url in (f"/api/v1/documents/{doc.pk}/", f"/api/v1/documents/{doc.pk}/download/"):
            assert api.get(url, **headers).status_code == want, (url, principal, level)
        assert (doc.pk in listed) == allowed
    missing = api.get("/api/v1/documents/999999/", **headers)
    assert missing.status_code in (404, 401)


def test_download_returns_the_original_bytes(world):
    docs, people = world
    client = Client()
    client.force_login(people["department_member"])
    response = client.get(f"/documents/{docs[2].pk}/download/")
    assert b"".join(response.streaming_content) == docs[2].source_file.open("rb").read()


def test_admin_changelist_for_staff_lists_only_visible(world):
    docs, people = world
    staff = people["department_member"]
    staff.is_staff = True
    staff.save()
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_document"),
                               Permission.objects.get(codename="view_chunk"))
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/documents/document/").content.decode()
    for level, doc in docs.items():
        assert (doc.code in page) == (level in EXPECTED["department_member"]), level
    # a hidden document's change page is not reachable either
    assert client.get(f"/admin/documents/document/{docs[3].pk}/change/").status_code in (302, 404)
    chunks_page = client.get("/admin/documents/chunk/")
    assert chunks_page.status_code == 200


@pytest.mark.parametrize("principal", sorted(EXPECTED))
def test_search_endpoints_obey_the_matrix(world, principal):
    """/api/v1/search (every mode), the portal search page and feedback: a
    document is found iff the principal may see it."""
    import json

    from search.services import keyword_index

    docs, people = world
    user = people[principal]
    from documents.services.processing import process_document

    for level, doc in docs.items():
        doc.status = "pending"
        doc.save()
        process_document(doc.pk)
    keyword_index.rebuild()
    client = _client_for(principal, user)
    for level, doc in docs.items():
        # each fixture document has a unique phrase: "mức truy cập <level>, số <n>"
        term = doc.chunks.first().text.split("số ")[-1].strip(". \n")
        response = client.post("/api/v1/search", json.dumps({"query": f"số {term}", "mode": "keyword"}),
                               content_type="application/json")
        assert response.status_code == 200
        found = {r["document"]["id"] for r in response.json()["results"]}
        assert (doc.pk in found) == (level in EXPECTED[principal]), (principal, level)
        page = client.get("/search/", {"q": f"số {term}", "mode": "keyword"}).content.decode()
        assert (doc.title in page) == (level in EXPECTED[principal]), (principal, level)
        if doc.pk in found:
            search_id = response.json()["search_id"]
            vote = client.post("/api/v1/feedback", {"search_id": search_id, "document_id": doc.pk,
                                                    "kind": "helpful"})
            assert vote.status_code in (201, 404)  # 404 only for anonymous API searches (no session)


@pytest.mark.parametrize("principal", sorted(EXPECTED))
def test_search_status_fragments_obey_the_matrix(world, principal):
    """The search app's fragments (issue 9): a document's vector progress is a 404
    for a hidden document, and the readiness notice counts visible documents only."""
    from documents.models import Document, DocumentStatus

    docs, people = world
    user = people[principal]
    client = _client_for(principal, user)
    for level, doc in docs.items():
        want = 200 if level in EXPECTED[principal] else 404
        assert client.get(f"/search/documents/{doc.pk}/vectors/").status_code == want, (principal, level)
    Document.objects.filter(pk__in=[d.pk for d in docs.values()]).update(status=DocumentStatus.PROCESSING)
    notice = client.get("/search/readiness/").content.decode()
    n = len(EXPECTED[principal])
    assert f"Đang xử lý {n} tài liệu" in notice, (principal, notice)
