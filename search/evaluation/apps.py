from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EvaluationConfig(AppConfig):
    """Evaluation sets, runs and reports; calibration of a space's floors and fusion."""

    name = "search.evaluation"
    label = "evaluation"
    verbose_name = _("Evaluation")

    def ready(self) -> None:
        from search.evaluation import receivers  # noqa: F401  (sample corpus → its evaluation sets)
