"""Who may use the fine-tuning API: active staff holding the model permission the
action needs (view / add / change), as in the admin — a staff account without
them is refused here too, so the API never grants what the admin withholds."""
from __future__ import annotations

from django.utils.translation import gettext_lazy
from rest_framework import permissions

ACTION_PERMISSION = {"list": "view", "retrieve": "view", "pairs": "view", "create": "add", "validate": "change",
                     "cancel": "change", "register": "change"}


class FinetunePermission(permissions.BasePermission):
    model = ""  # the model's lower-case name, e.g. "trainingdataset"

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        codename = ACTION_PERMISSION.get(getattr(view, "action", None) or "", "change")
        return user.has_perm(f"finetune.{codename}_{self.model}")


class DatasetPermission(FinetunePermission):
    model = "trainingdataset"
    message = gettext_lazy("Training datasets are for staff with the fine-tuning permissions.")


class JobPermission(FinetunePermission):
    model = "finetunejob"
    message = gettext_lazy("Fine-tuning jobs are for staff with the fine-tuning permissions.")
