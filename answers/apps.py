from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnswersConfig(AppConfig):
    """Answers with citations: a question → the search service, run as the asker →
    the passages that pass the space's relevance floors → an answer from a chat
    model, or extracted from those passages offline.

    Nothing in `documents/` or `search/` imports this app: it builds on them
    (the search entry point, the access function, the relevance floors), never
    the other way round (tests/test_app_boundaries.py)."""

    name = "answers"
    verbose_name = _("Answers")
