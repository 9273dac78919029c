"""Prompt templates: which one a question gets, what an edit must keep, and
how a version is saved and activated.

- `prompt_for(question)`: the active version of the question's language
  (search.services.matching.text_language: Vietnamese by its letters and tone marks,
  or by its syllables when typed without diacritics; anything else is answered
  with the English prompt), else the built-in prompt of that language.
- `validate(system, user)`: the rules an edit cannot break. The user message
  has exactly the placeholders {question} and {sources}, once each, as plain
  names (no attribute, index, conversion or format: "{sources.__class__}" is
  refused); the system prompt has no placeholder at all (the question and the
  passages never enter the system message) and tells the model to reply
  NOT_FOUND (answers.services.prompt.NOT_FOUND_MARKER), which is how the
  portal knows the sources do not answer. Delimiting and escaping are code.
- `save_version`: a new row with the next version number of its language,
  never an update; `activate`: one version active per language, in one
  transaction (the database refuses a second active one anyway).
"""
from __future__ import annotations

from string import Formatter

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from answers.models import PromptTemplate
from answers.services.prompt import BUILT_IN, NOT_FOUND_MARKER, Prompt
from search.services.matching import text_language

PLACEHOLDERS = ("question", "sources")


def question_language(question: str) -> str:
    return "en" if text_language(question) == "other" else "vi"


def as_prompt(template: PromptTemplate) -> Prompt:
    return Prompt(template.language, template.system_prompt, template.user_template, template.pk, template.version)


def prompt_for(question: str) -> Prompt:
    lang = question_language(question)
    template = PromptTemplate.objects.filter(language=lang, is_active=True).first()
    return as_prompt(template) if template else BUILT_IN[lang]


def _fields(text: str) -> list[tuple[str, str | None, str | None]]:
    """(field name, conversion, format spec) of every placeholder, or ValidationError for a broken brace."""
    try:
        return [(name, conversion, spec) for _literal, name, spec, conversion in Formatter().parse(text)
                if name is not None]
    except ValueError as exc:
        raise ValidationError(_("A brace is not closed or not doubled (%(detail)s): write a literal { or } as {{ "
                                "or }}.") % {"detail": exc}) from None


def validate(system_prompt: str, user_template: str) -> dict[str, list[str]]:
    """Problems per field ({} when none), each a sentence saying what to fix."""
    problems: dict[str, list[str]] = {"system_prompt": [], "user_template": []}
    try:
        system_fields = _fields(system_prompt)
    except ValidationError as exc:
        problems["system_prompt"] += exc.messages
    else:
        if system_fields:
            problems["system_prompt"].append(
                _("The system prompt takes no placeholders (found %(found)s): the question and the sources go in "
                  "the user message only. Write a literal brace as {{ or }}.")
                % {"found": ", ".join("{" + (name or "") + "}" for name, _c, _s in system_fields)})
    if NOT_FOUND_MARKER not in system_prompt:
        problems["system_prompt"].append(
            _("The system prompt must tell the model to reply exactly %(marker)s when the sources do not contain "
              "the answer: the portal recognises that word and says nothing was found instead of inventing an "
              "answer.") % {"marker": NOT_FOUND_MARKER})
    try:
        user_fields = _fields(user_template)
    except ValidationError as exc:
        problems["user_template"] += exc.messages
    else:
        names = [name for name, _c, _s in user_fields]
        unknown = sorted({n for n in names if n not in PLACEHOLDERS})
        if unknown:
            problems["user_template"].append(
                _("Unknown placeholder(s) %(unknown)s: the user message may only use {question} and {sources}.")
                % {"unknown": ", ".join("{" + n + "}" for n in unknown)})
        for placeholder in PLACEHOLDERS:
            count = names.count(placeholder)
            if count != 1:
                problems["user_template"].append(
                    _("The user message must contain {%(name)s} exactly once (found %(count)s times).")
                    % {"name": placeholder, "count": count})
        if any((conversion or spec) for name, conversion, spec in user_fields if name in PLACEHOLDERS):
            problems["user_template"].append(
                _("Write the placeholders as plain {question} and {sources}, without ! or : after the name."))
    return {field: found for field, found in problems.items() if found}


def next_version(language: str) -> int:
    return (PromptTemplate.objects.filter(language=language).aggregate(v=Max("version"))["v"] or 0) + 1


@transaction.atomic
def save_version(language: str, system_prompt: str, user_template: str, *, user=None, note: str = "",
                 activate_it: bool = False) -> PromptTemplate:
    """A new version (never an update of an old one); ValidationError when the texts break a rule."""
    problems = validate(system_prompt, user_template)
    if problems:
        raise ValidationError(problems)
    # serialise numbering (the unique (language, version) index catches a race on a language's first version)
    list(PromptTemplate.objects.select_for_update().filter(language=language).values_list("pk", flat=True))
    template = PromptTemplate.objects.create(
        language=language, version=next_version(language), system_prompt=system_prompt,
        user_template=user_template, note=note, created_by=user if getattr(user, "pk", None) else None)
    if activate_it:
        activate(template)
    return template


@transaction.atomic
def activate(template: PromptTemplate) -> None:
    """Make `template` the one version of its language in use (validated again:
    a row written past the admin must not reach a prompt)."""
    problems = validate(template.system_prompt, template.user_template)
    if problems:
        raise ValidationError(problems)
    PromptTemplate.objects.filter(language=template.language, is_active=True).exclude(pk=template.pk) \
        .update(is_active=False)
    PromptTemplate.objects.filter(pk=template.pk).update(is_active=True)
    template.is_active = True


def deactivate_language(language: str) -> None:
    """Back to the built-in prompt for `language`."""
    PromptTemplate.objects.filter(language=language, is_active=True).update(is_active=False)
