from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    """Evaluation sets, runs and reports; calibration of a space's floors and fusion."""

    name = "search.evaluation"
    label = "evaluation"
    verbose_name = "Evaluation"
