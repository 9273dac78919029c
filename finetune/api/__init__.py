"""REST API of the fine-tuning app: training datasets (datasets.py) and jobs (jobs.py)."""
from finetune.api.datasets import DatasetViewSet
from finetune.api.jobs import FineTuneJobViewSet

__all__ = ["DatasetViewSet", "FineTuneJobViewSet"]
