"""The API's rule for staff tools (fine-tuning, migrations between spaces): active
staff holding the model permission the action needs, as the admin asks — a staff
account without it is refused here too, so the API never grants what the admin
withholds. Subclasses name the model and the refusal message."""
from __future__ import annotations

from rest_framework import permissions

# Actions that only read need `view`, creating needs `add`; every other action changes.
ACTION_PERMISSION = {"list": "view", "retrieve": "view", "pairs": "view", "ab": "view", "create": "add"}


class StaffModelPermission(permissions.BasePermission):
    app_label = ""
    model = ""  # lower-case model name, e.g. "finetunejob"

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        codename = ACTION_PERMISSION.get(getattr(view, "action", None) or "", "change")
        return user.has_perm(f"{self.app_label}.{codename}_{self.model}")
