"""Sample corpus → evaluation: once `load_samples` has every sample document
ready, import (or keep) the corpus's calibration and guard sets."""
from django.dispatch import receiver

from documents.signals import samples_loaded


@receiver(samples_loaded)
def import_sample_evaluation_sets(sender, samples_dir, **kwargs) -> list[str]:
    from search.evaluation.samples import import_sample_sets

    return import_sample_sets(samples_dir)
