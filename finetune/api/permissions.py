"""Who may use the fine-tuning API (portal/api_permissions.py): staff with the
training-dataset or fine-tuning-job model permission the action needs."""
from __future__ import annotations

from django.utils.translation import gettext_lazy

from portal.api_permissions import StaffModelPermission


class DatasetPermission(StaffModelPermission):
    app_label, model = "finetune", "trainingdataset"
    message = gettext_lazy("Training datasets are for staff with the fine-tuning permissions.")


class JobPermission(StaffModelPermission):
    app_label, model = "finetune", "finetunejob"
    message = gettext_lazy("Fine-tuning jobs are for staff with the fine-tuning permissions.")
