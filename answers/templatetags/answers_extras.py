import re

from django import template
from django.urls import reverse
from django.utils.html import escape, linebreaks
from django.utils.safestring import mark_safe

register = template.Library()

_REFERENCE = re.compile(r"\[(\d{1,3})\]")


@register.filter
def cited_text(answer) -> str:
    """The answer's text, escaped, in paragraphs, each [n] of one of its
    citations a link through the citation redirect (which logs the opening)."""
    numbers = {c.number for c in answer.citations}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if n not in numbers or not answer.answer_id:
            return match.group(0)
        url = reverse("answer-cite", args=[answer.answer_id, n])
        return f'<a class="ref" href="{url}">[{n}]</a>'

    return mark_safe(_REFERENCE.sub(link, linebreaks(escape(answer.text))))
