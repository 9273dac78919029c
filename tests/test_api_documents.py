"""Document API: token and session auth, upload, duplicate, delete, download,
re-ingest, schema — every answer obeys the access function."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.authtoken.models import Token

from documents.models import Document
from tests import factories as f
from tests import files

pytestmark = pytest.mark.django_db


def token_client(user):
    token = Token.objects.create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def uploader():
    u = f.user("uploader", departments=["HR"])
    u.user_permissions.add(Permission.objects.get(codename="add_document"))
    return u


def test_upload_with_token_creates_a_pending_document(uploader):
    f.department("HR")
    client = token_client(uploader)
    data = files.docx_bytes()  # once: a docx made a second later differs in its zip timestamps
    response = client.post("/api/v1/documents/", {
        "file": files.upload_file("quy-dinh.docx", data), "code": "HR_POLICY_2030_001",
        "title": "Quy định", "document_type": "policy", "access_level": 2, "departments": "HR",
    })
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "HR_POLICY_2030_001" and body["status"] == "pending"
    assert body["departments"] == ["HR"] and body["owner"] == "uploader"
    doc = Document.objects.get(code="HR_POLICY_2030_001")
    assert doc.source_file.open("rb").read() == data


def test_same_bytes_again_says_already_have_it(uploader):
    client = token_client(uploader)
    first = client.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes())}).json()
    again = client.post("/api/v1/documents/", {"file": files.upload_file("b.md", files.md_bytes())})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["document"]["id"] == first["id"]
    assert Document.objects.count() == 1


def test_duplicate_of_a_hidden_document_reveals_nothing_about_it(uploader):
    hidden = f.document(3, departments=("FIN",), text="# Bí mật\n\nLương thưởng.\n", filename="secret.md")
    client = token_client(uploader)
    response = client.post("/api/v1/documents/", {"file": files.upload_file(
        "copy.md", hidden.source_file.open("rb").read())})
    assert response.json()["document"] is None
    assert hidden.code not in response.content.decode() and hidden.title not in response.content.decode()


def test_upload_needs_the_add_permission():
    client = token_client(f.user("reader"))
    response = client.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes())})
    assert response.status_code == 403
    assert Client().post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes())}
                         ).status_code in (401, 403)


@pytest.mark.parametrize("field,value,message", [
    ("access_level", 7, "is not a valid choice"),
    ("document_type", "memo", "is not a valid choice"),
    ("departments", "NOPE", "Unknown department"),
    ("code", "bad code!", "Code may use"),
])
def test_bad_metadata_is_a_400_with_the_field(uploader, field, value, message):
    response = token_client(uploader).post("/api/v1/documents/", {
        "file": files.upload_file("a.md", files.md_bytes()), field: value})
    assert response.status_code == 400
    assert field in response.json() and message in str(response.json())
    assert Document.objects.count() == 0


def test_missing_file_is_a_400(uploader):
    response = token_client(uploader).post("/api/v1/documents/", {"title": "x"})
    assert response.status_code == 400 and "file" in response.json()


def test_delete_by_owner_and_refusal_for_a_reader(uploader):
    client = token_client(uploader)
    created = client.post("/api/v1/documents/", {"file": files.upload_file("a.md", files.md_bytes()),
                                                 "access_level": 1}).json()
    reader = token_client(f.user("reader"))
    assert reader.delete(f"/api/v1/documents/{created['id']}/").status_code == 403
    assert client.delete(f"/api/v1/documents/{created['id']}/").status_code == 204
    assert not Document.objects.filter(pk=created["id"]).exists()


def test_delete_of_a_hidden_document_is_a_404():
    hidden = f.document(3)
    client = token_client(f.user("someone"))
    assert client.delete(f"/api/v1/documents/{hidden.pk}/").status_code == 404
    assert Document.objects.filter(pk=hidden.pk).exists()


def test_detail_includes_chunks_and_reingest_queues_again(uploader):
    from documents.services.processing import process_document

    doc = f.document(1, owner=uploader, status="pending")
    process_document(doc.pk)
    client = token_client(uploader)
    detail = client.get(f"/api/v1/documents/{doc.pk}/").json()
    assert detail["status"] == "ready" and detail["chunks"] and detail["chunk_count"] == len(detail["chunks"])
    response = client.post(f"/api/v1/documents/{doc.pk}/reingest/")
    assert response.status_code == 202 and response.json()["status"] == "pending"


def test_list_filters(uploader):
    f.document(0, departments=("HR",))
    f.document(1, departments=("IT",))
    client = token_client(uploader)
    assert {d["departments"][0] for d in client.get("/api/v1/documents/?department=IT").json()["results"]} == {"IT"}
    assert client.get("/api/v1/documents/?access_level=0").json()["count"] == 1


def test_session_auth_works_for_the_api():
    u = f.user("browser_user", departments=["HR"])
    doc = f.document(2, departments=("HR",))
    client = Client()
    client.force_login(u)
    assert client.get(f"/api/v1/documents/{doc.pk}/").status_code == 200


def test_openapi_schema_and_docs_page():
    schema = Client().get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/documents/" in text and "Token" in text or "tokenAuth" in text
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn.jsdelivr" not in docs.content  # assets are served locally, no network at view time
