from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from portal.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + ((_("Access"), {"fields": ("clearance", "departments")}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + ((_("Access"), {"fields": ("clearance", "departments")}),)
    list_display = ("username", "email", "clearance", "is_active", "is_staff", "is_superuser")
    list_filter = BaseUserAdmin.list_filter + ("clearance", "departments")
    filter_horizontal = BaseUserAdmin.filter_horizontal + ("departments",)

# The admin carries the portal's name (translated) instead of "Django administration".
admin.site.site_header = _("Document portal administration")
admin.site.site_title = _("Document portal")
admin.site.index_title = _("Administration")
