"""The access matrix through the answer path (issue 13, safety): for every kind
of principal and every tier, only passages the asker may see ever reach the
chat model — a stub endpoint FAILS THE TEST the moment its prompt holds a
hidden document's passage, code or title — and no answer, generated or
extracted, cites a hidden document. The world is tests/test_access_matrix.py's:
an HR document at each level, grants to a user, a group and a deactivated
account. No relevance floors: every visible passage is a candidate, so the
only thing between a hidden passage and the prompt is the access rule."""
import json
import re

import pytest

from answers.models import AnswerLog
from tests import factories as f
from tests.answer_helpers import AnswerChatStub, Reply, completion, streams, use_endpoint, user_message
from tests.test_access_matrix import EXPECTED, principal, process, visible_ids, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def answerable(world, minilm_path):  # noqa: F811
    from search.services import embedding, keyword_index, spaces

    docs, people = world
    process(docs)
    keyword_index.rebuild()
    space = spaces.create_space("answer-matrix", minilm_path)
    embedding.backfill(space)
    spaces.activate(space)
    return docs, people


def forbidden_strings(docs, name) -> list[str]:
    """What of a hidden document could reach a prompt: its passages' text, its
    title, its code (as the prompt writes it, in parentheses: DOC_3_4 is not DOC_3_41)."""
    out = []
    for level, doc in docs.items():
        if level not in EXPECTED[name]:
            out += [c.text.strip() for c in doc.chunks.all()] + [f'document="{doc.title} ', f"({doc.code})"]
    return out


def guard_for(docs, name):
    forbidden = forbidden_strings(docs, name)

    def guard(body: dict) -> list[str]:
        # the passages: everything but the question, which is the asker's own text (here: a passage's words)
        prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] != "user")
        prompt += user_message(body).split("<sources>", 1)[1]
        return [f"{name}: {s!r}" for s in forbidden if s in prompt]
    return guard


def cite_every_source(body: dict) -> Reply:
    count = user_message(body).count("<source id=")
    return Reply(200, completion("Theo tài liệu " + "".join(f"[{n}]" for n in range(1, count + 1)) + "."))


def ask(p, question: str, *, token: bool):
    body = json.dumps({"question": question})
    if token:
        return p.api.post("/api/v1/answer", body, content_type="application/json", **p.headers)
    return p.portal.post("/api/v1/answer", body, content_type="application/json")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_only_visible_passages_reach_the_model_and_the_citations(answerable, settings, name):
    docs, people = answerable
    p = principal(name, people[name])
    visible = visible_ids(docs, name)
    with AnswerChatStub(cite_every_source, guard=guard_for(docs, name)) as stub:
        use_endpoint(settings, stub.url)
        for token in (False, True):
            if token and not p.has_account:
                continue
            for level, doc in docs.items():
                response = ask(p, doc.chunks.first().text, token=token)
                where = (name, level, "token" if token else "session")
                if token and not p.user.is_active:
                    assert response.status_code == 401, where  # a deactivated account's token is refused
                    continue
                assert response.status_code == 200, (where, response.content[:300])
                body = response.json()
                cited = {c["document"]["id"] for c in body["citations"]}
                assert body["kind"] == "generated", (where, body["kind"], body["notice"], stub.problems)
                assert cited <= visible, where
                assert (doc.pk in cited) == (doc.pk in visible), where
    assert stub.requests, "the model was never asked: the test proved nothing"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_extracted_answer_never_cites_a_hidden_passage(answerable, name):
    from answers.services.answering import answer_question

    docs, people = answerable
    user = people[name]
    visible = visible_ids(docs, name)
    forbidden = forbidden_strings(docs, name)
    for level, doc in docs.items():
        answer = answer_question(user, doc.chunks.first().text)
        cited = {c.document.pk for c in answer.citations}
        assert cited <= visible and (doc.pk in cited) == (doc.pk in visible), (name, level)
        assert not [s for s in forbidden if s in answer.text], (name, level, answer.text)
        assert {s.document.pk for s in answer.evidence.sources} <= visible, (name, level)


def test_the_stub_fails_the_test_when_it_receives_a_forbidden_passage(answerable, settings):
    """The guard works: a prompt with a passage the asker may not see fails the test."""
    from answers.services.answering import answer_question

    docs, people = answerable
    superuser = people["superuser"]
    with pytest.raises(AssertionError, match="may not see"):
        # the superuser may see the confidential document, but the guard of an anonymous visitor forbids it
        with AnswerChatStub(cite_every_source, guard=guard_for(docs, "anonymous")) as stub:
            use_endpoint(settings, stub.url)
            answer = answer_question(superuser, docs[3].chunks.first().text)
    assert answer.notice == "chat-unreachable"  # the stub refused (500): the asker got the extracted answer


