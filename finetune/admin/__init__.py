"""Admin of the fine-tuning app: training datasets (datasets.py) and jobs (jobs.py)."""
from finetune.admin import datasets, jobs  # noqa: F401 - registers the model admins
