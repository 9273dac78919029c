"""Answer metrics on an evaluation set (issue 13, item 6), per answer mode.

A case is a question with what answers it: the relevant documents (an
evaluation item's document codes, or the documents of its relevant chunks)
and a reference span (the item's `positive`: a verbatim span of the answer
passage), or an unanswerable question (no document of the corpus answers it:
documents/samples/unanswerable.jsonl for the sample sets: held out, never
calibrated on — the answer floor is calibrated on
documents/samples/unanswerable_calibration.jsonl). Each case is asked
through `answer_question` — the portal's own path: the search as the
evaluating user, the relevance floors, the chat model or the extraction — and
scored:

- answered rate: answerable questions that got an answer (not "not found");
- citation precision: cited passages that lie in a relevant document, over
  every citation of the answered answerable questions (micro average); first
  citation right: answerable questions whose first citation is relevant;
- reference contained: answerable questions with a reference whose answer
  quotes the whole reference span (accents, case and spacing folded) — what the
  extracted mode promises; a generated answer paraphrases, so read it there as
  a lower bound;
- refusal rate: unanswerable questions answered "not found" (by the relevance
  floors or by the space's answer floor: answers.services.support);
- latency to the full answer and to its first token, p50/p95 (search included).

Modes: `extracted` (the chat endpoint switched off for the run) and
`generated` (the configured endpoint; a failed call falls back to the
extraction as it would for a person, and is counted in `fallbacks`). Each mode
is a timer, `TIMERS[mode](user, question) -> Timed`. The generated mode is
asked as the search page's panel asks (answers.services.answering.stream_answer):
its first token is the first piece of text the page can show (or the final
answer, when nothing was streamed: not found, or the extraction after a failed
call). The extracted answer is not streamed: its first token comes with it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.test.utils import override_settings

from answers.models import AnswerKind
from answers.services.answering import Answer, Final, Token, answer_question, configured_endpoint, stream_answer
from answers.services.evidence import SPACE, answer_floor_override
from documents.models import Chunk
from documents.services.text import fold
from search.evaluation import metrics as m
from search.evaluation.models import EvaluationSet
from search.evaluation.samples import CALIBRATION_SET, GUARD_SET
from search.services import encoders
from search.services.spaces import active_space

SAMPLE_UNANSWERABLE = Path(settings.BASE_DIR) / "documents" / "samples" / "unanswerable.jsonl"
WARM_UP_QUESTION = "warm-up question that no evaluation set asks"
EXTRACTED, GENERATED = "extracted", "generated"
Progress = Callable[[int, int], None]


@dataclass
class Case:
    query: str
    answerable: bool
    relevant_documents: set[str] = field(default_factory=set)
    reference: str = ""


@dataclass
class Timed:
    answer: Answer
    full_ms: float
    first_token_ms: float


def _timed_answer(user, question: str) -> Timed:
    started = time.perf_counter()
    answer = answer_question(user, question)
    full = (time.perf_counter() - started) * 1000
    return Timed(answer, full, full)  # not streamed: the first token comes with the whole answer


def _extracted(user, question: str) -> Timed:
    with override_settings(ANSWER_CHAT_URL=None):
        return _timed_answer(user, question)


def _streamed_answer(user, question: str) -> Timed:
    started = time.perf_counter()
    first = answer = None
    for event in stream_answer(user, question):
        if first is None and (isinstance(event, Final) or (isinstance(event, Token) and event.text)):
            first = time.perf_counter()
        if isinstance(event, Final):
            answer = event.answer
    done = time.perf_counter()
    return Timed(answer, (done - started) * 1000, (first - started) * 1000)


TIMERS: dict[str, Callable[[object, str], Timed]] = {EXTRACTED: _extracted, GENERATED: _streamed_answer}


def available_modes() -> list[str]:
    return [EXTRACTED] + ([GENERATED] if configured_endpoint() else [])


# --- cases -------------------------------------------------------------------------------

def read_unanswerable(path: str | Path) -> list[Case]:
    with open(path, encoding="utf-8") as f:
        return [Case(query=json.loads(line)["query"], answerable=False) for line in f if line.strip()]


def unanswerable_file(evaluation_set: EvaluationSet, given: str | Path | None = None) -> Path | None:
    """`given`, or for the sample corpus's sets its own file of unanswerable questions."""
    if given:
        return Path(given)
    return SAMPLE_UNANSWERABLE if evaluation_set.name in (CALIBRATION_SET, GUARD_SET) else None


