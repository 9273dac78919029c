"""A question, answered from the documents the asker may read, with numbered
citations: `answer_question` (the API, the panel without JavaScript) and
`stream_answer` (the search page's panel: the same answer, its text given as
the model writes it) are the entry points; both log the same AnswerLog row.

question → the portal's search as the asker (answers.services.evidence: the
access function inside the ranking, the space's relevance floors) →
- nothing passed the floors: "not found", and no model is asked;
- a chat endpoint is configured (PORTAL_ANSWER_CHAT_URL): its answer from the
  numbered sources, delimited as data (answers.services.prompt); the model
  may say the sources do not answer (→ "not found");
- otherwise, or when the endpoint is down, slow, rate-limiting or answers
  garbage: the sentences of the sources that best match the question
  (answers.services.extractive), labelled as extracted, with a notice saying
  why when the endpoint failed.
Citations are numbered in the order the answer first cites them; each names
the document, the chunk, the search score and the chunk's place in its page.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from answers.models import AnswerKind, AnswerLog
from answers.services import chat, extractive
from answers.services.chat import ChatEndpoint, ChatFailure, Failure
from answers.services.evidence import Evidence, Source, gather_evidence
from answers.services.prompt import NOT_FOUND_MARKER, Prompt, answer_messages, says_not_found
from answers.services.prompt_templates import prompt_for
from search.models import EmbeddingSpace
from search.services.search_log import client_key

logger = logging.getLogger(__name__)

NOT_FOUND_TEXT = _("No information was found in the documents you may see.")
KIND_LABELS = {
    AnswerKind.GENERATED: _("Written by the chat model from the cited passages"),
    AnswerKind.EXTRACTED: _("Extracted: sentences quoted from the cited passages, not written by a model"),
    AnswerKind.NOT_FOUND: _("Not found"),
}
# Shown with an extracted answer when the chat model was asked and failed.
NOTICES = {
    Failure.UNREACHABLE: _("The answer model could not be reached: the answer is extracted from the documents."),
    Failure.TIMEOUT: _("The answer model took too long: the answer is extracted from the documents."),
    Failure.RATE_LIMITED: _("The answer model is busy (too many requests): the answer is extracted from the "
                            "documents."),
    Failure.BAD_ANSWER: _("The answer model gave an unusable reply: the answer is extracted from the documents."),
}


@dataclass
class Citation:
    number: int
    source: Source

    @property
    def chunk(self):
        return self.source.chunk

    @property
    def document(self):
        return self.source.document

    @property
    def score(self) -> float:
        return self.source.score

    @property
    def url(self) -> str:
        return self.source.url


@dataclass
class Answer:
    question: str
    kind: str
    text: str
    citations: list[Citation]
    space: EmbeddingSpace | None
    notice: str = ""  # a Failure code when the chat model was asked and not used
    search_notice: str = ""  # "no-space": keywords alone ranked
    model: str = ""  # the chat model that wrote it ("" unless generated)
    latency_ms: float = 0.0
    evidence: Evidence | None = field(default=None, repr=False)
    answer_id: int | None = None  # the AnswerLog row, when logged
    prompt: Prompt | None = None  # the prompt the chat model was asked with (None: no model was asked)

    @property
    def kind_label(self) -> str:
        return str(KIND_LABELS[self.kind])

    @property
    def notice_text(self) -> str:
        return str(NOTICES.get(self.notice, ""))


def configured_endpoint() -> ChatEndpoint | None:
    if not (settings.ANSWER_CHAT_URL and settings.ANSWER_CHAT_MODEL):
        return None
    return ChatEndpoint(settings.ANSWER_CHAT_URL, settings.ANSWER_CHAT_MODEL, settings.ANSWER_CHAT_API_KEY,
                        settings.ANSWER_CHAT_TIMEOUT)


def answer_question(user, question: str, *, client_id: str | None = None, via: str | None = None) -> Answer:
    """Answer `question` as `user` (None or anonymous: public documents only);
    with `via` ("api", "portal") the answer is logged (`client_id`: an
    anonymous portal visitor's cookie id, which lets them vote on it)."""
    started = time.perf_counter()
    evidence = gather_evidence(user, question, client_id=client_id)
    answer = _answer(evidence)
    return _finish(answer, started, user, via, client_id)


def _finish(answer: Answer, started: float, user, via: str | None, client_id: str | None) -> Answer:
    answer.latency_ms = (time.perf_counter() - started) * 1000
    if via:
        answer.answer_id = log_answer(answer, user, via, client_id=client_id).pk
    return answer


def _base(evidence: Evidence) -> dict:
    return {"question": evidence.question, "space": evidence.space, "search_notice": evidence.search_notice,
            "evidence": evidence}


def _not_found(evidence: Evidence, model: str = "") -> Answer:
    return Answer(kind=AnswerKind.NOT_FOUND, text=str(NOT_FOUND_TEXT), citations=[], model=model, **_base(evidence))


def _answer(evidence: Evidence) -> Answer:
    if not evidence.sources:
        return _not_found(evidence)
    endpoint = configured_endpoint()
    if endpoint is None:
        return _extracted(evidence, "")
    prompt = prompt_for(evidence.question)
    try:
        content = chat.complete(endpoint, answer_messages(evidence.question, evidence.sources, prompt))
    except Exception as exc:  # noqa: BLE001 - a fault in talking to the model must not cost the asker the answer
        answer = _extracted(evidence, _failure(exc))
    else:
        answer = _from_reply(content, evidence, endpoint.model)
    answer.prompt = prompt
    return answer


def _failure(exc: Exception) -> str:
    """The notice code for a failed call to the chat model (logged here)."""
    if isinstance(exc, ChatFailure):
        logger.warning("answer: the chat model's answer is not used: %s", exc.detail)
        return exc.reason
    logger.error("answer: calling the chat model failed unexpectedly", exc_info=exc)
    return Failure.UNREACHABLE


def _from_reply(content: str, evidence: Evidence, model: str) -> Answer:
    """The answer the model's whole reply makes: not found, or its text with renumbered citations."""
    if says_not_found(content):
        return _not_found(evidence, model)
    text, citations = cite_references(content, evidence.sources)
    return Answer(kind=AnswerKind.GENERATED, text=text, citations=citations, model=model, **_base(evidence))


def _extracted(evidence: Evidence, notice: str) -> Answer:
    quotes = extractive.best_quotes(evidence.question, evidence.sources)
    numbers: dict[int, int] = {}
    for quote in quotes:
        numbers.setdefault(quote.source.number, len(numbers) + 1)
    by_number = {s.number: s for s in evidence.sources}
    return Answer(kind=AnswerKind.EXTRACTED, text=extractive.extracted_text(quotes, numbers), notice=notice,
                  citations=[Citation(new, by_number[old]) for old, new in numbers.items()], **_base(evidence))


# --- streamed (the search page's panel) -------------------------------------------

@dataclass
class Token:
    """More of the answer's text, to append to what was given so far (citation numbers already final)."""
    text: str


@dataclass
class Final:
    """The answer, logged: what the page shows in the end. Its text may differ
    from the tokens given: after a failure mid-stream it is the extracted
    answer (with its notice), and a model saying "not found" becomes the
    portal's own sentence."""
    answer: Answer


def stream_answer(user, question: str, *, client_id: str | None = None,
                  via: str | None = None) -> Iterator[Token | Final]:
    """`answer_question`, with the chat model's text given as it is written:
    Token events, then one Final. Offline, not found, and the extracted answer
    are one Final. The search runs now (SearchUnavailable is raised here, before
    any event); the chat model is asked while the events are read."""
    started = time.perf_counter()
    evidence = gather_evidence(user, question, client_id=client_id)
    endpoint = configured_endpoint() if evidence.sources else None
    if endpoint is None:
        return iter([Final(_finish(_answer(evidence), started, user, via, client_id))])
    return _streamed(evidence, endpoint, started, user, via, client_id)


def _streamed(evidence: Evidence, endpoint: ChatEndpoint, started: float, user, via, client_id):
    pieces: list[str] = []
    shown = ""
    prompt = prompt_for(evidence.question)
    try:
        for piece in chat.stream(endpoint, answer_messages(evidence.question, evidence.sources, prompt)):
            pieces.append(piece)
            text = _showable("".join(pieces), evidence.sources)
            if len(text) > len(shown):
                yield Token(text[len(shown):])
                shown = text
    except Exception as exc:  # noqa: BLE001 - as in _answer: the asker gets the extracted answer
        answer = _extracted(evidence, _failure(exc))
    else:
        answer = _from_reply("".join(pieces).strip(), evidence, endpoint.model)
    answer.prompt = prompt
    yield Final(_finish(answer, started, user, via, client_id))


_OPEN_REFERENCE = re.compile(r"\[[\d\s,;]{0,15}$")


def _showable(raw: str, sources: list[Source]) -> str:
    """What of the model's text so far can be shown for good: renumbered as the
    final answer will be (numbers are given in the order of first citation, so
    a prefix renumbers as it will in the whole), less a reference still open at
    the end ("[1, "), and nothing while the text may still become NOT_FOUND."""
    stripped = raw.strip()
    if not stripped or NOT_FOUND_MARKER.startswith(stripped.strip("*_`'\" .")) or says_not_found(stripped):
        return ""
    open_reference = _OPEN_REFERENCE.search(raw)
    if open_reference:
        raw = raw[:open_reference.start()]
    return cite_references(raw.lstrip(), sources)[0]


_REFERENCE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


def cite_references(text: str, sources: list[Source]) -> tuple[str, list[Citation]]:
    """The model's references ([2], [1, 3]) renumbered in the order it first
    cites them; a number that is no source is dropped. A reply citing nothing
    cites every source it was given, numbered as given."""
    by_number = {s.number: s for s in sources}
    order: dict[int, int] = {}

    def renumber(match: re.Match) -> str:
        kept = []
        for n in (int(x) for x in re.split(r"[,;]", match.group(1))):
            if n in by_number:
                kept.append(order.setdefault(n, len(order) + 1))
        return "".join(f"[{k}]" for k in dict.fromkeys(kept))

    renumbered = _REFERENCE.sub(renumber, text)
    if not order:
        return text, [Citation(s.number, s) for s in sources]
    return renumbered, [Citation(new, by_number[old]) for old, new in order.items()]


def log_answer(answer: Answer, user, via: str, *, client_id: str | None = None) -> AnswerLog:
    """One row: the question, the passages the answer was written from (the
    sources, best first), its kind, notice, text and citations, and who asked
    (an anonymous visitor: the hash of their cookie id, as the search log keeps it)."""
    signed_in = getattr(user, "is_authenticated", False)
    sources = answer.evidence.sources if answer.evidence else []
    # Not found: the text is the portal's own sentence in the asker's language; the kind says it.
    text = "" if answer.kind == AnswerKind.NOT_FOUND else answer.text
    return AnswerLog.objects.create(
        user=user if signed_in else None, client_key="" if signed_in else client_key(client_id),
        question=answer.question, space=answer.space, kind=answer.kind,
        notice=answer.notice, answer=text, model=answer.model, latency_ms=round(answer.latency_ms, 2), via=via,
        prompt_id=answer.prompt.template_id if answer.prompt else None,
        retrieved=[{"chunk_id": s.chunk.pk, "document_id": s.chunk.document_id, "score": s.score} for s in sources],
        citations=[{"number": c.number, "chunk_id": c.chunk.pk, "document_id": c.document.pk, "score": c.score}
                   for c in answer.citations])
