from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FinetuneConfig(AppConfig):
    """Training datasets, fine-tuning jobs and the model packages they write.

    Nothing in `documents/` or `search/` imports this app: it builds on them
    (chunks, the access function, evaluation, spaces), never the other way round.
    """

    name = "finetune"
    verbose_name = _("Fine-tuning")