def cases_from_set(evaluation_set: EvaluationSet, unanswerable: str | Path | None = None) -> list[Case]:
    """The set's usable items as answerable cases, then the unanswerable
    questions (by default, for the sample corpus's sets, its own file)."""
    items = [i for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]
    chunk_docs = dict(Chunk.objects.filter(pk__in={c for i in items for c in i.relevant_chunks})
                      .values_list("pk", "document__code"))
    cases = [Case(query=i.query, answerable=True, reference=i.positive,
                  relevant_documents=set(i.relevant_documents) | {chunk_docs[c] for c in i.relevant_chunks
                                                                  if c in chunk_docs})
             for i in items]
    unanswerable = unanswerable_file(evaluation_set, unanswerable)
    return cases + (read_unanswerable(unanswerable) if unanswerable else [])


# --- scoring ------------------------------------------------------------------------------

def folded(text: str) -> str:
    return " ".join(fold(text).split())


def score_case(case: Case, answer: Answer) -> dict:
    cited = [c.document.code for c in answer.citations]
    row = {"query": case.query, "answerable": case.answerable, "kind": answer.kind, "notice": answer.notice,
           "answered": answer.kind != AnswerKind.NOT_FOUND, "cited": cited, "text": answer.text[:600],
           "relevant": sorted(case.relevant_documents)}
    if case.answerable:
        row["cited_right"] = sum(code in case.relevant_documents for code in cited)
        row["first_right"] = bool(cited) and cited[0] in case.relevant_documents
        if case.reference:
            row["reference"] = case.reference
            row["contained"] = row["answered"] and folded(case.reference) in folded(answer.text)
    return row


def summarise(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    answered = [r for r in answerable if r["answered"]]
    referenced = [r for r in answerable if "contained" in r]
    unanswerable = [r for r in rows if not r["answerable"]]
    cited = sum(len(r["cited"]) for r in answered)

    def share(part, whole):
        return round(part / len(whole), 4) if whole else None

    full = [r["latency_ms"] for r in rows]
    first = [r["first_token_ms"] for r in rows]
    return {
        "questions": len(rows), "answerable": len(answerable), "with_reference": len(referenced),
        "unanswerable": len(unanswerable),
        "answered_rate": share(len(answered), answerable),
        "citation_precision": round(sum(r["cited_right"] for r in answered) / cited, 4) if cited else None,
        "first_citation_right": share(sum(r["first_right"] for r in answerable), answerable),
        "reference_contained": share(sum(r["contained"] for r in referenced), referenced),
        "refusal_rate": share(sum(not r["answered"] for r in unanswerable), unanswerable),
        "fallbacks": sum(bool(r["notice"]) for r in rows),
        "latency_p50_ms": round(m.percentile(full, 50), 1) if full else None,
        "latency_p95_ms": round(m.percentile(full, 95), 1) if full else None,
        "first_token_p50_ms": round(m.percentile(first, 50), 1) if first else None,
        "first_token_p95_ms": round(m.percentile(first, 95), 1) if first else None,
    }


def evaluate_mode(cases: list[Case], mode: str, user, *, progress: Progress | None = None,
                  answer_floor: float | None | str = SPACE) -> dict:
    """{"mode", "label", "answer_floor", "summary", "rows"} for `cases` asked as
    `user` in `mode`, with `answer_floor` (SPACE: the space's own; None: the
    relevance floors alone; a value: that one)."""
    with answer_floor_override(answer_floor):
        result = _evaluate_mode(cases, mode, user, progress)
    space = active_space()
    used = (space.answer_floor if space is not None else None) if answer_floor == SPACE else answer_floor
    if used is None:  # a space without an answer floor reads as before
        label = mode if answer_floor == SPACE else f"{mode}, relevance floors only"
    else:
        label = f"{mode}, answer floor {used}"
    return {**result, "label": label, "answer_floor": used}


def _evaluate_mode(cases: list[Case], mode: str, user, progress: Progress | None) -> dict:
    timer = TIMERS[mode]
    if mode == GENERATED and configured_endpoint() is None:
        raise ValueError("mode generated needs a chat endpoint: set PORTAL_ANSWER_CHAT_URL and "
                         "PORTAL_ANSWER_CHAT_MODEL")
    # The model's first load and the plan caches are not latency; then no question of the set is cached.
    timer(user, WARM_UP_QUESTION)
    encoders.clear_query_cache()
    rows = []
    for done, case in enumerate(cases, start=1):
        timed = timer(user, case.query)
        rows.append({**score_case(case, timed.answer), "latency_ms": round(timed.full_ms, 2),
                     "first_token_ms": round(timed.first_token_ms, 2)})
        if progress:
            progress(done, len(cases))
    endpoint = configured_endpoint() if mode == GENERATED else None
    return {"mode": mode, "model": endpoint.model if endpoint else "", "summary": summarise(rows), "rows": rows}


def evaluate(cases: list[Case], modes: list[str], user, *, progress_for: Callable[[str], Progress] | None = None,
             answer_floors: tuple = (SPACE,)) -> list[dict]:
    return [evaluate_mode(cases, mode, user, progress=progress_for(mode) if progress_for else None,
                          answer_floor=floor)
            for mode in modes for floor in answer_floors]
