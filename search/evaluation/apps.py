from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EvaluationConfig(AppConfig):
    """Evaluation sets, runs and reports; calibration of a space's floors and fusion."""

    name = "search.evaluation"
    label = "evaluation"
    verbose_name = _("Evaluation")
