"""The admin's preview of a prompt template: what this version would send for
a sample question, asked as the admin (answers.services.evidence.gather_evidence:
the admin's access applies, the space's relevance floors too), and — only when
asked and an endpoint is configured — what the model answers. Nothing is
logged: a preview is no employee's question."""
from __future__ import annotations

from dataclasses import dataclass, field

from answers.models import PromptTemplate
from answers.services import chat
from answers.services.answering import NOTICES, cite_references, configured_endpoint
from answers.services.chat import ChatFailure
from answers.services.evidence import Evidence, gather_evidence
from answers.services.prompt import Prompt, render, says_not_found
from answers.services.prompt_templates import as_prompt, prompt_for, question_language


@dataclass
class PreviewResult:
    question: str
    language: str  # the question's language as detected
    used_for_question: Prompt  # the prompt this question gets today (may be another version)
    evidence: Evidence
    messages: list[dict]
    endpoint: str = ""  # the configured model, "" when none
    asked: bool = False
    reply: str = ""  # the model's text as it came
    answer: str = ""  # as the asker would read it (references renumbered), or the not-found note
    not_found: bool = False
    failure: str = ""  # what went wrong, as the answer service tells the asker
    failure_detail: str = ""  # the URL and the reason (never the key)
    cited: list = field(default_factory=list)


def preview(user, template: PromptTemplate, question: str, *, ask_model: bool = False) -> PreviewResult:
    evidence = gather_evidence(user, question)
    result = PreviewResult(question=evidence.question, language=question_language(evidence.question),
                           used_for_question=prompt_for(evidence.question), evidence=evidence,
                           messages=render(as_prompt(template), evidence.question, evidence.sources))
    endpoint = configured_endpoint()
    result.endpoint = endpoint.model if endpoint else ""
    if not (ask_model and endpoint and evidence.sources):
        return result
    result.asked = True
    try:
        result.reply = chat.complete(endpoint, result.messages)
    except ChatFailure as failure:
        result.failure, result.failure_detail = str(NOTICES.get(failure.reason, failure.reason)), failure.detail
        return result
    if says_not_found(result.reply):
        result.not_found = True
    else:
        result.answer, result.cited = cite_references(result.reply, evidence.sources)
    return result
