"""The datasets API (/api/v1/finetune/datasets/), the admin and the
`finetune_dataset` command: staff only, a dataset shown to its builder and to
superusers, pairs of documents the viewer may not see left out."""
import io
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from finetune.models import TrainingDataset
from finetune.services.datasets import DatasetSpec, build_dataset
from tests import factories as f
from tests.finetune_helpers import jsonl
from tests.test_access_matrix import process

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Messages are compared in English (the default language is Vietnamese)."""
    from django.utils import translation

    with translation.override("en"):
        yield

URL = "/api/v1/finetune/datasets/"
PAIRS = [{"query": f"câu hỏi {i}", "positive": f"Đoạn văn số {i} về quy định {i}."} for i in range(20)]


def api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}",
                  HTTP_ACCEPT_LANGUAGE="en")


def staff(name="ft_staff", perms=("view", "add", "change"), **kw):
    user = f.user(name, is_staff=True, **kw)
    user.user_permissions.add(*[Permission.objects.get(codename=f"{p}_trainingdataset") for p in perms])
    return user


def upload(name, *records, raw=None):
    source = jsonl(name, *records, raw=raw)
    data = io.BytesIO(source.data)
    data.name = source.name
    return data


def test_build_by_upload_list_detail_pairs():
    user = staff()
    client = api(user)
    response = client.post(URL, {"name": "uploaded", "pairs": upload("positive_pairs.jsonl", *PAIRS),
                                 "eval_share": "0.2", "seed": "3"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ready" and body["counts"]["pairs"] == 20 and body["counts"]["eval"]["documents"] == 4
    assert body["created_by"] == "ft_staff" and body["validation_summary"]["errors"] == 0
    assert body["validation"]["stats"]["pairs"] == 20
    listed = client.get(URL).json()["results"]
    assert [d["name"] for d in listed] == ["uploaded"] and "validation" not in listed[0]
    pairs = client.get(f"{URL}{body['id']}/pairs/", {"split": "eval"}).json()
    assert pairs["count"] == 4 and {p["split"] for p in pairs["results"]} == {"eval"}
    assert client.get(f"{URL}{body['id']}/pairs/", {"split": "both"}).status_code == 400


def test_a_malformed_upload_is_refused_with_every_line_and_nothing_is_written():
    response = api(staff()).post(URL, {"name": "bad", "pairs": upload("positive_pairs.jsonl", PAIRS[0], {"query": "q"},
                                                                      raw=["{oops"])})
    assert response.status_code == 400
    assert response.json()["problems"] == ['positive_pairs.jsonl: line 2: "positive" is missing or not a string',
                                           "positive_pairs.jsonl: line 3: not valid JSON (Expecting property name "
                                           "enclosed in double quotes, column 2)"]
    assert not TrainingDataset.objects.exists()


def test_bad_options_are_400s(settings, tmp_path):
    client = api(staff())
    assert client.post(URL, {"name": "x", "synthetic": "http"}).status_code == 400  # the command's job
    assert client.post(URL, {"name": "no space!", "feedback": "true"}).status_code == 400
    settings.UPLOAD_MAX_BYTES = 10
    too_big = client.post(URL, {"name": "big", "pairs": upload("p.jsonl", *PAIRS)})
    assert too_big.status_code == 400 and "larger than 10 bytes" in too_big.content.decode()
    settings.BASE_DIR = tmp_path / "portal"  # no vicov19qa next to it
    missing = client.post(URL, {"name": "vicov", "benchmark": "vicov19qa"})
    assert missing.status_code == 400 and "no such file" in missing.json()["problems"][0]


def test_who_may_do_what():
    owner, other, viewer = staff("owner"), staff("other"), staff("viewer", perms=("view",))
    root = f.user("root", is_superuser=True, is_staff=True)
    dataset = build_dataset("owned", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)), owner)
    detail = f"{URL}{dataset.pk}/"
    assert Client().get(URL).status_code == 401
    assert api(f.user("employee")).get(URL).status_code == 403  # signed in, not staff
    assert api(f.user("staff_no_perm", is_staff=True)).get(URL).status_code == 403
    assert api(viewer).post(URL, {"name": "v", "pairs": upload("p.jsonl", *PAIRS)}).status_code == 403
    assert api(viewer).post(f"{detail}validate/").status_code == 403
    assert api(other).get(URL).json()["results"] == []
    for path in (detail, f"{detail}pairs/"):
        assert api(other).get(path).status_code == 404  # like a missing one
    assert api(other).post(f"{detail}validate/").status_code == 404
    assert api(owner).get(detail).status_code == 200
    assert api(root).get(detail).status_code == 200


def test_pairs_of_a_document_the_viewer_can_no_longer_see_are_left_out():
    docs = {level: f.document(level, departments=("HR",)) for level in (1, 2)}
    process(docs)
    member = staff("hr_staff", departments=["HR"])
    dataset = build_dataset("hr", DatasetSpec(synthetic="offline", eval_share=0), member)
    assert dataset.access_levels == [1, 2]
    client = api(member)
    keys = {p["doc_key"] for p in client.get(f"{URL}{dataset.pk}/pairs/").json()["results"]}
    assert keys == {f"doc:{docs[1].pk}", f"doc:{docs[2].pk}"}
    member.departments.clear()  # moved out of HR: the restricted document's text is no longer theirs to read
    keys = {p["doc_key"] for p in client.get(f"{URL}{dataset.pk}/pairs/").json()["results"]}
    assert keys == {f"doc:{docs[1].pk}"}
    admin = Client()
    admin.force_login(member)
    page = admin.get("/admin/finetune/trainingpair/", {"dataset__id__exact": dataset.pk}).content.decode()
    assert f"doc:{docs[1].pk}" in page and f"doc:{docs[2].pk}" not in page


def test_validate_with_a_space_counts_tokens(minilm_path):
    from search.services import spaces

    spaces.create_space("tiny", minilm_path)
    user = staff()
    dataset = build_dataset("v", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)), user)
    response = api(user).post(f"{URL}{dataset.pk}/validate/", {"space": "tiny", "max_length": 8},
                              content_type="application/json")
    assert response.status_code == 200
    assert response.json()["validation"]["stats"]["tokens"]["limit_tokens"] == 8
    assert "over_long" in response.json()["validation_summary"]["codes"]
    assert api(user).post(f"{URL}{dataset.pk}/validate/", {"space": "nope"},
                          content_type="application/json").status_code == 400


def test_admin_lists_own_datasets_and_validates():
    owner, other = staff("owner"), staff("other")
    mine = build_dataset("mine", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)), owner)
    build_dataset("theirs", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)), other)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(owner)
    page = client.get("/admin/finetune/trainingdataset/").content.decode()
    assert ">mine<" in page and "theirs" not in page and "errors: 0, warnings: 1" in page
    change = client.get(f"/admin/finetune/trainingdataset/{mine.pk}/change/").content.decode()
    assert f"/admin/finetune/trainingpair/?dataset__id__exact={mine.pk}" in change and mine.content_hash in change
    pairs_page = client.get("/admin/finetune/trainingpair/").content.decode()
    assert "theirs" not in pairs_page  # neither its pairs nor its name in the filter
    response = client.post("/admin/finetune/trainingdataset/", {"action": "validate_datasets", "index": "0",
                                                                "_selected_action": [mine.pk]}, follow=True)
    assert "Mine: errors: 0, warnings: 1 (few_pairs)" in response.content.decode()  # messages start upper-case
    assert client.get("/admin/finetune/trainingdataset/add/").status_code == 403


def test_command_build_validate_list(tmp_path, minilm_path):
    pairs = tmp_path / "positive_pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in PAIRS), encoding="utf-8")
    out = io.StringIO()
    call_command("finetune_dataset", "build", "cli", "--pairs", str(pairs), "--eval-share", "0.2", stdout=out)
    text = out.getvalue()
    assert "cli: ready; 20 pairs (train 16, eval 4)" in text and "pairs: 20 pairs" in text
    call_command("finetune_dataset", "validate", "cli", "--model", minilm_path, "--max-length", "8", stdout=out)
    assert "WARNING over_long" in out.getvalue()
    call_command("finetune_dataset", "list", stdout=out)
    assert "cli" in out.getvalue().splitlines()[-1]
    with pytest.raises(CommandError, match="exists already"):
        call_command("finetune_dataset", "build", "cli", "--pairs", str(pairs), stdout=out)
    call_command("finetune_dataset", "build", "cli", "--pairs", str(pairs), "--replace", stdout=out)
    with pytest.raises(CommandError, match="name the user whose access applies"):
        call_command("finetune_dataset", "build", "fb", "--feedback", stdout=out)
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("finetune_dataset", "build", "x", "--pairs", str(tmp_path / "missing.jsonl"), stdout=out)
    with pytest.raises(CommandError, match="No user named"):
        call_command("finetune_dataset", "build", "x", "--feedback", "--as-user", "nobody", stdout=out)


def test_command_synthetic_shows_progress_and_the_samples_helper(monkeypatch):
    from finetune.services.datasets import samples

    docs = {level: f.document(level) for level in (0, 1)}
    process(docs)
    f.user("builder", clearance=1)
    out = io.StringIO()
    call_command("finetune_dataset", "build", "syn", "--synthetic", "offline", "--as-user", "builder", stdout=out)
    assert "synthetic queries" in out.getvalue() and "synthetic:" in out.getvalue()
    with pytest.raises(CommandError, match="run manage.py load_samples first"):
        call_command("finetune_dataset", "samples", "s", "--as-user", "builder", stdout=out)
    monkeypatch.setattr(samples, "sample_codes", lambda: [d.code for d in docs.values()])
    call_command("finetune_dataset", "samples", "s", "--as-user", "builder", "--eval-share", "0", stdout=out)
    dataset = TrainingDataset.objects.get(name="s")
    assert dataset.sources[0]["generator"] == "offline" and dataset.access_levels == [0, 1]


def test_validation_messages_are_shown_in_the_readers_language():
    user = staff()
    dataset = build_dataset("lang", DatasetSpec(pairs=jsonl("p.jsonl", *PAIRS)), user)
    stored = dataset.validation["warnings"][0]
    assert stored["msgid"].startswith("Only %(n)d training pairs") and stored["params"] == {"n": 18}
    token = Token.objects.get_or_create(user=user)[0].key
    for language, text in (("vi", "Chỉ có 18 cặp huấn luyện"), ("en", "Only 18 training pairs")):
        body = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE=language).get(
            f"{URL}{dataset.pk}/").json()
        assert body["validation"]["warnings"][0]["message"].startswith(text), language
    refused = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="vi").post(
        URL, {"name": "x", "pairs": upload("p.jsonl", {"query": "q"})})
    assert refused.json()["problems"] == ['p.jsonl: dòng 1: thiếu "positive" hoặc không phải chuỗi']
