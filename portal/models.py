"""Accounts: a user's clearance and department memberships."""
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Clearance(models.IntegerChoices):
    """The highest access tier a user reaches through membership rules alone.

    Explicit grants (django-guardian) widen access to single documents whatever
    the clearance. See documents/selectors.py and docs/decisions.md.
    """

    PUBLIC = 0, _("Chỉ công khai (public)")
    INTERNAL = 1, _("Nội bộ (internal)")
    DEPARTMENT = 2, _("Phòng ban (department)")
    EXECUTIVE = 3, _("Toàn công ty (all departments)")


class User(AbstractUser):
    clearance = models.PositiveSmallIntegerField(
        _("clearance"), choices=Clearance.choices, default=Clearance.DEPARTMENT,
        help_text=_("0: public only; 1: + internal; 2: + restricted documents of own departments; "
                    "3: + restricted documents of every department. Confidential documents always "
                    "need an explicit grant."))
    departments = models.ManyToManyField("documents.Department", blank=True, related_name="members",
                                         verbose_name=_("departments"))

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
