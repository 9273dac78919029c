"""The access matrix through the answer path (issue 13, safety): for every kind
of principal and every tier, only passages the asker may see ever reach the
chat model — a stub endpoint FAILS THE TEST the moment its prompt holds a
hidden document's passage, code or title — and no answer, generated or
extracted, cites a hidden document. The world is tests/test_access_matrix.py's:
an HR document at each level, grants to a user, a group and a deactivated
account. No relevance floors: every visible passage is a candidate, so the
only thing between a hidden passage and the prompt is the access rule."""
import json

import pytest

from tests.answer_helpers import AnswerChatStub, Reply, completion, use_endpoint, user_message
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