# --- the search page's panel (streamed), its citation links and votes ----------------

def sse(response) -> list[tuple[str, dict]]:
    events = []
    for block in b"".join(response.streaming_content).decode().split("\n\n"):
        if block.strip():
            name, data = block.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def ask_panel(p, question: str) -> dict:
    """The panel as its JavaScript asks; the final event's data."""
    response = p.portal.post("/answers/", {"question": question}, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200, response.content[:300]
    events = sse(response)
    assert events[-1][0] == "final", events
    return events[-1][1]


def cited_in(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'data-document="(\d+)"', html)}


def stream_citing_every_source(body: dict):
    count = user_message(body).count("<source id=")
    return streams("Theo tài liệu ", *[f"[{n}]" for n in range(1, count + 1)], ".")(body)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_only_visible_passages_reach_the_model_through_the_streamed_panel(answerable, settings, name):
    docs, people = answerable
    p = principal(name, people[name])
    visible = visible_ids(docs, name)
    with AnswerChatStub(stream_citing_every_source, guard=guard_for(docs, name)) as stub:
        use_endpoint(settings, stub.url)
        for level, doc in docs.items():
            final = ask_panel(p, doc.chunks.first().text)
            cited = cited_in(final["html"])
            assert "answer-generated" in final["html"], (name, level, stub.problems)
            assert cited <= visible and (doc.pk in cited) == (doc.pk in visible), (name, level)
    assert stub.requests and all(r["body"]["stream"] for r in stub.requests)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_citation_links_and_votes_are_the_askers_own(answerable, name):
    """Each principal asks in the panel (offline: the extracted answer) about
    every document: its citation links lead to the cited passages and are
    logged; another user gets a 404 for the same links and cannot vote. The
    asker votes in the portal, and through the API with its token (a
    deactivated account's token is refused; an anonymous API client has no
    answers of its own)."""
    docs, people = answerable
    p = principal(name, people[name])
    outsider = principal("outsider", f.user("outsider", departments=["HR"], is_superuser=True))
    visible = visible_ids(docs, name)
    for level, doc in docs.items():
        answer_id = ask_panel(p, doc.chunks.first().text)["answer_id"]
        log = AnswerLog.objects.get(pk=answer_id)
        assert (log.user_id is not None) == p.signed_in, name
        assert {c["document_id"] for c in log.citations} <= visible, (name, level)
        assert (doc.pk in {c["document_id"] for c in log.citations}) == (doc.pk in visible), (name, level)
        for citation in log.citations:
            url = f"/answers/{answer_id}/cite/{citation['number']}/"
            assert outsider.portal.get(url).status_code == 404, (name, level)  # even a superuser: not theirs
            response = p.portal.get(url)
            assert response.status_code == 302, (name, level)
            assert response["Location"].startswith(f"/documents/{citation['document_id']}/#chunk-")
            assert p.portal.get(response["Location"]).status_code == 200, (name, level)
        log.refresh_from_db()
        assert [o["number"] for o in log.opened] == [c["number"] for c in log.citations]

        vote_url = f"/answers/{answer_id}/vote/"
        assert outsider.portal.post(vote_url, {"helpful": "1"}).status_code == 404
        assert outsider.api.post(f"/api/v1/answer/{answer_id}/vote", {"helpful": True},
                                 content_type="application/json", **outsider.headers).status_code == 404
        assert p.portal.post(vote_url, {"helpful": "1"}, HTTP_HX_REQUEST="true").status_code == 200, name
        api_vote = p.api.post(f"/api/v1/answer/{answer_id}/vote", {"helpful": False},
                              content_type="application/json", **p.headers)
        want = (200 if p.signed_in else 401) if p.has_account else 404
        assert api_vote.status_code == want, (name, api_vote.content)
        assert AnswerLog.objects.get(pk=answer_id).helpful is (want != 200), name


def test_a_citation_of_a_document_no_longer_visible_is_a_404(answerable):
    from guardian.shortcuts import remove_perm

    docs, people = answerable
    p = principal("user_grant", people["user_grant"])
    answer_id = ask_panel(p, docs[3].chunks.first().text)["answer_id"]
    number = next(c["number"] for c in AnswerLog.objects.get(pk=answer_id).citations
                  if c["document_id"] == docs[3].pk)
    remove_perm("documents.view_document", people["user_grant"], docs[3])
    assert p.portal.get(f"/answers/{answer_id}/cite/{number}/").status_code == 404
    assert AnswerLog.objects.get(pk=answer_id).opened == []
